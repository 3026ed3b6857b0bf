"""Fuzzing every public RPC of casemesh.v1 through the gateway.

Requests are made from the generated descriptors (so a new RPC or field is
fuzzed too): empty messages; fields filled at random; one field at a time set
to something hostile (empty, 100 KB+, control characters, Chinese, emoji,
right-to-left marks, SQL- and JSON-looking text, wrong resource names, garbage
page tokens, undefined enum numbers, extreme integers, timestamps out of
range, random bytes); many fields at once; repeated fields with thousands of
items; messages over the size limit; bytes that are no message (a string that
is not UTF-8); odd upload streams; now and then a deadline too short for any
answer. Most calls go as a user, a share as an agent or an admin, so agents'
and admins' paths are fuzzed past the role check; many start from a sound
request naming a real resource, so the services' own checks are reached.

Every answer must be one a client can act on: never INTERNAL or UNKNOWN, no
RESOURCE_EXHAUSTED but a rate limit's (or the transport refusing a message
over the gateway's size limit), INVALID_ARGUMENT naming fields the request
has. Afterwards every process still runs and serves, none counted a call it
answered INTERNAL or UNKNOWN (some a client never sees) and none logged an
error.

The run is seeded: the seed is printed, and CASEMESH_FUZZ_SEED replays it
(CASEMESH_FUZZ_REQUESTS changes how many requests are sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from casemesh.platform.consuming import consumer_lag
from casemesh.platform.grpcutil import STATUS_DETAILS_KEY, field_violations
from casemesh.platform.identity import mint_token
from casemesh.rules import tickets as ticket_rules
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import casequeue_pb2_grpc as qpb_grpc
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from casemesh_notifier.consumers import TOPICS as NOTIFIER_TOPICS
from casemesh_notifier.settings import NotifierSettings
from tests.conftest import Stack, wait_serving
from tests.e2e import test_authz_matrix as matrix
from tests.e2e import test_reports
from tests.e2e.test_evidence import png
from tests.support import Client, wait_until

SEED = int(os.environ.get("CASEMESH_FUZZ_SEED") or secrets.randbits(32))
REQUESTS = int(os.environ.get("CASEMESH_FUZZ_REQUESTS") or 10_000)
IN_FLIGHT = 24
TIMEOUT = 20.0
# A watch never ends by itself: read a few changes, then our own deadline ends it.
ENDLESS = {"CaseQueueService.WatchQueue"}
STREAM_ITEMS = 3
# Deadlines too short for an answer (seconds): the call is cut off anywhere.
HASTY = (0.001, 0.01, 0.05, 0.2)
WATCH_TIMEOUT = 1.5
OWNERS = 4
SPARES = 4
# Over any gRPC server's default message limit (4 MiB), and the gateway's.
OVERSIZED = 4 * 1024 * 1024 + 1
# Calls after which a case takes no more changes.
ENDING = {
    "TicketService.CancelTicket",
    "TicketService.CloseTicket",
    "AppealService.WithdrawAppeal",
    "AppealService.DecideAppeal",
    "ReportService.DecideReportCase",
    "ReportService.VoidReportCase",
}
# gRPC's own answer to a message over the gateway's size limit.
TRANSPORT_TOO_LARGE = "larger than max"
# How the rate limits answer (RESOURCE_EXHAUSTED): the gateway's, per user,
# and the help centre's on phone-change codes.
RATE_LIMITS = ("too many requests", "phone changes a day", "too many codes for this number")

# -- what hostile input looks like -------------------------------------------------------

UUID = "7b0d5a52-3c2e-4b8e-9a55-0f3b6d1c2e4f"
COLLECTIONS = (
    "tickets",
    "appeals",
    "reports",
    "report-cases",
    "evidence",
    "articles",
    "flows",
    "help-sessions",
    "phone-changes",
)
HOSTILE_TEXT = {
    "empty": "",
    "blank": " \t ",
    "nul": "before\x00after",
    "escape": "\x1b[31mred\x1b[0m\x07",
    "crlf": "line\r\nBcc: everyone@example.com\r\n\r\nbody",
    "line separators": "one\u2028two\u2029three\x85four",
    "chinese": "忘记密码了，验证码一直收不到，怎么办？",
    "emoji": "👍🏽🧑‍🤝‍🧑🇨🇳✨" * 3,
    "right-to-left": "\u202eevil.exe\u202c \u200fשלום\u200f مرحبا",
    "zero width": "\u200b\u200c\u200d\ufeff",
    "combining": "Z\u0351\u0363\u0364a\u036b\u0346l\u0352g\u034co",
    "sql": "'; DROP TABLE tickets_events; -- \" OR 1=1 --",
    "json": '{"$ne": null, "a": [1, {"b": "\\u0000"}], "__proto__": {}}',
    "format": "%s%n%x {0} {{}} ${jndi:ldap://x/a} {{7*7}}",
    "path": "../../../../etc/passwd",
    "html": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "number": "-1",
    "huge number": "1e309",
    "digits that are not ASCII": "²³١٢٣",
    "number with underscores": "1_000",
    "padded number": " 7 ",
    "long number": "9" * 5000,
    "email-like": "a@b.c,d@e.f <x@y.z>",
    "phone-like": "+8613800138000\u202e",
}


def long_text(rng: random.Random) -> str:
    """100 KB or more: ASCII, Chinese, or emoji."""
    unit = rng.choice(["x", "长", "👍", "a\x00"])
    return unit * (110_000 // len(unit.encode()) + 1)


def wrong_names(rng: random.Random) -> list[str]:
    collection = rng.choice(COLLECTIONS)
    other = rng.choice(COLLECTIONS)
    return [
        f"{collection}/",
        f"{collection}/not-a-uuid",
        f"{collection}/{UUID}/x",
        f"{collection}/{UUID.upper()}",
        f"{collection}/{UUID.replace('-', '')}",
        f"/{collection}/{UUID}",
        f"{collection}//{UUID}",
        f"{other}/{uuid.UUID(int=rng.getrandbits(128))}",
        f"{collection}/{uuid.UUID(int=rng.getrandbits(128))}",
        f"{collection}/{UUID}\x00",
        f"{collection}/{'-' * 36}",
        f"{collection}/{'f' * 36}",
        f"{collection}/{{{UUID}}}",
        f"{collection}/urn:uuid:{UUID}",
        f"{collection}/../{other}/{UUID}",
        "*",
        "/",
    ]


def garbage_tokens(rng: random.Random) -> list[str]:
    return [
        "garbage",
        "!!!!",
        "eyJvZmZzZXQiOiAtMX0=",  # base64 of {"offset": -1}
        "eyJvZmZzZXQiOiAiMSBPUiAxPTEifQ",
        "MTAwMDAwMDAwMDAwMDAwMDAwMDAwMDA",
        "-1",
        "9" * 40,
        rng.randbytes(48).hex(),
        "A" * 5000,
    ]


INT_EDGES = {
    FieldDescriptor.TYPE_INT32: (0, -1, 1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_SINT32: (0, -1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_SFIXED32: (0, -1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_INT64: (0, -1, 1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_SINT64: (0, -1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_SFIXED64: (0, -1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_UINT32: (0, 1, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 1, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 1, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 1, 2**64 - 1),
}
FLOAT_EDGES = (float("nan"), float("inf"), float("-inf"), -0.0, 1e308, 5e-324, -1.0)
# Strings that are not UTF-8 cannot be made with protobuf; these bytes take
# the place of a marker in the serialized request (same length).
NOT_UTF8_MARK = "\x02not-utf8\x02"
NOT_UTF8 = (b"\xff\xfe", b"\xed\xa0\x80", b"\xc3", b"\xc0\xaf", b"ok\xf4\x90\x80\x80")
UNDEFINED_ENUMS = (999, -1, 2**31 - 1, -(2**31), 100_000)
# Seconds outside 0001-01-01..9999-12-31, and nanos outside 0..999,999,999.
BAD_TIMES = (
    (-62135596801, 0),
    (253402300800, 0),
    (2**63 - 1, 0),
    (-(2**63), 0),
    (0, -1),
    (0, 1_000_000_000),
    (1_700_000_000, 2**31 - 1),
    (1_700_000_000, -(2**31)),
)
TIMESTAMP = Timestamp.DESCRIPTOR.full_name
# Field and message descriptors (typed loosely: the C and pure-Python
# implementations differ in their declared types).
Field = Any


def is_map(f: Field) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def is_leaf(f: Field) -> bool:
    return f.message_type is None or f.message_type.full_name == TIMESTAMP or is_map(f)


Path = tuple[Field, ...]


def paths(d: Any, depth: int = 4) -> list[Path]:
    """Every field reachable from `d`, as the path of fields leading to it."""
    found: list[Path] = []
    for f in d.fields:
        found.append((f,))
        if not is_leaf(f) and depth > 1:
            found += [(f, *rest) for rest in paths(f.message_type, depth - 1)]
    return found


def spot(message: Message, path: Path) -> Message:
    """The message holding the last field of `path` (made present on the way;
    a repeated message on the way is entered at its first item)."""
    for f in path[:-1]:
        if f.is_repeated:
            items = getattr(message, f.name)
            message = items[0] if len(items) else items.add()
        else:
            message = getattr(message, f.name)
    return message


def path_name(path: Path) -> str:
    return ".".join(f.name for f in path)


# -- making requests ---------------------------------------------------------------------


# Sound requests by RPC, each made from an owner's resources.
Sound = dict[str, Callable[[matrix.Owned], Message]]


@dataclass
class Names:
    """Real resources, by owner: what sound requests name. Calls that end a
    case's life get each owner's first resources; the other calls get spares,
    so that they go on reaching past "this ticket is cancelled"."""

    owners: list[str]
    owned: list[matrix.Owned]
    spares: list[list[matrix.Owned]]


def spares_of(stack: Stack, owner: str, owned: matrix.Owned, sound: Sound) -> list[matrix.Owned]:
    """Another few tickets, appeals and report cases of `owner`."""
    client = Client(stack.gateway, stack.secret, owner)
    appeals = apb_grpc.AppealServiceStub(client._channel)
    reports = rpb_grpc.ReportServiceStub(client._channel)
    made = []
    try:
        for _ in range(SPARES):
            ticket = client.CreateTicket(sound["TicketService.CreateTicket"](owned))
            appeal = appeals.FileAppeal(
                sound["AppealService.FileAppeal"](owned), metadata=client.metadata, timeout=15
            )
            report = reports.FileReport(
                sound["ReportService.FileReport"](owned), metadata=client.metadata, timeout=15
            )
            made.append(
                replace(
                    owned,
                    ticket=ticket.name,
                    appeal=appeal.name,
                    report=report.name,
                    report_case=report.report_case,
                )
            )
    finally:
        client.close()
    return made


class Maker:
    """Makes request `i` of a run from `seed`, the same each time."""

    def __init__(self, seed: int, names: Names, sound: Sound) -> None:
        self.seed = seed
        self.names = names
        self.sound = sound

    # plausible values, so later fields are reached past the first check
    def plausible_text(self, rng: random.Random, f: Field, owned: matrix.Owned) -> str:
        n = f.name
        if n == "email" or n.endswith("_email"):
            return f"fuzz{rng.randrange(10**6)}@example.com"
        if n == "phone" or n.endswith("_phone"):
            return f"+86138{rng.randrange(10**8):08d}"
        if n == "locale":
            return rng.choice(ticket_rules.LOCALES)
        if n == "category":
            return rng.choice(ticket_rules.CATEGORIES).id
        if n == "request_id":
            # Now and then one used before, with another body: a replay.
            return f"fuzz-{rng.randrange(8)}" if rng.random() < 0.3 else rng.randbytes(16).hex()
        if n == "etag":
            return str(rng.randrange(1, 4))
        if n in matrix.RESOURCE_FIELDS or n in ("flow", "appeal_of") or n == "name":
            return rng.choice(
                [
                    *(owned.ticket, owned.appeal, owned.report, owned.report_case, owned.session),
                    *(owned.evidence, owned.flow, owned.article, owned.phone_change),
                ]
            )
        return rng.choice(["登录不了", "cannot log in", "视频被删除了", "ok", "x" * 40])

    def fill(self, rng: random.Random, message: Message, owned: matrix.Owned, depth: int) -> None:
        """Every field set to something plausible, nested messages too."""
        for f in message.DESCRIPTOR.fields:
            if f.containing_oneof is not None and rng.random() < 0.5:
                continue
            count = rng.randint(1, 3) if f.is_repeated else 1
            for _ in range(count):
                self.put(message, f, self.plausible(rng, f, owned, depth))

    def plausible(self, rng: random.Random, f: Field, owned: matrix.Owned, depth: int) -> Any:
        t = f.type
        if is_map(f):
            return {"zh-CN": "中文", "en": "English"}
        if f.message_type is not None:
            sub = message_factory.GetMessageClass(f.message_type)()
            if isinstance(sub, Timestamp):
                sub.seconds = int(time.time()) + rng.randint(-86400 * 30, 86400 * 30)
            elif depth > 0:
                self.fill(rng, sub, owned, depth - 1)
            return sub
        if t == FieldDescriptor.TYPE_STRING:
            return self.plausible_text(rng, f, owned)
        if t == FieldDescriptor.TYPE_BYTES:
            return rng.randbytes(rng.randint(0, 64))
        if t == FieldDescriptor.TYPE_ENUM:
            return rng.choice([v.number for v in f.enum_type.values])
        if t == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return rng.uniform(0, 10)
        return rng.randint(0, 20)

    def hostile(self, rng: random.Random, f: Field, *, long: bool = True) -> Any:
        t = f.type
        if is_map(f):
            keys = [self.hostile(rng, f.message_type.fields_by_name["key"], long=False)]
            return {k: self.hostile_text(rng, f, long=False) for k in keys}
        if f.message_type is not None:
            sub = message_factory.GetMessageClass(f.message_type)()
            if isinstance(sub, Timestamp):
                sub.seconds, sub.nanos = rng.choice(BAD_TIMES)
            return sub
        if t == FieldDescriptor.TYPE_STRING:
            return self.hostile_text(rng, f, long=long)
        if t == FieldDescriptor.TYPE_BYTES:
            size = rng.choice([0, 1, 17, 4096, 110_000 if long else 512])
            return rng.randbytes(size)
        if t == FieldDescriptor.TYPE_ENUM:
            return rng.choice(UNDEFINED_ENUMS)
        if t == FieldDescriptor.TYPE_BOOL:
            return rng.random() < 0.5
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return rng.choice(FLOAT_EDGES)
        return rng.choice(INT_EDGES[t])

    def hostile_text(self, rng: random.Random, f: Field, *, long: bool) -> str:
        kind = rng.random()
        if f.name == "page_token" and kind < 0.6:
            return rng.choice(garbage_tokens(rng))
        if kind < 0.25:
            return rng.choice(wrong_names(rng))
        if kind < 0.35 and long:
            return long_text(rng)
        return rng.choice(list(HOSTILE_TEXT.values()))

    @staticmethod
    def put(message: Message, f: Field, value: Any) -> None:
        """Sets (or, for a repeated field, appends) `value`."""
        if is_map(f):
            getattr(message, f.name).update(value)
        elif f.is_repeated:
            items = getattr(message, f.name)
            if f.message_type is not None:
                items.add().CopyFrom(value)
            else:
                items.append(value)
        elif f.message_type is not None:
            getattr(message, f.name).CopyFrom(value)
        else:
            setattr(message, f.name, value)

    def bulk(self, rng: random.Random, message: Message, path: Path, owned: matrix.Owned) -> str:
        """Thousands of items in the repeated field at `path`."""
        holder, f = spot(message, path), path[-1]
        if is_map(f):
            getattr(holder, f.name).update({f"k{i}\x00{i}": "v" * 8 for i in range(3000)})
            return f"{path_name(path)}: 3000 entries"
        if f.message_type is not None:
            n = rng.choice([200, 300, 500])
            items = getattr(holder, f.name)
            for _ in range(n):
                self.fill(rng, items.add(), owned, 1)
            return f"{path_name(path)}: {n} nested messages"
        n = rng.choice([1000, 5000])
        items = getattr(holder, f.name)
        if f.type == FieldDescriptor.TYPE_STRING:
            items.extend(
                rng.choice(["x", "a\x00", f"tickets/{UUID}", "长"]) + str(i) for i in range(n)
            )
        elif f.type == FieldDescriptor.TYPE_ENUM:
            items.extend(rng.choice([0, 1, 999, -1]) for _ in range(n))
        elif f.type == FieldDescriptor.TYPE_BYTES:
            items.extend(rng.randbytes(8) for _ in range(n))
        else:
            items.extend(rng.choice(INT_EDGES.get(f.type, (0, 1))) for _ in range(n))
        return f"{path_name(path)}: {n} items"

    def make(self, rpc: matrix.Rpc, i: int) -> Case:
        rng = random.Random(f"{self.seed}:{i}")
        k = rng.randrange(len(self.names.owners))
        owned = self.names.owned[k] if rpc.name in ENDING else rng.choice(self.names.spares[k])
        role = self.role(rng, rpc)
        if rpc.method.client_streaming:
            return self.upload(rng, rpc, role)
        message, base = self.base(rng, rpc, owned)
        request, what = self.mutate(rng, rpc, message, owned)
        mine = base == "sound" and role == "user"
        subject = self.names.owners[k] if mine else f"fuzz-{role}-{k}-{i % 41}"
        deadline = rng.choice(HASTY) if rng.random() < 0.02 else None
        return Case(rpc, request, f"{base}{what}", role, subject, deadline)

    def base(self, rng: random.Random, rpc: matrix.Rpc, owned: matrix.Owned) -> tuple[Message, str]:
        """What a request starts from: a sound one, one filled at random, or empty."""
        message: Message = message_factory.GetMessageClass(rpc.method.input_type)()
        sound = self.sound.get(rpc.name)
        start = rng.random()
        if sound is not None and start < 0.55:
            message, base = sound(owned), "sound"
        elif start < 0.85:
            self.fill(rng, message, owned, 3)
            base = "random"
        else:
            base = "empty"
        if "request_id" in rpc.method.input_type.fields_by_name and rng.random() < 0.2:
            # A replay, perhaps with another body, perhaps at the same moment.
            message.request_id = f"fuzz-{rng.randrange(8)}"  # type: ignore[attr-defined]
        return message, base

    def mutate(
        self, rng: random.Random, rpc: matrix.Rpc, message: Message, owned: matrix.Owned
    ) -> tuple[Message | bytes, str]:
        """`message` made hostile one way or another, and how."""
        every = paths(rpc.method.input_type)
        strings = [p for p in every if p[-1].type == FieldDescriptor.TYPE_STRING]
        how = rng.random()
        if how < 0.12 or not every:
            return message, " as is"
        if how < 0.13 and strings:
            path = rng.choice(strings)
            self.replace(message, path, "x" * OVERSIZED)
            return message, f", {path_name(path)} of {OVERSIZED} bytes"
        if how < 0.16 and strings:
            path = rng.choice(strings)
            self.replace(message, path, NOT_UTF8_MARK)
            bad = rng.choice(NOT_UTF8).ljust(len(NOT_UTF8_MARK), b"x")
            raw = message.SerializeToString().replace(NOT_UTF8_MARK.encode(), bad)
            return raw, f", {path_name(path)} = {bad!r} (not UTF-8)"
        if how < 0.75:
            path = rng.choice([p for p in every if is_leaf(p[-1])])
            value = self.hostile(rng, path[-1])
            self.replace(message, path, value)
            return message, f", {path_name(path)} = {describe(value)}"
        if how < 0.87:
            for path in every:
                if is_leaf(path[-1]) and rng.random() < 0.5:
                    self.replace(message, path, self.hostile(rng, path[-1], long=False))
            return message, ", many fields hostile"
        repeated = [p for p in every if p[-1].is_repeated]
        if repeated:
            return message, ", " + self.bulk(rng, message, rng.choice(repeated), owned)
        path = rng.choice(every)
        spot(message, path).ClearField(path[-1].name)
        return message, f", {path_name(path)} cleared"

    def replace(self, message: Message, path: Path, value: Any) -> None:
        """The field at `path` holding `value` alone."""
        holder = spot(message, path)
        holder.ClearField(path[-1].name)
        self.put(holder, path[-1], value)

    @staticmethod
    def role(rng: random.Random, rpc: matrix.Rpc) -> str:
        if rpc.name in matrix.ADMIN_ONLY and rng.random() < 0.85:
            return "admin"
        if rpc.name in matrix.AGENT_ONLY and rng.random() < 0.85:
            return rng.choice(["agent", "agent", "admin"])
        return rng.choices(["user", "agent", "admin"], weights=[70, 20, 10])[0]

    def upload(self, rng: random.Random, rpc: matrix.Rpc, role: str) -> Case:
        """An odd upload stream."""

        def meta(name: str = "proof.png", declared: str = "") -> epb.UploadEvidenceRequest:
            return epb.UploadEvidenceRequest(
                metadata=epb.EvidenceMetadata(file_name=name, declared_type=declared)
            )

        def chunk(data: bytes) -> epb.UploadEvidenceRequest:
            return epb.UploadEvidenceRequest(chunk=data)

        picture = png()
        fake = rng.choice(list(HOSTILE_TEXT.values()))
        odd: dict[str, list[epb.UploadEvidenceRequest]] = {
            "empty stream": [],
            "no metadata first": [chunk(picture)],
            "two metadata frames": [meta(), meta(), chunk(picture)],
            "metadata after a chunk": [meta(), chunk(picture), meta()],
            "metadata only": [meta()],
            "an empty part": [epb.UploadEvidenceRequest()],
            "an empty chunk": [meta(), chunk(b"")],
            "a chunk over 1 MiB": [meta(), chunk(b"\x89PNG\r\n\x1a\n" + b"\x00" * (1024 * 1024))],
            "over the transport's limit": [meta(), chunk(rng.randbytes(1200 * 1024))],
            "random bytes": [meta(), chunk(rng.randbytes(rng.randint(1, 4096)))],
            "many tiny chunks": [meta(), *(chunk(picture[j : j + 1]) for j in range(len(picture)))],
            "over the image limit": [meta(), chunk(picture), *[chunk(b"\x00" * 1024 * 1024)] * 3],
            "hostile file name": [meta(fake), chunk(picture)],
            "long file name": [meta(long_text(rng)), chunk(picture)],
            "hostile declared type": [meta("a.png", fake), chunk(picture)],
            "sound": [meta("截图.png", "image/png"), chunk(picture)],
        }
        what = rng.choice(sorted(odd))
        return Case(rpc, odd[what], what, role, f"fuzz-{role}-up-{rng.randrange(41)}")


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text)} chars)"


@dataclass
class Case:
    rpc: matrix.Rpc
    # A message, its bytes made wrong, or an upload's parts.
    request: Message | bytes | list[epb.UploadEvidenceRequest]
    what: str
    role: str
    subject: str
    # A client in a hurry: a deadline too short for any answer, now and then.
    deadline: float | None = None


# -- sound requests: where fuzzing starts to reach past the first check -----------------------


def sound_requests(stack: Stack) -> Sound:
    def contact(o: matrix.Owned) -> pb.Contact:
        return pb.Contact(email="fuzz@example.com", channels=[pb.CHANNEL_EMAIL])

    def create_ticket(o: matrix.Owned) -> Message:
        return pb.CreateTicketRequest(
            request_id=uuid.uuid4().hex,
            ticket=pb.Ticket(
                category="account.login",
                subject="验证码收不到",
                description="换了手机以后一直收不到验证码。",
                locale="zh-CN",
                contact=contact(o),
                evidence=[epb.EvidenceRef(name=o.evidence)],
            ),
        )

    def file_report(o: matrix.Owned) -> Message:
        return rpb.FileReportRequest(
            request_id=uuid.uuid4().hex,
            report=rpb.Report(
                target=rpb.ReportTarget(type=rpb.TARGET_TYPE_VIDEO, id=f"video-{uuid.uuid4()}"),
                reason=rpb.ReportReasonRef(category="violence_terrorism", subcategory="terrorism"),
                explanation="视频宣扬恐怖组织。",
                evidence=[epb.EvidenceRef(name=o.evidence)],
                good_faith_statement=True,
                contact=contact(o),
                locale="zh-CN",
            ),
        )

    def file_appeal(o: matrix.Owned) -> Message:
        return apb.FileAppealRequest(
            request_id=uuid.uuid4().hex,
            appeal=apb.Appeal(
                kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE,
                jurisdiction="cn",
                filer=apb.Party(legal_name="晴川工作室", locale="zh-CN", contact=contact(o)),
                notice=apb.TakedownNotice(
                    relationship=apb.RIGHTS_RELATIONSHIP_OWNER,
                    work=apb.CopyrightWork(title="《江南春》舞蹈原创视频"),
                    originality_evidence=[epb.EvidenceRef(name=o.evidence)],
                    infringing_items=["https://video.example/v/7731"],
                    infringement_evidence=[epb.EvidenceRef(name=o.evidence)],
                ),
                good_faith_statement=True,
                accuracy_statement=True,
            ),
        )

    decision = test_reports.statement(stack)
    return {
        **matrix.ON_OWNED,
        "TicketService.CreateTicket": create_ticket,
        "TicketService.AssignTicket": lambda o: pb.AssignTicketRequest(
            name=o.ticket, assignee="agent-fuzz", priority=pb.PRIORITY_HIGH
        ),
        "TicketService.RequestInfo": lambda o: pb.RequestInfoRequest(name=o.ticket, message="?"),
        "TicketService.HoldTicket": lambda o: pb.HoldTicketRequest(name=o.ticket, reason="wait"),
        "TicketService.SolveTicket": lambda o: pb.SolveTicketRequest(
            name=o.ticket, resolution="已重置。"
        ),
        "ReportService.FileReport": file_report,
        "ReportService.AssignReportCase": lambda o: rpb.AssignReportCaseRequest(
            name=o.report_case, assignee="agent-fuzz"
        ),
        "ReportService.DecideReportCase": lambda o: rpb.DecideReportCaseRequest(
            name=o.report_case,
            outcome=rpb.REPORT_DECISION_OUTCOME_ACTION_TAKEN,
            statement=decision,
            affected_uploader=apb.Party(
                user_id="uploader-fuzz", legal_name="张三", locale="zh-CN", contact=contact(o)
            ),
        ),
        "ReportService.VoidReportCase": lambda o: rpb.VoidReportCaseRequest(
            name=o.report_case, reason="duplicate"
        ),
        "AppealService.FileAppeal": file_appeal,
        "AppealService.AssignAppeal": lambda o: apb.AssignAppealRequest(name=o.appeal),
        "HelpCenterService.CreateArticle": lambda o: hpb.CreateArticleRequest(
            article=hpb.Article(
                name=f"articles/fuzz-{uuid.uuid4().hex[:12]}",
                locale="en",
                category="other.general",
                title="Zebra quartz",
                body="Xylophone.",
            )
        ),
        "HelpCenterService.UpdateArticle": lambda o: hpb.UpdateArticleRequest(
            base_version=1,  # stale after the first change: ABORTED then
            article=hpb.Article(
                name=o.article,
                locale="en",
                category="other.general",
                title="Zebra quartz",
                body="Xylophone zebra quartz, again.",
            ),
        ),
        "HelpCenterService.PublishArticle": lambda o: hpb.PublishArticleRequest(
            name=o.article, locale="en"
        ),
        "HelpCenterService.ListArticleVersions": lambda o: hpb.ListArticleVersionsRequest(
            name=o.article, locale="en"
        ),
        "AppealService.RequestAppealInfo": lambda o: apb.RequestAppealInfoRequest(
            name=o.appeal, message="请补充原创证明。"
        ),
    }


# -- sending them ------------------------------------------------------------------------------


@dataclass
class Answer:
    case: Case
    code: grpc.StatusCode
    details: str
    status: status_pb2.Status | None
    seconds: float


def status_of(err: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in err.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


async def send(channel: grpc.aio.Channel, case: Case, metadata: Any) -> Answer:
    rpc = case.rpc
    out = message_factory.GetMessageClass(rpc.method.output_type)
    codec = {
        "request_serializer": lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        "response_deserializer": out.FromString,
    }
    timeout = case.deadline or (WATCH_TIMEOUT if rpc.name in ENDLESS else TIMEOUT)
    began = time.monotonic()
    code, details, status = grpc.StatusCode.OK, "", None
    try:
        if rpc.method.client_streaming:
            assert isinstance(case.request, list)
            parts = case.request

            async def stream() -> AsyncIterator[Message]:
                for part in parts:
                    yield part

            await channel.stream_unary(rpc.path, **codec)(
                stream(), metadata=metadata, timeout=timeout
            )
        elif rpc.method.server_streaming:
            call = channel.unary_stream(rpc.path, **codec)(
                case.request, metadata=metadata, timeout=timeout
            )
            try:
                n = 0
                async for _ in call:
                    n += 1
                    if n >= STREAM_ITEMS:
                        break
            finally:
                call.cancel()
        else:
            await channel.unary_unary(rpc.path, **codec)(
                case.request, metadata=metadata, timeout=timeout
            )
    except grpc.aio.AioRpcError as err:
        code, details, status = err.code(), err.details() or "", status_of(err)
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and rpc.name in ENDLESS:
            code = grpc.StatusCode.OK  # our own deadline ended an endless watch
    return Answer(case, code, details, status, time.monotonic() - began)


async def run(stack: Stack, maker: Maker, count: int) -> list[Answer]:
    tokens: dict[tuple[str, str], list[tuple[str, str]]] = {}

    def metadata(case: Case) -> list[tuple[str, str]]:
        key = (case.subject, case.role)
        if key not in tokens:
            token = mint_token(stack.secret, case.subject, (case.role,))
            tokens[key] = [("authorization", f"Bearer {token}")]
        return tokens[key]

    answers: list[Answer] = []
    order = iter(range(count))
    rpcs = matrix.RPCS
    channels = [
        grpc.aio.insecure_channel(stack.gateway, options=[("grpc.max_receive_message_length", -1)])
        for _ in range(4)
    ]

    async def worker(w: int) -> None:
        for i in order:
            case = maker.make(rpcs[i % len(rpcs)], i)
            answers.append(await send(channels[w % len(channels)], case, metadata(case)))

    try:
        await asyncio.gather(*(worker(w) for w in range(IN_FLIGHT)))
    finally:
        for channel in channels:
            await channel.close()
    return answers


# -- judging the answers -----------------------------------------------------------------------


def judge(answer: Answer) -> str | None:
    """What is wrong with the answer, if anything."""
    code, details = answer.code, answer.details
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        return "a client's input caused a server error"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and not answer.case.deadline:
        return f"no answer within {TIMEOUT} s"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "a service was unavailable"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        if TRANSPORT_TOO_LARGE in details.lower() or limited(answer):
            return None
        return "RESOURCE_EXHAUSTED not from a rate limit or the size limit"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        if answer.status is None:
            return "INVALID_ARGUMENT without google.rpc details"
        named = [f for f, _ in field_violations(answer.status)]
        if not named or not all(named):
            return "INVALID_ARGUMENT naming no field"
        unknown = [f for f in named if not in_request(answer.case.rpc.method.input_type, f)]
        if unknown:
            return f"INVALID_ARGUMENT naming fields the request does not have: {unknown}"
    return None


def in_request(descriptor: Any, path: str) -> bool:
    """Whether `path` (e.g. "ticket.evidence[1].name") is a field of the message."""
    for part in path.split("."):
        field = descriptor.fields_by_name.get(part.partition("[")[0]) if descriptor else None
        if field is None:
            return False
        descriptor = field.message_type
    return True


def limited(answer: Answer) -> bool:
    """A rate limit's answer: the gateway's per-user limiter, or the help
    centre's limits on phone-change codes (against SMS pumping)."""
    return any(text in answer.details for text in RATE_LIMITS)


def summary(answers: list[Answer], elapsed: float) -> str:
    codes = Counter(a.code.name for a in answers)
    per_rpc: dict[str, Counter[str]] = defaultdict(Counter)
    slowest: dict[str, float] = defaultdict(float)
    for a in answers:
        per_rpc[a.case.rpc.name][a.code.name] += 1
        slowest[a.case.rpc.name] = max(slowest[a.case.rpc.name], a.seconds)
    transport = sum(1 for a in answers if TRANSPORT_TOO_LARGE in a.details.lower())
    rate = sum(1 for a in answers if a.code == grpc.StatusCode.RESOURCE_EXHAUSTED and limited(a))
    lines = [
        f"fuzz seed {SEED} (CASEMESH_FUZZ_SEED={SEED} replays it): {len(answers)} requests "
        f"over {len(per_rpc)} RPCs in {elapsed:.0f} s",
        "by status: " + ", ".join(f"{c} {n}" for c, n in codes.most_common()),
        f"RESOURCE_EXHAUSTED: {transport} from the transport (message over the gateway's "
        f"size limit), {rate} from a rate limit",
        f"DEADLINE_EXCEEDED: {sum(1 for a in answers if a.case.deadline)} calls were sent "
        f"with a deadline of {max(HASTY)} s or less",
        "by RPC (slowest answer):",
    ]
    for name in sorted(per_rpc):
        counts = ", ".join(f"{c} {n}" for c, n in per_rpc[name].most_common())
        lines.append(f"  {name} ({slowest[name]:.1f} s): {counts}")
    return "\n".join(lines)


def admin(stack: Stack) -> tuple[hpb_grpc.HelpCenterServiceStub, Any, grpc.Channel]:
    channel = grpc.insecure_channel(stack.gateway)
    token = mint_token(stack.secret, "fuzz-editor", ("admin",))
    return hpb_grpc.HelpCenterServiceStub(channel), [("authorization", f"Bearer {token}")], channel


def fuzz_article(stack: Stack, run_id: str) -> str:
    """A published article of the fuzzing's own, on nothing users search for:
    the admins' calls change it, never the help centre's real articles."""
    help_desk, metadata, channel = admin(stack)
    name = f"articles/fuzz-{run_id}"
    with channel:
        help_desk.CreateArticle(
            hpb.CreateArticleRequest(
                article=hpb.Article(
                    name=name,
                    locale="en",
                    category="other.general",
                    title="Zebra quartz",
                    body="Xylophone zebra quartz.",
                    keywords="zebra",
                )
            ),
            metadata=metadata,
            timeout=15,
        )
        help_desk.PublishArticle(
            hpb.PublishArticleRequest(name=name, locale="en"), metadata=metadata, timeout=15
        )
    return name


def every_page(list_page: Callable[[str], Any], field: str) -> list[Any]:
    """Every item (in `field`) of the pages `list_page(page_token)` answers."""
    items: list[Any] = []
    token = ""
    while True:
        page = list_page(token)
        items += getattr(page, field)
        token = page.next_page_token
        if not token:
            return items


def leave_no_trace(stack: Stack, article: str, since: datetime) -> None:
    """What the fuzzing could leave in the way of later tests: its agents'
    claims go back to the queue, the report cases opened since `since` (the
    services' time) are voided, its article (perhaps rewritten by then) is
    withdrawn from users."""
    help_desk, metadata, channel = admin(stack)
    with channel:
        reports = rpb_grpc.ReportServiceStub(channel)
        listed = every_page(
            lambda token: reports.ListReportCases(
                rpb.ListReportCasesRequest(page_size=100, page_token=token),
                metadata=metadata,
                timeout=15,
            ),
            "report_cases",
        )
        for case in listed:
            if case.create_time.ToDatetime(UTC) < since:
                continue
            with contextlib.suppress(grpc.RpcError):  # decided meanwhile, say
                reports.VoidReportCase(
                    rpb.VoidReportCaseRequest(name=case.name, reason="test data of the fuzzing"),
                    metadata=metadata,
                    timeout=15,
                )
        for locale in ticket_rules.LOCALES:
            with contextlib.suppress(grpc.RpcError):
                help_desk.PublishArticle(
                    hpb.PublishArticleRequest(name=article, locale=locale, unpublish=True),
                    metadata=metadata,
                    timeout=15,
                )
        queue = qpb_grpc.CaseQueueServiceStub(channel)
        queued = every_page(
            lambda token: queue.ListQueueCases(
                qpb.ListQueueCasesRequest(page_size=500, page_token=token),
                metadata=metadata,
                timeout=15,
            ),
            "queue_cases",
        )
        for case in (c for c in queued if c.holder.startswith("fuzz-")):
            holder = mint_token(stack.secret, case.holder, ("agent",))
            with contextlib.suppress(grpc.RpcError):  # its lease may have run out meanwhile
                queue.ReleaseClaim(
                    qpb.ReleaseClaimRequest(name=case.name),
                    metadata=[("authorization", f"Bearer {holder}")],
                    timeout=15,
                )


def samples(stack: Stack, metric: str) -> list[tuple[str, Any]]:
    """(process, sample) for every sample of `metric` any process exports."""
    found = []
    for name, url in stack.metrics.items():
        for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
            found += [(name, s) for s in family.samples if s.name == metric]
    return found


def server_errors(stack: Stack) -> Counter[str]:
    """Calls each process answered INTERNAL or UNKNOWN, by its own count (some
    a client never sees: its deadline passed first, or the gateway answered
    for the service)."""
    found: Counter[str] = Counter()
    for name, sample in samples(stack, "grpc_server_handled_total"):
        labels = sample.labels
        if labels.get("grpc_code") in ("INTERNAL", "UNKNOWN"):
            found[f"{name} {labels['grpc_method']} {labels['grpc_code']}"] += int(sample.value)
    return found


def settle(stack: Stack) -> None:
    """Waits until what the fuzzing set off has run its course (every event
    published and consumed by the notifier, every notification due sent), so
    that later tests do not wait behind it."""
    group = NotifierSettings.model_fields["consumer_group"].default

    def drained() -> bool:
        for metric in ("casemesh_relay_lag_events", "casemesh_notifications_due"):
            if any(s.value for _, s in samples(stack, metric)):
                return False
        lag = asyncio.run(consumer_lag(stack.infra.kafka.bootstrap, group, NOTIFIER_TOPICS))
        return not any(lag.values())

    wait_until(drained, timeout=180, interval=1)


def log_sizes(stack: Stack) -> dict[str, int]:
    return {n: stack.supervisor.log_path(n).stat().st_size for n in stack.supervisor.names}


def errors_logged(stack: Stack, since: dict[str, int]) -> Counter[str]:
    """Errors each process logged since `since` (a crash, a failing handler,
    a consumer choking on what the fuzzing stored): "process: event"."""
    found: Counter[str] = Counter()
    for name, offset in since.items():
        with stack.supervisor.log_path(name).open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line:
                    found[f"{name}: {line[:100]}"] += 1
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                found[f"{name}: {entry.get('event')}"] += 1
    return found


def still_serving(stack: Stack, owner: str, new_ticket: Message) -> None:
    """Every process runs; every service reports SERVING; `owner` can open
    `new_ticket` and read it."""
    stopped = [n for n in stack.supervisor.names if not stack.supervisor.is_running(n)]
    assert not stopped, f"processes stopped during the fuzzing: {stopped}"
    for name in stack.supervisor.names:
        addr = stack.supervisor.command(name)[1].get("CASEMESH_GRPC_ADDR")
        if addr:
            with grpc.insecure_channel(addr) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    wait_serving(stack.gateway, timeout=10)
    client = Client(stack.gateway, stack.secret, owner)
    try:
        made = client.CreateTicket(new_ticket)
        read = client.GetTicket(pb.GetTicketRequest(name=made.name))
        assert (read.name, read.subject) == (made.name, made.subject)
    finally:
        client.close()


def test_every_rpc_survives_hostile_input(stack: Stack) -> None:
    logs, failed_before = log_sizes(stack), server_errors(stack)
    run_id = uuid.uuid4().hex[:6]
    owners = [f"fuzz-owner-{run_id}-{k}" for k in range(OWNERS)]
    article = fuzz_article(stack, run_id)
    owned = [replace(matrix.owned_by(stack, o), article=article) for o in owners]
    sound = sound_requests(stack)
    spares = [spares_of(stack, o, first, sound) for o, first in zip(owners, owned, strict=True)]
    maker = Maker(SEED, Names(owners, owned, spares), sound)
    print(f"\nfuzz seed {SEED}")
    began, since = time.monotonic(), test_reports.service_now(stack) - timedelta(seconds=1)
    try:
        answers = asyncio.run(run(stack, maker, REQUESTS))
    finally:
        leave_no_trace(stack, article, since)
    report = summary(answers, time.monotonic() - began)
    print(report)
    wrong = [(a, judge(a)) for a in answers if judge(a)]
    listed = "\n".join(
        f"  {why}: {a.case.rpc.name} as {a.case.role} ({a.case.what}) -> {a.code.name} "
        f"{a.details[:200]!r}"
        for a, why in wrong[:40]
    )
    assert len(answers) == REQUESTS
    assert {a.case.rpc.name for a in answers} == {r.name for r in matrix.RPCS}
    assert not wrong, f"{len(wrong)} answers a client cannot act on:\n{listed}\n{report}"
    still_serving(stack, owners[0], sound["TicketService.CreateTicket"](owned[0]))
    failed = server_errors(stack) - failed_before
    assert not failed, f"calls the processes answered INTERNAL or UNKNOWN: {dict(failed)}"
    settle(stack)
    logged = errors_logged(stack, logs)
    assert not logged, f"errors in the processes' logs: {dict(logged)}"
