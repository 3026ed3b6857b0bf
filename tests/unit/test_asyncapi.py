"""docs/asyncapi.yaml guards itself: it is what scripts/asyncapi.py writes from the
code that publishes, byte for byte, so an event type, topic, consumer or field
added without `./dev asyncapi` fails here (and `./dev lint` says so too). Every
type a relay or an outbox can send is in it, with the payload of the message its
`ce_type` names, and the AsyncAPI initiative's parser finds it valid.

The parser runs with node (`npm ci` into .run/cache/asyncapi-validator once;
offline after that).
"""

from __future__ import annotations

import difflib
import importlib
import os
import pkgutil
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from casemesh import topics
from casemesh.events.v1 import casequeue_pb2, helpcenter_pb2
from casemesh.platform.envelope import message_class, type_of
from casemesh.platform.outbox import Outbox
from casemesh.platform.personal import postgres as personal_postgres
from casemesh.platform.relay import EventTranslator
from scripts import asyncapi, npm_cache

REPO = Path(__file__).resolve().parents[2]
VALIDATOR = REPO / "scripts" / "asyncapi-validator"
CACHE = REPO / ".run" / "cache" / "asyncapi-validator"
SERVICES = (
    "casemesh_tickets",
    "casemesh_appeals",
    "casemesh_reports",
    "casemesh_casequeue",
    "casemesh_notifier",
    "casemesh_helpcenter",
    "casemesh_gateway",
    "casemesh_evidence",
)


@pytest.fixture(scope="module")
def written() -> str:
    return asyncapi.render()


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(asyncapi.DOCUMENT.read_text())
    return loaded


def service_modules() -> Iterator[ModuleType]:
    """Every module of every service package (but `__main__`)."""
    for name in SERVICES:
        package = importlib.import_module(name)
        yield package
        for info in pkgutil.iter_modules(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):
                yield importlib.import_module(info.name)


def relays() -> list[tuple[str, EventTranslator]]:
    """(topic, translator) of every service module that defines a relay translation."""
    return [
        (m.TOPIC, m.Translator(lambda _event: None))
        for m in service_modules()
        if callable(getattr(m, "Translator", None))
    ]


def outboxes() -> list[Outbox]:
    # The erasures' outbox is the key database's, declared in the library
    # beside its table; the privacy service publishes it.
    modules = [*service_modules(), personal_postgres]
    found = {id(v): v for m in modules for v in vars(m).values() if isinstance(v, Outbox)}
    return list(found.values())


def test_the_document_is_what_the_code_writes_byte_for_byte(written: str) -> None:
    checked_in = asyncapi.DOCUMENT.read_text()
    if checked_in != written:
        diff = difflib.unified_diff(
            checked_in.splitlines(), written.splitlines(), "docs/asyncapi.yaml", "written", n=1
        )
        shown = "\n".join(list(diff)[:40])
        pytest.fail(f"docs/asyncapi.yaml is stale: run `./dev asyncapi`\n{shown}")


def test_every_type_a_publisher_sends_is_there_with_the_message_it_names(
    doc: dict[str, Any],
) -> None:
    sent = [(topic, t.source, ce_type) for topic, t in relays() for ce_type in t.types]
    sent += [(o.topic, o.source, ce_type) for o in outboxes() for ce_type in o.types]
    assert {topic for topic, _, _ in sent} == set(topics.ALL)
    messages = doc["components"]["messages"]
    for topic, source, ce_type in sent:
        message = messages.get(ce_type)
        assert message is not None, f"{ce_type} is not in docs/asyncapi.yaml: run `./dev asyncapi`"
        cls = message_class(ce_type)
        assert cls is not None, ce_type
        name = cls.DESCRIPTOR.full_name
        assert message["payload"] == {"$ref": f"#/components/schemas/{name}"}, ce_type
        assert doc["components"]["schemas"][name]["title"] == name
        pinned = message["headers"]["allOf"][1]["properties"]
        assert pinned == {"ce_type": {"const": ce_type}, "ce_source": {"const": source}}
        channel = doc["channels"][topic]
        assert channel["address"] == topic
        assert channel["messages"][ce_type] == {"$ref": f"#/components/messages/{ce_type}"}
    assert sorted(messages) == sorted(ce_type for _, _, ce_type in sent), "types nobody sends"


def test_each_topic_has_one_sender_and_each_consumer_group_a_receive(doc: dict[str, Any]) -> None:
    operations = doc["operations"].values()
    for topic in topics.ALL:
        on_topic = [o for o in operations if o["channel"] == {"$ref": f"#/channels/{topic}"}]
        assert [o["action"] for o in on_topic].count("send") == 1, topic
    receiving = {
        (o["channel"]["$ref"].rsplit("/", 1)[1], o["bindings"]["kafka"]["groupId"]["description"])
        for o in operations
        if o["action"] == "receive"
    }
    assert (topics.APPEALS, "casemesh-reports") in receiving
    assert (topics.VERIFICATION, "casemesh-notifier") in receiving
    assert (topics.TICKETS, "casemesh-casequeue-<generation>") in receiving


def test_headers_and_payloads_say_what_the_envelope_and_the_protos_say(
    doc: dict[str, Any],
) -> None:
    headers = doc["components"]["schemas"]["CloudEventHeaders"]
    assert headers["required"] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_subject",
        "ce_time",
        "content-type",
    ]
    assert "traceparent" in headers["properties"]
    assert headers["properties"]["content-type"]["const"] == "application/protobuf"
    schemas = doc["components"]["schemas"]
    header = schemas["casemesh.events.v1.TicketEventHeader"]["properties"]
    # The proto3 JSON mapping: camelCase names, 64-bit integers as strings,
    # timestamps as RFC 3339, enums by name; the .proto comments as descriptions.
    assert header["ticketId"]["type"] == "string"
    assert "also the Kafka key" in header["ticketId"]["description"]
    assert header["version"]["type"] == "string"
    assert (
        header["version"]["description"] == "Position of this event in the ticket's stream, from 1."
    )
    assert header["time"] == {
        "type": "string",
        "format": "date-time",
        "description": "When the event was recorded.",
    }
    status = schemas["casemesh.events.v1.TicketStatus"]
    assert "TICKET_STATUS_SOLVED" in status["enum"]
    solved = doc["components"]["messages"]["casemesh.tickets.TicketSolved.v1"]
    assert solved["contentType"] == "application/protobuf"
    assert solved["bindings"]["kafka"]["key"]["type"] == "string"


def test_an_outbox_refuses_a_message_it_does_not_declare() -> None:
    from casemesh_helpcenter.phone import CODES

    code = helpcenter_pb2.VerificationCodeIssued(request="phone-changes/1")
    assert CODES.type_of(code) == "casemesh.helpcenter.VerificationCodeIssued.v1"
    with pytest.raises(ValueError, match="does not declare PhoneChangeVerified"):
        CODES.type_of(helpcenter_pb2.PhoneChangeVerified())
    assert type_of(casequeue_pb2.SlaBreached) == "casemesh.casequeue.SlaBreached.v1"
    assert message_class(type_of(casequeue_pb2.SlaBreached)) is casequeue_pb2.SlaBreached


def test_the_lint_checks_the_document_is_current() -> None:
    recipe = (REPO / "justfile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/asyncapi.py --check" in recipe


# ---- the AsyncAPI initiative's parser ------------------------------------------------


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing = "node and npm are needed to run @asyncapi/parser"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(missing)
        pytest.skip(missing)
    return npm_cache.installed(VALIDATOR, CACHE)


def validate(node_modules: Path, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(VALIDATOR / "validate.mjs"), str(node_modules), str(document)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_asyncapi_parser_finds_the_document_valid(node_modules: Path) -> None:
    checked = validate(node_modules, asyncapi.DOCUMENT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid AsyncAPI 3.0.0" in checked.stdout


def test_the_parser_would_notice_a_broken_document(node_modules: Path, tmp_path: Path) -> None:
    broken = tmp_path / "asyncapi.yaml"
    text = asyncapi.DOCUMENT.read_text()
    broken.write_text(text.replace("action: send", "action: publish", 1))
    checked = validate(node_modules, broken)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "action" in checked.stdout
