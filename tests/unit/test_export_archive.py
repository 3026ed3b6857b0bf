"""The export archive as the gateway composes it, from stand-in services:
every page of every list, files named safely, and a large file streamed
through in pieces rather than held whole; a long history is sent as it is
read, not held whole first. An export its person gives up on ends at once,
so that they may ask for it again."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import itertools
import os
import threading
import tracemalloc
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from casemesh.platform.grpcutil import DomainErrorInterceptor
from casemesh.platform.identity import (
    InternalTokenSigner,
    TokenVerifier,
    mint_token,
    new_signing_key,
)
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import notifications_pb2 as npb
from casemesh.v1 import privacy_pb2, privacy_pb2_grpc
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import tickets_pb2 as pb
from casemesh_gateway import api, export
from casemesh_gateway.ratelimit import RateLimiter
from tests.support import eventually

MINE, GONE = (
    "evidence/" + "1" * 8 + "-1111-1111-1111-" + "1" * 12,
    "evidence/" + "2" * 8 + "-2222-2222-2222-" + "2" * 12,
)
BIG = bytes(range(256)) * 4096 * 3  # 3 MiB, past several pieces
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


class Tickets:
    async def ListTickets(self, request: pb.ListTicketsRequest, **_: Any) -> Any:
        # Two pages: the export must follow the token.
        if not request.page_token:
            return pb.ListTicketsResponse(
                tickets=[pb.Ticket(name="tickets/a")], next_page_token="more"
            )
        ticket = pb.Ticket(name="tickets/b", evidence=[epb.EvidenceRef(name=MINE)])
        return pb.ListTicketsResponse(tickets=[ticket])

    async def ListTicketEvents(self, request: pb.ListTicketEventsRequest, **_: Any) -> Any:
        steps = [pb.TicketEvent(sequence=1, type="TicketCreated", actor="zoe")]
        if request.name == "tickets/b":
            steps.append(pb.TicketEvent(sequence=2, type="TicketSolved", actor="li"))
        return pb.ListTicketEventsResponse(events=steps)


class Appeals:
    async def ListAppeals(self, request: apb.ListAppealsRequest, **_: Any) -> Any:
        appeal = apb.Appeal(
            name="appeals/c",
            notice=apb.TakedownNotice(originality_evidence=[epb.EvidenceRef(name=MINE)]),
        )
        return apb.ListAppealsResponse(appeals=[appeal])

    async def ListAppealEvents(self, request: apb.ListAppealEventsRequest, **_: Any) -> Any:
        # Over two pages, as a long history is read.
        if not request.page_token:
            filed = apb.AppealEvent(sequence=1, type="Filed")
            return apb.ListAppealEventsResponse(events=[filed], next_page_token="1")
        decided = apb.AppealEvent(sequence=2, type="Decided")
        return apb.ListAppealEventsResponse(events=[decided])


class Reports:
    async def ListReports(self, request: rpb.ListReportsRequest, **_: Any) -> Any:
        return rpb.ListReportsResponse(reports=[rpb.Report(name="reports/d")])

    async def ListReportEvents(self, request: rpb.ListReportEventsRequest, **_: Any) -> Any:
        return rpb.ListReportEventsResponse(
            events=[rpb.ReportEvent(sequence=1, type="ReportFiled")]
        )

    async def GetMyReportingStanding(self, request: Any, **_: Any) -> Any:
        return rpb.ReportingStanding(
            state=rpb.REPORTING_STANDING_STATE_COUNTED, unfounded_reports=["reports/d"]
        )

    async def ListMyReportCases(self, request: rpb.ListMyReportCasesRequest, **_: Any) -> Any:
        # Over two pages: one in effect, one whose restriction was lifted.
        if not request.page_token:
            first = rpb.ReportCase(name="report-cases/e")
            return rpb.ListReportCasesResponse(report_cases=[first], next_page_token="more")
        return rpb.ListReportCasesResponse(report_cases=[rpb.ReportCase(name="report-cases/f")])


class Help:
    async def ListMyHelpSessions(self, request: hpb.ListMyHelpSessionsRequest, **_: Any) -> Any:
        return hpb.ListMyHelpSessionsResponse(sessions=[hpb.HelpSession(name="help-sessions/g")])

    async def ListMyPhoneChanges(self, request: hpb.ListMyPhoneChangesRequest, **_: Any) -> Any:
        change = hpb.PhoneChange(name="phone-changes/h")
        return hpb.ListMyPhoneChangesResponse(phone_changes=[change])


class Notifier:
    async def ListMyNotifications(self, request: npb.ListMyNotificationsRequest, **_: Any) -> Any:
        # Two pages of them.
        if not request.page_token:
            first = npb.Notification(name="notifications/i")
            return npb.ListMyNotificationsResponse(notifications=[first], next_page_token="2")
        second = npb.Notification(name="notifications/j")
        return npb.ListMyNotificationsResponse(notifications=[second])


class Evidence:
    def __init__(self, gone: grpc.StatusCode = grpc.StatusCode.NOT_FOUND) -> None:
        self.reads: list[str] = []
        self.timeouts: dict[str, float] = {}
        self.gone = gone

    async def ListEvidence(self, request: epb.ListEvidenceRequest, **_: Any) -> Any:
        # Only the caller's own (the agent's file on the appeal is not
        # listed), over two pages; one of them is gone from the blob store.
        if not request.page_token:
            own = epb.Evidence(
                name=MINE, owner="zoe", file_name="../../etc/.passwd.png", size_bytes=len(BIG)
            )
            return epb.ListEvidenceResponse(evidence=[own], next_page_token="more")
        gone = epb.Evidence(name=GONE, owner="zoe", file_name="CON.png", size_bytes=10)
        return epb.ListEvidenceResponse(evidence=[gone])

    def ReadEvidence(self, request: epb.ReadEvidenceRequest, **kwargs: Any) -> Any:
        self.reads.append(request.name)
        self.timeouts[request.name] = kwargs["timeout"]
        name, gone = request.name, self.gone

        class Call:
            def __aiter__(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                return self.chunks()

            async def chunks(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                if name == GONE:
                    metadata = grpc.aio.Metadata()
                    raise grpc.aio.AioRpcError(gone, metadata, metadata, details="blob missing")
                for at in range(0, len(BIG), 256 * 1024):
                    yield epb.ReadEvidenceResponse(chunk=BIG[at : at + 256 * 1024])

            def cancel(self) -> None:
                pass

        return Call()


def sources(evidence: Evidence) -> export.Sources:
    return export.Sources(
        tickets=export.Service(Tickets(), "t"),
        appeals=export.Service(Appeals(), "a"),
        reports=export.Service(Reports(), "r"),
        evidence=export.Service(evidence, "e"),
        helpcenter=export.Service(Help(), "h"),
        notifier=export.Service(Notifier(), "n"),
        vouch=lambda audience: (("x-casemesh-identity", audience),),
        call_timeout=lambda: 5.0,
        read_timeout=lambda size: export.read_time(size, 5.0),
    )


NOW = datetime(2026, 12, 4, tzinfo=UTC)


async def download(found_in: export.Sources) -> tuple[export.Export, list[bytes], list[str]]:
    """Zoe's export as she downloads it: its manifest as she reads it, the
    archive's pieces, and the files named missing."""
    held = export.Held()
    pieces = [piece async for piece in export.archive(found_in, "zoe", NOW, held)]
    return manifest_of(b"".join(pieces)), pieces, held.missing


def manifest_of(archive: bytes) -> export.Export:
    zipped = zipfile.ZipFile(io.BytesIO(archive))
    return json_format.Parse(zipped.read(export.MANIFEST), export.Export())


def test_the_archive_holds_every_page_and_only_the_persons_files_named_safely() -> None:
    evidence = Evidence()
    found, pieces, missing = asyncio.run(download(sources(evidence)))
    assert [t.ticket.name for t in found.tickets] == ["tickets/a", "tickets/b"]
    assert [len(t.events) for t in found.tickets] == [1, 2]
    assert [(a.appeal.name, [e.type for e in a.events]) for a in found.appeals] == [
        ("appeals/c", ["Filed", "Decided"])
    ]
    assert [r.name for r in found.reports] == ["reports/d"]
    assert [(r.report, len(r.events)) for r in found.report_steps] == [("reports/d", 1)]
    assert [c.name for c in found.report_cases] == ["report-cases/e", "report-cases/f"]
    assert list(found.reporting_standing.unfounded_reports) == ["reports/d"]
    assert [s.name for s in found.help_sessions] == ["help-sessions/g"]
    assert [c.name for c in found.phone_changes] == ["phone-changes/h"]
    assert [n.name for n in found.notifications] == ["notifications/i", "notifications/j"]
    # Only the person's files, every page of them.
    assert [f.evidence.name for f in found.evidence] == [MINE, GONE]
    assert evidence.reads == [MINE, GONE]

    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    path = f"{MINE}/_.._etc_.passwd.png"  # one segment, not hidden
    # The file the store lost is left out and named; the rest is whole.
    assert archive.namelist() == [export.MANIFEST, path, export.MISSING]
    assert archive.read(path) == BIG
    assert archive.read(export.MISSING).decode() == f"{GONE}/_CON.png\tNOT_FOUND\tblob missing\n"
    assert missing == [f"{GONE}/_CON.png"]
    # The manifest reads as it did when it was rendered whole, byte for byte.
    written = archive.read(export.MANIFEST).decode()
    assert written == json_format.MessageToJson(found, indent=2, ensure_ascii=False)
    assert found.person == "zoe" and found.export_time.ToDatetime(UTC) == NOW
    assert found.evidence[0].path == path
    # Streamed: the file went out in pieces, none larger than a message's share.
    assert len(pieces) > 3 and max(map(len, pieces)) <= export.CHUNK


class Reporter(Reports):
    """Zoe's reports: two of one video (one case), one of a video whose case
    is gone, one in the case naming her as the uploader. Each case as
    GetReportCase shows it to a reporter, and who asked for which."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, Any]] = []

    async def ListReports(self, request: rpb.ListReportsRequest, **_: Any) -> Any:
        cases = ["report-cases/k", "report-cases/k", "report-cases/gone", "report-cases/e"]
        return rpb.ListReportsResponse(
            reports=[
                rpb.Report(name=f"reports/{n}", report_case=case) for n, case in enumerate(cases)
            ]
        )

    async def GetReportCase(self, request: rpb.GetReportCaseRequest, **kwargs: Any) -> Any:
        self.asked.append((request.name, kwargs["metadata"]))
        if request.name == "report-cases/gone":
            metadata = grpc.aio.Metadata()
            lost = grpc.StatusCode.NOT_FOUND
            raise grpc.aio.AioRpcError(lost, metadata, metadata, details="not found")
        decided = rpb.ReportCase(
            name=request.name,
            state=rpb.REPORT_CASE_STATE_NO_VIOLATION,
            reports=["reports/0", "reports/1"],
        )
        decided.decision.decision_facts = "The video shows a staged scene."
        return decided


def test_a_reporters_export_holds_the_cases_of_their_reports_with_the_decision() -> None:
    """Zoe reported a video and it was decided: her export held the report
    and its steps but not the case, so not the decision, its statement of
    reasons or her appeals of it. It now holds the case of each of her
    reports, once, as she is shown it, after the cases naming her as the
    uploader; one gone is left out and the rest of the export is whole."""
    reports = Reporter()
    given = dataclasses.replace(sources(Evidence()), reports=export.Service(reports, "r"))
    found, _, _ = asyncio.run(download(given))
    assert [c.name for c in found.report_cases] == [
        "report-cases/e",
        "report-cases/f",
        "report-cases/k",
    ]
    assert found.report_cases[2].decision.decision_facts == "The video shows a staged scene."
    # Asked once a case, as her (the listed ones not again).
    assert [(name, dict(metadata)) for name, metadata in reports.asked] == [
        ("report-cases/k", {"x-casemesh-identity": "r"}),
        ("report-cases/gone", {"x-casemesh-identity": "r"}),
    ]


async def test_a_long_history_is_written_while_the_gateway_goes_on_serving() -> None:
    """Someone with a ticket of hundreds of long comments: rendering and
    deflating it takes a while, and every call through the gateway waited
    for it. Another task on the gateway's loop now keeps running while it
    is written (between the ticket's last page of steps and the next list
    asked for), and the archive holds it whole."""
    body = "我的手机被偷了" * 1400  # a long comment, as a person writes it
    ticks = 0
    seen: dict[str, int] = {}

    class Long(Tickets):
        async def ListTickets(self, request: pb.ListTicketsRequest, **_: Any) -> Any:
            return pb.ListTicketsResponse(tickets=[pb.Ticket(name="tickets/a", description=body)])

        async def ListTicketEvents(self, request: pb.ListTicketEventsRequest, **_: Any) -> Any:
            at = int(request.page_token or 0)
            steps = [
                pb.TicketEvent(sequence=n, type="CommentAdded", text=body)
                for n in range(at, at + 100)
            ]
            seen["read"] = ticks
            return pb.ListTicketEventsResponse(
                events=steps, next_page_token=str(at + 100) if at < 500 else ""
            )

    class Next(Appeals):
        async def ListAppeals(self, request: apb.ListAppealsRequest, **_: Any) -> Any:
            seen["next"] = ticks
            return await super().ListAppeals(request)

    async def serving() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    given = dataclasses.replace(
        sources(Evidence()),
        tickets=export.Service(Long(), "t"),
        appeals=export.Service(Next(), "a"),
    )
    other = asyncio.create_task(serving())
    try:
        found, _, _ = await download(given)
    finally:
        other.cancel()
    # Written in one go on the loop, the other task would not run at all.
    assert seen["next"] - seen["read"] > 10, seen
    assert [len(record.events) for record in found.tickets] == [600]
    assert found.tickets[0].events[599].text == body


async def test_an_export_given_up_while_its_manifest_is_written_ends_once_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The person goes away while their manifest is written in a thread,
    which cannot be stopped: the export ends once the thread is done with
    the zip, not before, so the zip is never written by two threads."""
    started, go, written = threading.Event(), threading.Event(), threading.Event()
    write = export._Manifest.put

    def slow(manifest: export._Manifest, part: export.Export) -> None:
        started.set()
        go.wait(10)
        write(manifest, part)
        written.set()

    monkeypatch.setattr(export._Manifest, "put", slow)
    pieces = export.archive(sources(Evidence()), "zoe", NOW, export.Held())
    await anext(pieces)  # the download has begun
    first = asyncio.create_task(anext(pieces))
    await eventually(started.is_set, within=5)
    first.cancel()
    for _ in range(20):  # turns of the loop enough to deliver the cancellation
        await asyncio.sleep(0)
    assert not first.done()
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert written.is_set()


@pytest.mark.parametrize("failure", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE])
def test_a_file_store_that_fails_ends_the_export_rather_than_leaving_the_file_out(
    failure: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        asyncio.run(download(sources(Evidence(gone=failure))))
    assert failed.value.code() == failure


CUT = "evidence/" + "3" * 8 + "-3333-3333-3333-" + "3" * 12


class Damaged(Evidence):
    """A file store that finds two of Zoe's three files damaged as it reads
    them (DATA_LOSS): a video part-way through, a screenshot at once."""

    async def ListEvidence(self, request: epb.ListEvidenceRequest, **_: Any) -> Any:
        files = [(CUT, "clip.mp4", len(BIG)), (GONE, "shot.png", 10), (MINE, "a.png", len(BIG))]
        return epb.ListEvidenceResponse(
            evidence=[
                epb.Evidence(name=name, owner="zoe", file_name=file_name, size_bytes=size)
                for name, file_name, size in files
            ]
        )

    def ReadEvidence(self, request: epb.ReadEvidenceRequest, **kwargs: Any) -> Any:
        self.reads.append(request.name)
        # Where each file's read ends DATA_LOSS: the whole one never does.
        damaged_at = {CUT: 2 * 256 * 1024, GONE: 0}.get(request.name, len(BIG))
        damage = f"{request.name} is damaged in storage: its bytes are not those uploaded"

        class Call:
            def __aiter__(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                return self.chunks()

            async def chunks(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                for at in range(0, len(BIG), 256 * 1024):
                    if at >= damaged_at:
                        metadata = grpc.aio.Metadata()
                        lost = grpc.StatusCode.DATA_LOSS
                        raise grpc.aio.AioRpcError(lost, metadata, metadata, details=damage)
                    yield epb.ReadEvidenceResponse(chunk=BIG[at : at + 256 * 1024])

            def cancel(self) -> None:
                pass

        return Call()


def test_a_damaged_file_is_named_missing_and_the_rest_of_the_archive_is_whole() -> None:
    """Zoe's video is found damaged part-way through its read, a screenshot
    at its first: her export failed every time she asked, the rest of her
    files never hers. The archive now completes: her other file is whole;
    the screenshot is left out; what was sent of the video stays at its
    path, which `missing-files.txt` says holds no true copy of the file.
    Both are named missing."""
    evidence = Damaged()
    _, pieces, missing = asyncio.run(download(sources(evidence)))
    assert evidence.reads == [CUT, GONE, MINE]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None  # every entry reads back as written
    clip, shot, whole = f"{CUT}/clip.mp4", f"{GONE}/shot.png", f"{MINE}/a.png"
    assert archive.namelist() == [export.MANIFEST, clip, whole, export.MISSING]
    assert archive.read(whole) == BIG
    assert archive.read(clip) == BIG[: 2 * 256 * 1024]
    assert missing == [clip, shot]
    assert archive.read(export.MISSING).decode().splitlines() == [
        f"{clip}\tDATA_LOSS\tdamaged in storage: the bytes in the archive are not the file"
        " uploaded",
        f"{shot}\tDATA_LOSS\t{GONE} is damaged in storage: its bytes are not those uploaded",
    ]


def evidence_name(n: int) -> str:
    return f"evidence/{n:08d}-0000-0000-0000-000000000000"


class Attached(Evidence):
    """Zoe's files, each with the cases she attached it to: as an agent, a
    screenshot of Kim's ID to an internal note on Kim's ticket; as herself,
    one to her ticket (and to a court action on a case not hers), one to her
    report, and one to nothing yet."""

    FILES = (
        (evidence_name(1), ("tickets/kims",)),
        (evidence_name(2), ("appeals/kims", "tickets/b")),
        (evidence_name(3), ("reports/d",)),
        (evidence_name(4), ()),
    )

    async def ListEvidence(self, request: epb.ListEvidenceRequest, **_: Any) -> Any:
        return epb.ListEvidenceResponse(
            evidence=[
                epb.Evidence(
                    name=name, owner="zoe", file_name="id.png", size_bytes=len(BIG), cases=cases
                )
                for name, cases in self.FILES
            ]
        )


def test_a_file_attached_only_to_another_persons_case_is_not_in_the_export() -> None:
    """Zoe, an agent, attached a screenshot of Kim's ID to an internal note
    on Kim's ticket: it was in Zoe's export, bytes and all, though she is no
    party to Kim's case. It is left out now; her files attached to her own
    cases, and the one attached to nothing, are there."""
    evidence = Attached()
    found, pieces, missing = asyncio.run(download(sources(evidence)))
    kept = [evidence_name(2), evidence_name(3), evidence_name(4)]
    assert [f.evidence.name for f in found.evidence] == kept
    assert evidence.reads == kept
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.namelist() == [export.MANIFEST, *(f"{name}/id.png" for name in kept)]
    assert missing == []


class Looping(Tickets):
    async def ListTickets(self, request: pb.ListTicketsRequest, **_: Any) -> Any:
        return pb.ListTicketsResponse(tickets=[pb.Ticket(name="tickets/a")], next_page_token="x")


def test_a_service_that_gives_the_same_page_again_stops_the_export() -> None:
    looping = dataclasses.replace(sources(Evidence()), tickets=export.Service(Looping(), "t"))
    with pytest.raises(export.RepeatedPage):
        asyncio.run(download(looping))


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("screenshot 1.png", "screenshot 1.png"),
        ("截图.png", "截图.png"),
        ('a<b>c:d"e|f?g*h.png', "a_b_c_d_e_f_g_h.png"),
        ("evil\u202egnp.exe", "evil_gnp.exe"),
        ("nul.txt", "_nul.txt"),
        ("...", "file"),
        ("  trailing. ", "trailing"),
        ("x" * 300 + ".png", "x" * 120),
    ],
)
def test_file_names_in_the_archive_unpack_anywhere(given: str, kept: str) -> None:
    record = epb.Evidence(name=MINE, file_name=given)
    assert export._path_of(record) == f"{MINE}/{kept}"


def test_a_large_file_is_given_the_time_a_slow_download_needs() -> None:
    """The archive is read as fast as the person downloads it: a file's read
    may take as long as its bytes need at the slowest download allowed, not
    only the configured limit (which a small file keeps)."""
    evidence = Evidence()
    asyncio.run(download(sources(evidence)))
    assert evidence.timeouts[MINE] == len(BIG) / export.SLOWEST_DOWNLOAD > 5.0
    assert evidence.timeouts[GONE] == 5.0


class Screenshots(Evidence):
    """Many files of one piece each, as the store reads a screenshot."""

    SHOT = bytes(200 * 1024)

    def __init__(self, sent: list[int]) -> None:
        super().__init__()
        self.sent = sent
        self.waiting: list[int] = []  # bytes read but not yet sent, at each read

    async def ListEvidence(self, request: epb.ListEvidenceRequest, **_: Any) -> Any:
        return epb.ListEvidenceResponse(
            evidence=[
                epb.Evidence(
                    name=f"evidence/{n:08d}-0000-0000-0000-000000000000",
                    owner="zoe",
                    file_name=f"shot{n}.png",
                    size_bytes=len(self.SHOT),
                )
                for n in range(40)
            ]
        )

    def ReadEvidence(self, request: epb.ReadEvidenceRequest, **kwargs: Any) -> Any:
        self.waiting.append(len(self.reads) * len(self.SHOT) - sum(self.sent))
        self.reads.append(request.name)
        shot = self.SHOT

        class Call:
            def __aiter__(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                return self.chunks()

            async def chunks(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                yield epb.ReadEvidenceResponse(chunk=shot)

            def cancel(self) -> None:
                pass

        return Call()


def test_files_of_one_piece_each_go_out_as_they_are_read_not_all_at_the_end() -> None:
    """A person with a thousand screenshots: the gateway holds about one piece
    of the archive at a time, and the download moves from the first file on."""
    sent: list[int] = []
    evidence = Screenshots(sent)

    async def run() -> bytes:
        pieces = []
        async for piece in export.archive(sources(evidence), "zoe", NOW, export.Held()):
            sent.append(len(piece))
            pieces.append(piece)
        return b"".join(pieces)

    archive = zipfile.ZipFile(io.BytesIO(asyncio.run(run())))
    assert len(evidence.reads) == 40 and len(archive.namelist()) == 41
    # Before each read, what was read before it has gone out (but for the
    # zip's own headers and the piece being cut).
    assert max(evidence.waiting) <= export.CHUNK


class Unending(Evidence):
    """A file store whose read of the person's file goes on for as long as
    it is read, each chunk there at once; and whether its reads were
    cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    def ReadEvidence(self, request: epb.ReadEvidenceRequest, **kwargs: Any) -> Any:
        store = self

        class Call:
            def __aiter__(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                return self.chunks()

            async def chunks(self) -> AsyncIterator[epb.ReadEvidenceResponse]:
                while True:
                    yield epb.ReadEvidenceResponse(chunk=BIG[: 256 * 1024])

            def cancel(self) -> None:
                store.cancelled += 1

        return Call()


async def test_an_export_its_person_gives_up_on_ends_and_may_be_asked_for_again() -> None:
    """Zoe downloads her export over gRPC and cancels while the gateway waits
    to write her the next piece. The export went on counting as running
    until the garbage collector came by, and asking again was refused
    RESOURCE_EXHAUSTED EXPORT_RUNNING. It ends as she goes: the file's read
    is cancelled and a new export starts."""
    evidence = Unending()
    backend = api.Backend(
        verifier=TokenVerifier(secret=SECRET),
        signer=InternalTokenSigner(new_signing_key()),
        limiter=RateLimiter(per_minute=600, burst=100),
        timeout=5,
    )
    cases = {
        api.TICKETS: Tickets(),
        api.APPEALS: Appeals(),
        api.REPORTS: Reports(),
        api.EVIDENCE: evidence,
        api.HELPCENTER: Help(),
        api.NOTIFIER: Notifier(),
    }
    async with grpc.aio.insecure_channel("127.0.0.1:9") as unused:  # erasures only
        privacy = api.PrivacyGateway(backend, unused, cases=cases, read_timeout=900)
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    privacy_pb2_grpc.add_PrivacyServiceServicer_to_server(privacy, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    zoe = [("authorization", f"Bearer {mint_token(SECRET, 'zoe', ['user'])}")]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = privacy_pb2_grpc.PrivacyServiceStub(channel)
            download = stub.ExportPerson(privacy_pb2.ExportPersonRequest(), metadata=zoe)
            for _ in range(3):
                await download.read()
            download.cancel()
            await eventually(lambda: not privacy.exporting and evidence.cancelled, within=10)

            again = stub.ExportPerson(privacy_pb2.ExportPersonRequest(), metadata=zoe)
            first = await again.read()
            assert first.file_name.startswith("casemesh-export-"), first.file_name
            again.cancel()
    finally:
        await server.stop(0)


# Text as people write it, too varied for the archive to squeeze away: each
# comment a different stretch of it.
PROSE = os.urandom(600_000).hex()
COMMENT = 10_000  # characters, the most a comment may have


class Crowded(Tickets):
    """A person with `count` tickets of `comments` comments each, every one
    as long as a comment may be (a thousand of them: about 10 MB a ticket);
    and how much of the archive had gone out when each ticket's history
    was first read."""

    def __init__(self, count: int, comments: int = 1000, sent: list[int] | None = None) -> None:
        self.count, self.comments = count, comments
        self.sent = sent if sent is not None else []
        self.received_at_read: list[int] = []

    async def ListTickets(self, request: pb.ListTicketsRequest, **_: Any) -> Any:
        tickets = [pb.Ticket(name=f"tickets/{n}") for n in range(self.count)]
        return pb.ListTicketsResponse(tickets=tickets)

    async def ListTicketEvents(self, request: pb.ListTicketEventsRequest, **_: Any) -> Any:
        at = int(request.page_token or 0)
        if not at:
            self.received_at_read.append(sum(self.sent))
        steps = []
        for n in range(at, min(at + 100, self.comments)):
            start = (n * 7919 + len(request.name) * 104729) % (len(PROSE) - COMMENT)
            text = PROSE[start : start + COMMENT]
            steps.append(pb.TicketEvent(sequence=n, type="CommentAdded", actor="zoe", text=text))
        more = str(at + 100) if at + 100 < self.comments else ""
        return pb.ListTicketEventsResponse(events=steps, next_page_token=more)


class NoFiles(Evidence):
    async def ListEvidence(self, request: epb.ListEvidenceRequest, **_: Any) -> Any:
        return epb.ListEvidenceResponse()


def crowded(tickets: Crowded) -> export.Sources:
    given = sources(NoFiles())
    return dataclasses.replace(given, tickets=export.Service(tickets, "t"))


def test_a_long_history_goes_out_as_it_is_read_not_once_all_of_it_is() -> None:
    """Zoe has years of long tickets: no byte of her export went out until
    every case and step was read and rendered. Now each ticket's part of
    the archive is on its way before the next ticket is read."""
    sent: list[int] = []
    tickets = Crowded(6, comments=100, sent=sent)

    async def run() -> bytes:
        pieces = []
        async for piece in export.archive(crowded(tickets), "zoe", NOW, export.Held()):
            sent.append(len(piece))
            pieces.append(piece)
        return b"".join(pieces)

    found = manifest_of(asyncio.run(run()))
    assert [len(record.events) for record in found.tickets] == [100] * 6
    # What had gone out when each ticket was read: more each time.
    received = tickets.received_at_read
    assert all(before < after for before, after in itertools.pairwise(received)), received


def peak_while_archiving(count: int, into: Path) -> int:
    """The most memory the export of `count` crowded tickets took at once
    (as Python counts it: the text rendered, encoded and deflated), its
    archive written to the file `into` as it is downloaded."""

    async def run() -> None:
        with into.open("wb") as file:
            async for piece in export.archive(crowded(Crowded(count)), "zoe", NOW, export.Held()):
                file.write(piece)

    tracemalloc.start()
    try:
        asyncio.run(run())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_memory_an_export_takes_does_not_grow_with_the_history(tmp_path: Path) -> None:
    """An export held the person's whole history in memory, about four times
    over: a long enough history (or a few at once) took the gateway past its
    memory limit, and every call on it was cut. It now holds about one
    ticket with its history at a time: twice the history, the same memory;
    and the archive holds every ticket, each with every comment."""
    four, eight = tmp_path / "four.zip", tmp_path / "eight.zip"
    peaks = peak_while_archiving(4, four), peak_while_archiving(8, eight)
    ticket = COMMENT * 1000  # characters
    assert peaks[1] < peaks[0] * 1.25, peaks
    assert peaks[1] < 3 * ticket, peaks  # not eight tickets' worth
    found = manifest_of(eight.read_bytes())
    assert [record.ticket.name for record in found.tickets] == [f"tickets/{n}" for n in range(8)]
    assert {len(record.events) for record in found.tickets} == {1000}
