"""A person's data export (`PrivacyService.ExportPerson`), composed here
from the case services, the help centre and the notifier as the person:
what each service shows them of their cases (and help sessions, and the
messages sent to them) is what the archive holds, so its access rules
decide what another party's data an export may carry (none but what the
person was already shown). The files are the person's uploads but those
attached only to cases the export does not hold (an agent's, to another
person's ticket or copyright case: that person's data, not theirs;
`_of_the_person`). The archive is a zip, written as it streams:
`casemesh-export.json` first, then those files, read from the evidence
service chunk by chunk, so no file is held whole in memory."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from casemesh.platform.identity import Identity
from casemesh.v1 import (
    appeals_pb2,
    evidence_pb2,
    privacy_pb2,
    reports_pb2,
    tickets_pb2,
)
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import notifications_pb2 as npb

Export = privacy_pb2.PersonalDataExport

MANIFEST = "casemesh-export.json"
# Beside it, when a file could not be read: each one's path, status and why.
MISSING = "missing-files.txt"
# Why, for a file found damaged once part of it was in the archive.
DAMAGED = "damaged in storage: the bytes in the archive are not the file uploaded"
PAGE = 100
# Lists whose items may each be large, read a few at a time so that a page
# stays within a gRPC answer's 4 MiB: a help session carries up to 100
# searches and a ticket's description.
PAGES = {"ListMyHelpSessions": 10}
# Each streamed message carries about this much of the archive.
CHUNK = 256 * 1024


@dataclass(frozen=True)
class Service:
    """A case service: its stub, and the audience of the tokens it takes."""

    stub: Any
    audience: str


@dataclass(frozen=True)
class Sources:
    """The services an export gathers from, called as the person."""

    tickets: Service
    appeals: Service
    reports: Service
    evidence: Service
    helpcenter: Service
    notifier: Service
    # The metadata of a call to an audience on the person's behalf.
    vouch: Callable[[str], Sequence[tuple[str, str]]]
    # How long a call, and reading a file of so many bytes, may take.
    call_timeout: Callable[[], float]
    read_timeout: Callable[[int], float]

    async def call(self, service: Service, method: str, request: Message) -> Any:
        return await getattr(service.stub, method)(
            request, metadata=self.vouch(service.audience), timeout=self.call_timeout()
        )

    async def stream(
        self, service: Service, method: str, request: Message, size: int = 0
    ) -> AsyncGenerator[Any, None]:
        """The answers of a streaming call reading `size` bytes."""
        call = getattr(service.stub, method)(
            request, metadata=self.vouch(service.audience), timeout=self.read_timeout(size)
        )
        try:
            async for response in call:
                yield response
        finally:
            call.cancel()


# The slowest download an export waits for (bytes a second, 512 kbit/s): a
# file is read as fast as the person downloads the archive, so its read may
# take as long as its bytes need at this rate, however short the configured
# limit (a 500 MiB video over a slow mobile link would otherwise fail the
# whole export, every time it is tried).
SLOWEST_DOWNLOAD = 64 * 1024


def read_time(size: int, limit: float) -> float:
    """How long reading a file of `size` bytes may take: `limit`, or longer
    for one that needs it at the slowest download (`SLOWEST_DOWNLOAD`)."""
    return max(limit, size / SLOWEST_DOWNLOAD)


def as_person(person: str) -> Identity:
    """Whom the export calls the case services as: the person, with no role
    but a user's, so every answer is what they themselves may see."""
    return Identity(subject=person, roles=frozenset({"user"}))


def archive_name(now: datetime) -> str:
    return f"casemesh-export-{now.astimezone(UTC):%Y%m%d-%H%M%S}.zip"


async def gather(sources: Sources, person: str, now: datetime) -> Export:
    """Every case of the person and the records of the files they uploaded
    that are theirs to have (`_of_the_person`; `path` set); the files' bytes
    are read when written."""
    found = Export(person=person)
    found.export_time.FromDatetime(now.astimezone(UTC))
    tickets, appeals, reports = sources.tickets, sources.appeals, sources.reports
    async for ticket in _pages(
        sources, tickets, "ListTickets", tickets_pb2.ListTicketsRequest, "tickets"
    ):
        events = await _history(
            sources, tickets, "ListTicketEvents", tickets_pb2.ListTicketEventsRequest, ticket.name
        )
        found.tickets.add(ticket=ticket, events=events)
    async for appeal in _pages(
        sources, appeals, "ListAppeals", appeals_pb2.ListAppealsRequest, "appeals"
    ):
        steps = await _history(
            sources, appeals, "ListAppealEvents", appeals_pb2.ListAppealEventsRequest, appeal.name
        )
        found.appeals.add(appeal=appeal, events=steps)
    async for report in _pages(
        sources, reports, "ListReports", reports_pb2.ListReportsRequest, "reports"
    ):
        found.reports.append(report)
        steps = await sources.call(
            reports, "ListReportEvents", reports_pb2.ListReportEventsRequest(name=report.name)
        )
        found.report_steps.add(report=report.name, events=steps.events)
    async for case in _pages(
        sources, reports, "ListMyReportCases", reports_pb2.ListMyReportCasesRequest, "report_cases"
    ):
        found.report_cases.append(case)
    await _reported_cases(sources, found)
    found.reporting_standing.CopyFrom(
        await sources.call(
            reports, "GetMyReportingStanding", reports_pb2.GetMyReportingStandingRequest()
        )
    )
    # From the help centre: their help sessions and phone-number changes;
    # from the notifier: every message sent to them about their cases.
    help_centre, notifier = sources.helpcenter, sources.notifier
    for service, method, request, field, into in (
        (
            help_centre,
            "ListMyHelpSessions",
            hpb.ListMyHelpSessionsRequest,
            "sessions",
            found.help_sessions,
        ),
        (
            help_centre,
            "ListMyPhoneChanges",
            hpb.ListMyPhoneChangesRequest,
            "phone_changes",
            found.phone_changes,
        ),
        (
            notifier,
            "ListMyNotifications",
            npb.ListMyNotificationsRequest,
            "notifications",
            found.notifications,
        ),
    ):
        async for item in _pages(sources, service, method, request, field):
            into.append(item)
    held = _held_cases(found)
    async for record in _pages(
        sources, sources.evidence, "ListEvidence", evidence_pb2.ListEvidenceRequest, "evidence"
    ):
        if _of_the_person(record, person, held):
            found.evidence.add(evidence=record, path=_path_of(record))
    return found


def _held_cases(found: Export) -> set[str]:
    """The names of the cases in `found` that files are attached to: tickets,
    copyright cases and reports (a report case holds none: its reports do)."""
    return {
        *(record.ticket.name for record in found.tickets),
        *(record.appeal.name for record in found.appeals),
        *(report.name for report in found.reports),
    }


def _of_the_person(record: evidence_pb2.Evidence, person: str, held: set[str]) -> bool:
    """Whether the file `record` belongs in the person's export: one they
    uploaded (the service lists only theirs; checked again) that is attached
    to a case the export holds, or to none the evidence service has heard
    of (not attached, or attached a moment ago). One attached only to cases
    the export does not hold is another person's: an agent's screenshot on
    someone's ticket (an internal note) or copyright case (a court action);
    or the file of a case of theirs gone since (expired: soon deleted)."""
    if record.owner != person:
        return False
    return not record.cases or not held.isdisjoint(record.cases)


async def _reported_cases(sources: Sources, found: Export) -> None:
    """Adds to `found.report_cases` the case of each of the person's reports
    not there yet (ListMyReportCases lists only those naming them as the
    uploader), as GetReportCase shows it to a reporter: its decision and
    statement of reasons, their own reports and appeals, no other party.
    One that is not found (no longer kept) is left out, as the lists leave
    out what is gone."""
    listed = {case.name for case in found.report_cases}
    for report in found.reports:
        name = report.report_case
        if not name or name in listed:
            continue
        listed.add(name)
        request = reports_pb2.GetReportCaseRequest(name=name)
        try:
            case = await sources.call(sources.reports, "GetReportCase", request)
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND:
                raise
            continue
        found.report_cases.append(case)


async def archive(
    sources: Sources, found: Export, missing: list[str]
) -> AsyncGenerator[bytes, None]:
    """The zip archive of `found`, in pieces of at most `CHUNK` bytes. A
    file the blob store no longer has (NOT_FOUND) is left out, its path put
    in `missing` and, with why, in `MISSING`. So is one it has damaged
    (DATA_LOSS): at the first read it is left out; part-way through, what
    was read of it is sent already, so its entry is closed as it is and
    `MISSING` says those bytes are not the file. Both fail every try alike:
    ending the export, they would keep the person from the rest. Any other
    failure to read a file (the store unreachable) ends the archive with
    that error, so that no archive lacks a file that exists."""
    sink = _Sink()
    why: list[str] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        # A long history makes a manifest of hundreds of megabytes, seconds
        # to render and deflate: done on the loop, every call the gateway
        # serves would wait that long.
        await _off_the_loop(partial(_write_manifest, zipped, found))
        for piece in sink.drain(0):
            yield piece
        for item in found.evidence:
            request = evidence_pb2.ReadEvidenceRequest(name=item.evidence.name)
            size = item.evidence.size_bytes
            chunks = sources.stream(sources.evidence, "ReadEvidence", request, size)
            async with contextlib.aclosing(chunks):
                try:
                    first = await anext(chunks, None)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DATA_LOSS):
                        raise
                    missing.append(item.path)
                    why.append(f"{item.path}\t{err.code().name}\t{err.details()}")
                    continue
                try:
                    # Media files are stored as they came: compressing them
                    # again gains nothing, and would hold the gateway's loop.
                    with zipped.open(_entry(item.path, item.evidence.size_bytes), "w") as file:
                        if first is not None:
                            file.write(first.chunk)
                        async for chunk in chunks:
                            file.write(chunk.chunk)
                            for piece in sink.drain(CHUNK):
                                yield piece
                except grpc.aio.AioRpcError as err:
                    # Leaving the `with` closed the entry: the zip stays whole.
                    if err.code() != grpc.StatusCode.DATA_LOSS:
                        raise
                    missing.append(item.path)
                    why.append(f"{item.path}\t{err.code().name}\t{DAMAGED}")
                # A file of one piece (most screenshots) is sent once written:
                # at most a piece waits here, however many files there are.
                for piece in sink.drain(CHUNK):
                    yield piece
        if why:
            zipped.writestr(MISSING, "\n".join(why) + "\n")
    for piece in sink.drain(0):
        yield piece


def _write_manifest(zipped: zipfile.ZipFile, found: Export) -> None:
    manifest = json_format.MessageToJson(found, indent=2, ensure_ascii=False)
    zipped.writestr(MANIFEST, manifest.encode())


async def _off_the_loop(work: Callable[[], None]) -> None:
    """Runs `work` in a thread. If the export is cancelled meanwhile (its
    person went away), the thread cannot be stopped: the cancellation waits
    for it, so that the zip it writes is closed only once it is done, never
    by two threads at once."""
    running = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([running])
        raise


async def _pages(
    sources: Sources, service: Service, method: str, request_of: Callable[..., Message], field: str
) -> AsyncIterator[Any]:
    """Every item of a paged list, page after page; a service that gives a
    page token twice is a fault, not a reason to ask for ever."""
    token, seen = "", set[str]()
    while True:
        request = request_of(page_size=PAGES.get(method, PAGE), page_token=token)
        page = await sources.call(service, method, request)
        for item in getattr(page, field):
            yield item
        token = page.next_page_token
        if not token:
            return
        if token in seen:
            raise RepeatedPage(f"{method} gave the same page token twice")
        seen.add(token)


async def _history(
    sources: Sources, service: Service, method: str, request_of: Callable[..., Message], name: str
) -> list[Any]:
    """Every step of the case `name`'s history, page after page."""
    request = partial(request_of, name=name)
    return [step async for step in _pages(sources, service, method, request, "events")]


class RepeatedPage(RuntimeError):
    """A service listed the same page again: the export stops (INTERNAL)."""


def _path_of(record: Any) -> str:
    """`evidence/<id>/<file name>`, the name made safe to unpack on any
    system: no separators, control or bidi characters, or characters
    Windows refuses; no leading or trailing dots or spaces; at most 120
    characters."""
    ident = record.name.removeprefix("evidence/")
    safe = _UNSAFE.sub("_", record.file_name).strip(". ")[:120].strip(". ")
    if safe.split(".")[0].upper() in _RESERVED:
        safe = f"_{safe}"
    return f"evidence/{ident}/{safe or 'file'}"


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]')
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}


def _entry(path: str, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(path, date_time=datetime.now(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    # Known ahead, so zipfile chooses zip64 only for a file that needs it.
    info.file_size = size
    return info


class _Sink(io.RawIOBase):
    """Where the zip is written: the bytes wait here until drained. It cannot
    seek, so `zipfile` writes each entry's sizes after its data."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        piece = bytes(data)
        self._parts.append(piece)
        self._size += len(piece)
        return len(piece)

    def drain(self, at_least: int) -> Iterator[bytes]:
        """What was written, in pieces of at most `CHUNK` bytes, once it is
        `at_least` bytes."""
        if self._size and self._size >= at_least:
            joined = b"".join(self._parts)
            self._parts, self._size = [], 0
            for at in range(0, len(joined), CHUNK):
                yield joined[at : at + CHUNK]
