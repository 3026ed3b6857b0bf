"""A person downloads a copy of their data (PrivacyService.ExportPerson): a
zip holding every case they are party to, with every step, the messages
sent to them about their cases, and the files they uploaded; nothing of
anyone else's, though another person reported the same video and wrote on
the same days."""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from typing import Any, cast

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import helpcenter_pb2_grpc as hpb_grpc
from casemesh.v1 import notifications_pb2 as npb
from casemesh.v1 import privacy_pb2 as ppb
from casemesh.v1 import privacy_pb2_grpc as ppb_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.test_appeals import notice
from tests.e2e.test_evidence import png
from tests.e2e.test_reports import Person, decide_no_violation, party
from tests.support import Client, rejected, violated_fields, wait_until

MANIFEST = "casemesh-export.json"
# What an agent asks Zoe about her ticket (and the e-mail she gets says).
QUESTION = "Which phone number did you use?"


def export(client: Client, person: str = "") -> tuple[str, zipfile.ZipFile]:
    """The archive's file name and the archive, as the client downloads it."""
    stub = ppb_grpc.PrivacyServiceStub(client._channel)
    pieces = list(
        stub.ExportPerson(
            ppb.ExportPersonRequest(person=person), metadata=client.metadata, timeout=60
        )
    )
    return pieces[0].file_name, zipfile.ZipFile(io.BytesIO(b"".join(p.data for p in pieces)))


def manifest(archive: zipfile.ZipFile) -> ppb.PersonalDataExport:
    return json_format.Parse(archive.read(MANIFEST), ppb.PersonalDataExport())


def ticket_with_file(person: Person, mark: str, email: str, phone: str) -> tuple[pb.Ticket, Any]:
    """A ticket in the person's words, a screenshot attached."""
    shot = person.evidence.upload(png(), f"screenshot {mark}.png")
    ticket: pb.Ticket = person.client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject=f"Locked out {mark}s",
                description=f"My phone was stolen, case {mark}d.",
                locale="en",
                contact=pb.Contact(email=email, phone=phone, channels=[pb.CHANNEL_EMAIL]),
                evidence=[epb.EvidenceRef(name=shot.name)],
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    return ticket, shot


def test_a_person_exports_every_case_and_file_of_theirs_and_nothing_of_anyone_else(
    stack: Stack,
) -> None:
    run = uuid.uuid4().hex[:8]
    zoe, yan = Person(stack, f"zoe-{run}"), Person(stack, f"yan-{run}")
    agent = Person(stack, f"agent-{run}", "agent")
    zoe_mark, yan_mark = f"z{uuid.uuid4().hex[:10]}", f"y{uuid.uuid4().hex[:10]}"
    zoe_email, yan_email = f"{zoe_mark}@example.com", f"{yan_mark}@example.com"
    digits = uuid.uuid4().int % 10**8
    zoe_phone, yan_phone = f"+86138{digits:08d}", f"+86139{digits:08d}"

    # Zoe: a ticket with a screenshot, which an agent answers and she comments
    # on; a copyright notice; a report of a video.
    ticket, shot = ticket_with_file(zoe, zoe_mark, zoe_email, "+8613800138000")
    agent.client.RequestInfo(pb.RequestInfoRequest(name=ticket.name, message=QUESTION))
    # She answers once the question has reached her: a question answered
    # before it was sent is not sent at all, and the export holds what was.
    question = "ticket.info_requested"
    wait_until(
        lambda: any(m["X-Casemesh-Template"] == question for m in stack.mail.to(zoe_email)), 60
    )
    zoe.client.AddComment(pb.AddCommentRequest(name=ticket.name, body=f"The old one {zoe_mark}c"))
    filed = notice(zoe, zoe_email, "")  # type: ignore[arg-type]
    filed.notice.work.title = f"Spring dance {zoe_mark}t"
    appeal = zoe.appeal(apb.FileAppealRequest(appeal=filed, request_id=uuid.uuid4().hex))
    video = f"v{run}"
    report = zoe.report(video, email=zoe_email, explanation=f"Violence at second {zoe_mark}e")
    loose = zoe.evidence.upload(png(), f"never attached {zoe_mark}.png")
    # Yan: his own ticket and file, and a report of the same video (the same report case).
    yans, yan_shot = ticket_with_file(yan, yan_mark, yan_email, "+8613900139000")
    yans_report = yan.report(video, email=yan_email, explanation=f"Also violent {yan_mark}e")
    # Each looked for help in the help centre, and began changing their phone number.
    changes = {}
    for who, mark, phone in ((zoe, zoe_mark, zoe_phone), (yan, yan_mark, yan_phone)):
        help_centre = hpb_grpc.HelpCenterServiceStub(who.client._channel)
        query = hpb.SearchArticlesRequest(query=f"upload fails {mark}")
        help_centre.SearchArticles(query, metadata=who.client.metadata, timeout=15)
        change = hpb.StartPhoneChangeRequest(
            old_phone=phone, new_phone=f"+86137{phone[-9:-1]}", request_id=mark
        )
        changes[who.user] = help_centre.StartPhoneChange(
            change, metadata=who.client.metadata, timeout=15
        ).name
    # The video breaks no rule, and her report is judged manifestly unfounded.
    decide_no_violation(agent, report, unfounded=True)
    # Xi reports a video of Zoe's, and an agent's decision removing it names her.
    xi, xi_mark = Person(stack, f"xi-{run}"), f"x{uuid.uuid4().hex[:10]}"
    xi_email = f"{xi_mark}@example.com"
    xis = xi.report(f"zv{run}", email=xi_email, explanation=f"Dangerous stunt {xi_mark}e")
    agent.take_action(stack, xis.report_case, party(zoe.user, zoe_email, "en", "Zoe Studio"))

    # Only the person, or an admin, exports; a person id must be one line.
    err = rejected(lambda: export(zoe.client, yan.user))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = rejected(lambda: export(agent.client, zoe.user))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = Client(stack.gateway, stack.secret, f"admin-{run}", ("admin",))
    # (nor carry characters that do not show: no token could name such a person).
    for bad in ("zoe\nyan", " ", f"#case/{uuid.uuid4()}", "z" * 129, "zoe\u200b"):
        err = rejected(lambda: export(admin, bad))  # noqa: B023
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(err) == ["person"]

    seen: dict[str, object] = {}  # what the latest export held, said if it never completes

    def complete() -> tuple[str, zipfile.ZipFile] | None:
        name, archive = export(zoe.client)
        got = manifest(archive)
        counts = (len(got.tickets), len(got.appeals), len(got.reports), len(got.report_cases))
        events = [e.type for e in got.tickets[0].events] if got.tickets else []
        # The agent's question, e-mailed to her (the notifier works behind the cases).
        asked = [n for n in got.notifications if QUESTION in n.body and n.send_time.seconds]
        seen.update(counts=counts, ticket_events=events, notifications=len(got.notifications))
        done = counts == (1, 1, 1, 2) and len(events) >= 3 and asked
        return (name, archive) if done else None

    try:
        file_name, archive = wait_until(complete, timeout=60, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"the export never held it all: {seen}") from exc
    assert file_name.startswith("casemesh-export-") and file_name.endswith(".zip")
    got = manifest(archive)
    assert got.person == zoe.user
    # Every case of hers, each step of each as the API lists them.
    assert [t.ticket.name for t in got.tickets] == [ticket.name]
    steps = zoe.client.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert list(got.tickets[0].events) == list(steps)
    assert [e.text for e in steps][-1] == f"The old one {zoe_mark}c"
    assert got.tickets[0].ticket.contact.email == zoe_email
    assert [a.appeal.name for a in got.appeals] == [appeal.name]
    assert got.appeals[0].appeal.notice.work.title == f"Spring dance {zoe_mark}t"
    assert got.appeals[0].events
    assert [r.name for r in got.reports] == [report.name]
    assert got.reports[0].explanation == f"Violence at second {zoe_mark}e"
    assert [(r.report, [e.type for e in r.events]) for r in got.report_steps] == [
        (report.name, ["ReportFiled", "ReportResolved"])
    ]
    # Her standing as a reporter: that report counts against her.
    assert list(got.reporting_standing.unfounded_reports) == [report.name]
    # Her help session, with what she searched for.
    assert [list(h.searches) for h in got.help_sessions] == [[f"upload fails {zoe_mark}"]]
    # Her phone-number change, as she was shown it: the numbers masked.
    assert [c.name for c in got.phone_changes] == [changes[zoe.user]]
    assert got.phone_changes[0].old_phone.endswith(zoe_phone[-4:])
    assert zoe_phone.encode() not in archive.read(MANIFEST)
    # Every message sent to her about her cases, each to her own address, the
    # agent's question among them as it was e-mailed.
    sent = got.notifications
    assert {n.case for n in sent} >= {ticket.name, appeal.name}
    assert {n.recipient for n in sent} == {zoe_email}
    asked = [n for n in sent if QUESTION in n.body]
    assert [(n.case, n.channel, n.state) for n in asked] == [
        (ticket.name, pb.CHANNEL_EMAIL, npb.NOTIFICATION_STATE_SENT)
    ]
    assert asked[0].subject.startswith("We need more information")
    assert all(n.name.startswith("notifications/") and n.create_time.seconds for n in sent)
    # The case that named her as the uploader, not who reported it; then the
    # case of the video she reported, as she is shown it: its decision and
    # statement of reasons, her own report, not Yan's or the uploader.
    assert [c.name for c in got.report_cases] == [xis.report_case, report.report_case]
    named, reported = got.report_cases
    assert named.affected_uploader.legal_name == "Zoe Studio" and not named.reports
    assert reported.state == rpb.REPORT_CASE_STATE_NO_VIOLATION
    assert reported.decision.decision_facts == "普通的舞蹈视频，没有任何违规内容。"
    assert reported.decide_time.seconds and list(reported.reports) == [report.name]
    assert not reported.HasField("affected_uploader")

    # Every file she uploaded (attached or not), each at its path, byte for
    # byte; nobody else's.
    paths = {f.evidence.name: f.path for f in got.evidence}
    assert {shot.name, loose.name} <= set(paths) and yan_shot.name not in paths
    assert all(f.evidence.owner == zoe.user for f in got.evidence)
    assert archive.read(paths[shot.name]) == zoe.evidence.read(shot.name)
    assert paths[shot.name] == f"{shot.name}/screenshot {zoe_mark}.png"
    assert sorted(archive.namelist()) == sorted([MANIFEST, *paths.values()])

    # Nothing of Yan's anywhere in the archive: not his id, address, words or file.
    everything = b"".join(archive.read(n) for n in archive.namelist())
    yans_own = (
        yan.user,
        yan_email,
        yan_mark,
        yans.name.split("/")[1],
        yans_report.name.split("/")[1],
        changes[yan.user],
    )
    for his in (*yans_own, xi.user, xi_mark, xi_email):
        assert his.encode() not in everything, his
    assert yan.evidence.read(yan_shot.name) not in everything

    # An admin gets the same cases for her (the id as pasted, spaces and all).
    _, for_admin = export(admin, f" {zoe.user} ")
    by_admin = manifest(for_admin)
    assert [t.ticket.name for t in by_admin.tickets] == [ticket.name]
    assert [r.name for r in by_admin.reports] == [report.name]
    assert json.loads(for_admin.read(MANIFEST))["person"] == zoe.user


def test_an_agents_export_leaves_out_their_files_on_other_peoples_cases(stack: Stack) -> None:
    """An agent attaches a screenshot of Zoe's ID to an internal note on her
    ticket: it is Zoe's case, not the agent's, and the agent's own export
    (once the evidence service has heard where the file went) holds no copy
    of it; the file the agent uploaded and attached to nothing is there."""
    run = uuid.uuid4().hex[:8]
    zoe, agent = Person(stack, f"zoe-{run}"), Person(stack, f"agent-{run}", "agent")
    ticket, _ = ticket_with_file(zoe, f"z{run}", f"z{run}@example.com", "+8613800138000")
    id_card = agent.evidence.upload(png(), "zoe id card.png")
    agent.client.AddComment(
        pb.AddCommentRequest(
            name=ticket.name,
            body="ID matches the account holder.",
            internal=True,
            evidence=[epb.EvidenceRef(name=id_card.name)],
            request_id=uuid.uuid4().hex,
        )
    )
    own = agent.evidence.upload(png(), "my notes.png")

    def attached() -> list[str] | None:
        listed = agent.evidence.stub.ListEvidence(
            epb.ListEvidenceRequest(), metadata=agent.client.metadata, timeout=15
        )
        cases = {f.name: list(f.cases) for f in listed.evidence}
        return cases[id_card.name] or None

    assert wait_until(attached, timeout=60, interval=0.5) == [ticket.name]
    _, archive = export(agent.client)
    got = manifest(archive)
    assert [f.evidence.name for f in got.evidence] == [own.name]
    assert sorted(archive.namelist()) == sorted([MANIFEST, got.evidence[0].path])
    everything = b"".join(archive.read(n) for n in archive.namelist())
    assert agent.evidence.read(id_card.name) not in everything


def test_a_person_with_no_cases_gets_an_archive_that_says_so(stack: Stack) -> None:
    nobody = Client(stack.gateway, stack.secret, f"new-{uuid.uuid4().hex[:8]}")
    _, archive = export(nobody)
    assert archive.namelist() == [MANIFEST]
    got = manifest(archive)
    assert (len(got.tickets), len(got.appeals), len(got.reports), len(got.evidence)) == (0,) * 4
    assert got.export_time.seconds > 0


def test_one_export_at_a_time_per_caller_the_next_once_it_ends(stack: Stack) -> None:
    """While her archive is still streaming (she has not read it), a second
    export she asks for is refused, RESOURCE_EXHAUSTED with EXPORT_RUNNING
    and when to retry; someone else's goes ahead; once she lets the first
    go, she can export again."""
    run = uuid.uuid4().hex[:8]
    zoe, yan = Person(stack, f"zoe-{run}"), Person(stack, f"yan-{run}")
    # A recording far larger than what the transport holds for a reader who
    # stops: on a connection of its own whose window does not grow.
    recording = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + os.urandom(16 << 20)
    zoe.evidence.upload(recording, "a long screen recording.mp4")
    fixed = [("grpc.http2.bdp_probe", 0), ("grpc.use_local_subchannel_pool", 1)]
    with grpc.insecure_channel(stack.gateway, options=fixed) as channel:
        stub = ppb_grpc.PrivacyServiceStub(channel)
        request, metadata = ppb.ExportPersonRequest(), zoe.client.metadata
        first = stub.ExportPerson(request, metadata=metadata, timeout=60)
        assert next(first).file_name.startswith("casemesh-export-")  # it has begun
        try:
            err = rejected(lambda: export(zoe.client))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(cast(Any, err))
            assert status is not None
            info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
            assert any(d.Unpack(info) for d in status.details)
            assert info.reason == "EXPORT_RUNNING"
            assert any(d.Unpack(retry) for d in status.details) and retry.retry_delay.seconds > 0
            assert manifest(export(yan.client)[1]).person == yan.user
        finally:
            first.cancel()
    _, archive = wait_until(lambda: _exported(zoe.client), timeout=30, interval=0.5)
    assert len(manifest(archive).evidence) == 1


def _exported(client: Client) -> tuple[str, zipfile.ZipFile] | None:
    """Her export, or None while the one before it is still ending."""
    try:
        return export(client)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        return None
