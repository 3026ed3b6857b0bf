"""An admin erases a person: their keys are destroyed, the erasure is
published once on casemesh.privacy.v1, and what they wrote reads as erased
while other people's cases stay as they were."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import Any, TypeVar

import grpc
import psycopg

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.personal import ERASED
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import privacy_pb2 as ppb
from casemesh.v1 import privacy_pb2_grpc as ppb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_devstack.postgres import find_bin_dir
from casemesh_devstack.stack import DATABASES
from casemesh_reports.views import SCHEMA
from tests.conftest import Stack, wait_serving
from tests.e2e.test_appeals import notice
from tests.e2e.test_evidence import png, stored_objects
from tests.e2e.test_reports import Person
from tests.support import (
    Client,
    open_ticket,
    records_keyed,
    rejected,
    violated_fields,
    wait_until,
)

T = TypeVar("T")


async def erasures_of(bootstrap: str, person: str) -> list[PersonErased]:
    """Every PersonErased on the topic keyed by `person`, from offset 0."""
    records = await records_keyed(bootstrap, topics.PRIVACY, person)
    return [PersonErased.FromString(r.value or b"") for r in records]


class Privacy:
    def __init__(self, client: Client) -> None:
        self.stub = ppb_grpc.PrivacyServiceStub(client._channel)
        self.metadata = client.metadata

    def erase(self, person: str, request_id: str, reason: str = "PIPL-2026-0042") -> ppb.Erasure:
        request = ppb.ErasePersonRequest(person=person, reason=reason, request_id=request_id)
        erasure: ppb.Erasure = self.stub.ErasePerson(request, metadata=self.metadata, timeout=15)
        return erasure


def locked_out(client: Client, mark: str) -> pb.Ticket:
    return open_ticket(
        client, f"Locked out {mark}", f"Since yesterday, case {mark}.", f"{mark}@example.com"
    )


def test_an_admin_erases_a_person_once_and_only_admins_may(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    mei, tao = f"mei-{run}", f"tao-{run}"
    meis = locked_out(Client(stack.gateway, stack.secret, mei), f"mei{run}")
    taos = locked_out(Client(stack.gateway, stack.secret, tao), f"tao{run}")
    admin = Privacy(Client(stack.gateway, stack.secret, f"admin-{run}", ("admin",)))
    agent = Privacy(Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",)))

    # Only admins; a request missing its fields is refused, naming them.
    err = rejected(lambda: agent.erase(mei, f"r-{run}"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = rejected(lambda: admin.erase(" ", "", reason=""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(violated_fields(err)) == {"person", "reason", "request_id"}
    # A case key's owner is no person: erasing it would erase that case.
    err = rejected(lambda: admin.erase(f"#case/{uuid.uuid4()}", f"c-{run}"))
    assert violated_fields(err) == ["person"]
    # Nor is an id with a mark that does not show (no token names such a person):
    # erasing it would answer success and erase nobody.
    err = rejected(lambda: admin.erase(f"{mei}\u200e", f"m-{run}"))
    assert violated_fields(err) == ["person"]
    err = rejected(lambda: admin.erase("z" * 129, f"z-{run}"))  # named once, for its length
    assert violated_fields(err) == ["person"]
    # The reason is kept and published for good: no address or number of anyone's in it.
    for reason in (f"asked by {mei}@example.com", "来电 138 0013 8000"):
        err = rejected(lambda reason=reason: admin.erase(mei, f"a-{run}", reason))
        assert violated_fields(err) == ["reason"]
    keys = stack.infra.pg.dsn("casemesh_keys")
    with psycopg.connect(keys) as conn:
        assert conn.execute(
            "SELECT count(*) FROM personal_keys WHERE person = %s AND erased_at IS NULL", (mei,)
        ).fetchone() == (1,)

    erasure = admin.erase(mei, f"r-{run}")
    assert (erasure.person, erasure.erased_by, erasure.reason, erasure.erased_keys) == (
        mei,
        f"admin-{run}",
        "PIPL-2026-0042",
        1,
    )
    # A retry is answered with the first erasure; the id cannot erase anyone else.
    assert admin.erase(mei, f"r-{run}") == erasure
    # A user id nobody wrote under: said so (no key destroyed).
    assert admin.erase(f"nobody-{run}", f"r2-{run}").erased_keys == 0
    err = rejected(lambda: admin.erase(tao, f"r-{run}"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    with psycopg.connect(keys) as conn:
        live = conn.execute(
            "SELECT person, count(*) FILTER (WHERE erased_at IS NULL) FROM personal_keys"
            " WHERE person = ANY(%s) GROUP BY person ORDER BY person",
            ([mei, tao],),
        ).fetchall()
    assert live == [(mei, 0), (tao, 1)]

    # Published once, whatever the retries.
    published = wait_until(
        lambda: asyncio.run(erasures_of(stack.infra.kafka.bootstrap, mei)), timeout=60
    )
    assert [(e.person, e.erased_by) for e in published] == [(mei, f"admin-{run}")]
    assert published[0].erase_time.ToDatetime(tzinfo=UTC) == erasure.erase_time.ToDatetime(
        tzinfo=UTC
    )

    # What Mei wrote reads as erased; Tao's ticket is as it was.
    reader = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    got = wait_until(
        lambda: (
            (t := reader.GetTicket(pb.GetTicketRequest(name=meis.name))).subject == ERASED and t
        ),
        timeout=90,
    )
    assert (got.description, got.contact.email) == (ERASED, ERASED)
    assert reader.GetTicket(pb.GetTicketRequest(name=taos.name)).subject == taos.subject


def dumps(stack: Stack) -> dict[str, bytes]:
    """Every database of the stack as `pg_dump` writes it."""
    pg_dump = find_bin_dir() / "pg_dump"
    return {
        db: subprocess.run(
            [str(pg_dump), stack.infra.pg.dsn(db)], capture_output=True, check=True, timeout=120
        ).stdout
        for db in DATABASES
    }


def partition_logs(stack: Stack) -> dict[str, bytes]:
    """The raw bytes of every Casemesh topic partition's log segments."""
    return {
        str(segment.relative_to(stack.infra.kafka.data_dir)): segment.read_bytes()
        for segment in sorted(stack.infra.kafka.data_dir.glob("casemesh.*-*/*.log"))
    }


def found_in(kept: dict[str, bytes], texts: list[str]) -> dict[str, list[str]]:
    """Where each text stands in clear, by database or partition."""
    return {
        where: hits
        for where, data in kept.items()
        if (hits := [t for t in texts if t.encode() in data])
    }


def test_an_erased_persons_contacts_and_words_are_nowhere_in_clear_and_others_untouched(
    stack: Stack,
) -> None:
    """She opens a ticket, files a copyright notice and reports a video, and
    is told by e-mail and SMS; she proves a new phone number in the help
    centre (its codes and the verified change go out on topics); erased, her
    address, numbers and words are in no database's dump and in no topic
    partition's bytes, her cases read as erased, and another person's ticket
    is as it was."""
    run, mark = uuid.uuid4().hex[:8], uuid.uuid4().hex[:10]
    zoe, yan = Person(stack, f"zoe-{run}"), Person(stack, f"yan-{run}")
    email, phone = f"zoe.{mark}@example.com", f"+86139{uuid.uuid4().int % 10**8:08d}"
    subject, explanation = f"Upload keeps failing {mark}s", f"Violent scene at second {mark}e"
    title, studio = f"Spring dance {mark}t", f"Zoe Studio {mark}n"
    ticket = open_ticket(zoe.client, subject, f"Tried three times, case {mark}d.", email, phone)
    filed = notice(zoe, email, phone)  # type: ignore[arg-type]
    filed.filer.legal_name, filed.notice.work.title = studio, title
    appeal = zoe.appeal(apb.FileAppealRequest(appeal=filed, request_id=uuid.uuid4().hex))
    report = zoe.report(f"v{run}", email=email, phone=phone, explanation=explanation)
    card = zoe.evidence.upload(png(), f"zoe id card {mark}f.png")  # its name is her words
    yans = locked_out(yan.client, f"yan{run}")
    yan_email = f"yan{run}@example.com"

    # Told by e-mail and SMS, of each case; Yan of his.
    def told() -> tuple[int, int]:
        return len(stack.mail.to(email)), len(stack.sms.to(phone))

    try:
        wait_until(lambda: min(told()) >= 3, 90)
    except AssertionError:
        raise AssertionError(f"e-mails and SMS: {told()}") from None
    wait_until(lambda: stack.mail.to(yan_email), 60)
    new_phone = f"+86137{uuid.uuid4().int % 10**8:08d}"
    change_phone(stack, zoe.client, phone, new_phone)
    zoes = [email, phone, phone.removeprefix("+86"), new_phone.removeprefix("+86")]
    zoes += [subject, explanation, title, studio, mark]
    # Before: kept in clear where people read it (the read models, the notifier).
    before = found_in(dumps(stack), [email, subject, explanation, title])
    assert set(before) >= {"casemesh_tickets", "casemesh_appeals", "casemesh_reports"}
    assert "casemesh_evidence" in found_in(dumps(stack), [f"id card {mark}f"])
    assert email in before["casemesh_notifier"]

    Privacy(Client(stack.gateway, stack.secret, f"admin-{run}", ("admin",))).erase(
        zoe.user, f"erase-{run}"
    )

    # Every service heard it: nothing of hers in clear anywhere.
    try:
        wait_until(lambda: not found_in(dumps(stack), zoes), timeout=90, interval=1)
    except AssertionError:
        raise AssertionError(f"still in clear: {found_in(dumps(stack), zoes)}") from None
    assert not found_in(partition_logs(stack), zoes)
    # What was searched holds what it should: Yan's ticket in clear where it
    # is kept so (the case index, the notifier), hers as structure.
    kept = dumps(stack)
    assert set(found_in(kept, [yans.subject, yan_email])) == {
        "casemesh_tickets",
        "casemesh_notifier",
    }
    logs = b"".join(partition_logs(stack).values())
    for name in (ticket.name, appeal.name, report.name):
        assert name.split("/")[1].encode() in logs

    # Her cases read as erased through the gateway; Yan's as it was.
    agent = Person(stack, f"agent-{run}", "agent")
    got = agent.client.GetTicket(pb.GetTicketRequest(name=ticket.name))
    assert (got.subject, got.contact.email, got.contact.phone) == (ERASED,) * 3
    got_appeal = agent.appeals.GetAppeal(
        apb.GetAppealRequest(name=appeal.name), metadata=agent.client.metadata, timeout=15
    )
    assert (got_appeal.filer.legal_name, got_appeal.notice.work.title) == (ERASED, ERASED)
    got_report = agent.GetReport(rpb.GetReportRequest(name=report.name))
    assert (got_report.explanation, got_report.contact.email) == (ERASED, ERASED)
    assert agent.client.GetTicket(pb.GetTicketRequest(name=yans.name)).subject == yans.subject
    # The file no case holds went with her; the proof her report, still under
    # review, holds is kept for it.
    wait_until(lambda: card.sha256 not in stored_objects(stack.evidence_dir), 60, interval=0.5)
    assert rejected(lambda: agent.evidence.get(card.name)).code() == grpc.StatusCode.NOT_FOUND
    [proof] = report.evidence
    assert agent.evidence.get(proof.name).sha256 in stored_objects(stack.evidence_dir)

    # Every read model rebuilt from the start (the case indexes and the
    # reports view from their event stores, the queue from the topics at
    # offset 0) holds her cases, their personal fields erased; Yan's as it was.
    rebuild_read_models(stack)
    queued = [ticket.name, appeal.name, report.report_case, yans.name]
    with psycopg.connect(stack.queue_dsn) as conn:
        sql = "SELECT count(*) FROM queue_cases WHERE name = ANY(%s)"
        wait_until(
            lambda: conn.execute(sql, (queued,)).fetchone() == (len(queued),),
            timeout=120,
            interval=0.5,
        )
    # (The gateway dials each restarted service again within seconds.)
    [listed] = relisted(lambda: zoe.client.ListTickets(pb.ListTicketsRequest()).tickets)
    assert (listed.name, listed.subject, listed.contact.email) == (ticket.name, ERASED, ERASED)
    [his] = relisted(lambda: yan.client.ListTickets(pb.ListTicketsRequest()).tickets)
    assert (his.name, his.subject, his.contact.email) == (yans.name, yans.subject, yan_email)
    request, metadata = apb.ListAppealsRequest(), zoe.client.metadata
    [her_appeal] = relisted(
        lambda: zoe.appeals.ListAppeals(request, metadata=metadata, timeout=15).appeals
    )
    assert (her_appeal.name, her_appeal.filer.legal_name) == (appeal.name, ERASED)
    [her_report] = relisted(lambda: zoe.ListReports(rpb.ListReportsRequest()).reports)
    assert (her_report.name, her_report.explanation) == (report.name, ERASED)
    assert not found_in(dumps(stack), zoes)


def change_phone(stack: Stack, client: Client, old: str, new: str) -> None:
    """The user proves both numbers in the help centre, each with the code
    texted to it; the change is verified (and published)."""
    help_centre = hpb_grpc.HelpCenterServiceStub(client._channel)

    def call(method: str, request: Any) -> Any:
        return getattr(help_centre, method)(request, metadata=client.metadata, timeout=15)

    change = call(
        "StartPhoneChange",
        hpb.StartPhoneChangeRequest(old_phone=old, new_phone=new, request_id=uuid.uuid4().hex),
    )
    for number in (old, new):
        code = wait_until(lambda n=number: code_texted_to(stack, n), timeout=60)
        step = call(
            "ConfirmPhoneChange", hpb.ConfirmPhoneChangeRequest(name=change.name, code=code)
        )
    assert step.state == hpb.PHONE_CHANGE_STATE_VERIFIED


def code_texted_to(stack: Stack, number: str) -> str:
    """The one-time code texted to `number` ("" while none was), among the
    other texts its cases sent it."""
    codes = [
        found[1]
        for r in stack.sms.to(number)
        if r["template_id"] == "verification.code"
        and (found := re.search(r"\b(\d{6})\b", r["text"]))
    ]
    return codes[-1] if codes else ""


def relisted(listing: Callable[[], Sequence[T]]) -> Sequence[T]:
    """A list once the rebuilt read model holds something, asking again
    while the service is still being dialled (UNAVAILABLE)."""

    def listed() -> Sequence[T]:
        try:
            return listing()
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                return []
            raise

    found: Sequence[T] = wait_until(listed, timeout=60, interval=0.5)
    return found


def rebuild_read_models(stack: Stack) -> None:
    """As docs/operations.md says: each service stopped, its read model
    dropped, started again to project it anew (the queue: `rebuild`, which
    replays the topics from offset 0)."""
    view = [m.group(1) for m in re.finditer(r"CREATE TABLE IF NOT EXISTS (\w+)", " ".join(SCHEMA))]
    dropped = {
        "tickets": (stack.tickets_dsn, ["ticket_cases"], "ticket_cases_tracking"),
        "appeals": (stack.appeals_dsn, ["appeal_cases"], "appeal_cases_tracking"),
        "reports": (stack.reports_dsn, view, "reports_view_tracking"),
    }
    supervisor, stopped = stack.supervisor, []
    try:
        for name, (dsn, tables, tracking) in dropped.items():
            supervisor.stop(name)
            stopped.append(name)
            with psycopg.connect(dsn) as conn:
                conn.execute(f"TRUNCATE {', '.join(tables)}")
                conn.execute(f"DELETE FROM {tracking} WHERE application_name <> '__migration__'")
        supervisor.stop("casequeue")
        stopped.append("casequeue")
        argv, env = supervisor.command("casequeue")
        rebuilt = subprocess.run(
            [*argv[:-1], "rebuild"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert rebuilt.returncode == 0, rebuilt.stderr
    finally:
        # Whatever happened, the next tests find every service running.
        for name in stopped:
            supervisor.restart(name)  # with what it was started with
    for name in stopped:
        wait_serving(supervisor.command(name)[1]["CASEMESH_GRPC_ADDR"])
