"""A person's data export (`PrivacyService.ExportPerson`), composed here
from the case services, the help centre and the notifier as the person:
what each service shows them of their cases (and help sessions, and the
messages sent to them) is what the archive holds, so its access rules
decide what another party's data an export may carry (none but what the
person was already shown). The files are the person's uploads but those
attached only to cases the export does not hold (an agent's, to another
person's ticket or copyright case: that person's data, not theirs;
`_of_the_person`). The archive is a zip, written as it streams:
`casemesh-export.json` first, each case written as soon as it is read (a
long history would otherwise be held whole, several times over, before a
byte went out), then those files, read from the evidence service chunk by
chunk, so no file is held whole in memory either."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import IO, Any

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


@dataclass
class Held:
    """What an export has put in its archive so far: how many of each kind
    (for the log line that records it, whole or not), and what its later
    parts need of the earlier ones, which are gone from memory by then: the
    names of the cases it holds (files attached to them are the person's),
    the person's reports with their cases, the files to write, and the
    paths of those that could not be."""

    counts: Counter[str] = field(default_factory=Counter)
    standing: int = 0
    cases: set[str] = field(default_factory=set)
    reports: list[tuple[str, str]] = field(default_factory=list)
    files: list[Export.EvidenceFile] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def count(self, part: Export) -> None:
        for described, value in part.ListFields():
            if described.is_repeated:
                self.counts[described.name] += len(value)
        if part.HasField("reporting_standing"):
            self.standing = part.reporting_standing.state


async def archive(
    sources: Sources, person: str, now: datetime, held: Held
) -> AsyncGenerator[bytes, None]:
    """The zip archive of the person's data, in pieces of at most `CHUNK`
    bytes. `MANIFEST` is written part by part as the services answer, and
    sent as it is written: the gateway holds about one case with its
    history at a time, however long the person's history. A file the blob
    store no longer has (NOT_FOUND) is left out, its path put in
    `held.missing` and, with why, in `MISSING`. So is one it has damaged
    (DATA_LOSS): at the first read it is left out; part-way through, what
    was read of it is sent already, so its entry is closed as it is and
    `MISSING` says those bytes are not the file. Both fail every try alike:
    ending the export, they would keep the person from the rest. Any other
    failure to read a file (the store unreachable) ends the archive with
    that error, so that no archive lacks a file that exists."""
    sink = _Sink()
    why: list[str] = []
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        manifest = _write_manifest(zipped, sink, _contents(sources, person, now, held), held)
        async with contextlib.aclosing(manifest):
            async for piece in manifest:
                yield piece
        for item in held.files:
            request = evidence_pb2.ReadEvidenceRequest(name=item.evidence.name)
            size = item.evidence.size_bytes
            chunks = sources.stream(sources.evidence, "ReadEvidence", request, size)
            async with contextlib.aclosing(chunks):
                try:
                    first = await anext(chunks, None)
                except grpc.aio.AioRpcError as err:
                    if err.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DATA_LOSS):
                        raise
                    held.missing.append(item.path)
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
                    held.missing.append(item.path)
                    why.append(f"{item.path}\t{err.code().name}\t{DAMAGED}")
                # A file of one piece (most screenshots) is sent once written:
                # at most a piece waits here, however many files there are.
                for piece in sink.drain(CHUNK):
                    yield piece
        if why:
            zipped.writestr(MISSING, "\n".join(why) + "\n")
    for piece in sink.drain(0):
        yield piece


async def _write_manifest(
    zipped: zipfile.ZipFile, sink: _Sink, parts: AsyncGenerator[Export, None], held: Held
) -> AsyncGenerator[bytes, None]:
    """`MANIFEST` in `zipped`, written part by part (`_contents`), what each
    part made of the zip sent on before the next part is read."""
    # Its size is not known until it is written: zip64, in case it passes
    # the 2 GiB zipfile lets an entry have without (written whole, as it was
    # before it was streamed, zipfile chose zip64 by its size; a file past
    # that is streamed as zip64 too).
    with zipped.open(_manifest_entry(), "w", force_zip64=True) as file:
        # The download starts at once, before the first case is read.
        for piece in sink.drain(0):
            yield piece
        manifest = _Manifest(file)
        async with contextlib.aclosing(parts):
            async for part in parts:
                # A case with a long history takes a while to render and
                # deflate: done on the loop, every call the gateway serves
                # would wait that long.
                await _off_the_loop(partial(manifest.put, part))
                held.count(part)
                del part  # as in `_contents`
                for piece in sink.drain(CHUNK):
                    yield piece
        manifest.close()
    for piece in sink.drain(0):
        yield piece


async def _contents(
    sources: Sources, person: str, now: datetime, held: Held
) -> AsyncGenerator[Export, None]:
    """What `MANIFEST` holds, in parts read one after another, each an
    `Export` holding the next fields, or the next items of one: a case with
    its history, or a page of a list. They come in the order of the fields'
    numbers, the order the proto3 JSON of the whole is written in (so the
    files come before the reports' steps). Each case the person is shown
    as the person; the files are the person's uploads but those attached
    only to cases the export does not hold (`_of_the_person`), their bytes
    read when written."""
    head = Export(person=person)
    head.export_time.FromDatetime(now.astimezone(UTC))
    yield head
    for parts in (
        _cases(sources, held, TICKETS),
        _cases(sources, held, APPEALS),
        _reports(sources, held),
        _report_cases(sources, held),
        _evidence(sources, person, held),
        _report_steps(sources, held),
        _standing(sources),
        _listed(sources),
    ):
        async with contextlib.aclosing(parts):
            async for part in parts:
                yield part
                # Let go of it while the next is read: a part may be a
                # case with a history of hundreds of megabytes.
                del part


@dataclass(frozen=True)
class _CaseKind:
    """A kind of case the manifest holds with its whole history: the
    service that lists the person's (`service`, a `Sources` attribute),
    its list and history calls, and the manifest's field (`repeated`, also
    the list response's) whose records name the case by `key`."""

    service: str
    listing: tuple[str, type]
    history: tuple[str, type]
    repeated: str
    key: str


TICKETS = _CaseKind(
    "tickets",
    ("ListTickets", tickets_pb2.ListTicketsRequest),
    ("ListTicketEvents", tickets_pb2.ListTicketEventsRequest),
    "tickets",
    "ticket",
)
APPEALS = _CaseKind(
    "appeals",
    ("ListAppeals", appeals_pb2.ListAppealsRequest),
    ("ListAppealEvents", appeals_pb2.ListAppealEventsRequest),
    "appeals",
    "appeal",
)


async def _cases(sources: Sources, held: Held, kind: _CaseKind) -> AsyncGenerator[Export, None]:
    """The person's cases of `kind`, each with its history, one at a time."""
    stub = getattr(sources, kind.service)
    async for case in _pages(sources, stub, *kind.listing, kind.repeated):
        part = Export()
        record = getattr(part, kind.repeated).add(**{kind.key: case})
        await _history(sources, stub, *kind.history, case.name, record.events)
        held.cases.add(case.name)
        yield part


async def _reports(sources: Sources, held: Held) -> AsyncGenerator[Export, None]:
    """The person's reports, a page at a time; their steps come later
    (`_report_steps`), after the files, as the manifest orders them."""
    async for reports in _by_page(
        sources, sources.reports, "ListReports", reports_pb2.ListReportsRequest, "reports"
    ):
        for report in reports:
            held.cases.add(report.name)
            held.reports.append((report.name, report.report_case))
        yield Export(reports=reports)


async def _report_cases(sources: Sources, held: Held) -> AsyncGenerator[Export, None]:
    """The report cases naming the person as the uploader, then the case of
    each of their reports not among those (ListMyReportCases lists only
    the former), as GetReportCase shows it to a reporter: its decision and
    statement of reasons, their own reports and appeals, no other party.
    One that is not found (no longer kept) is left out, as the lists leave
    out what is gone."""
    listed: set[str] = set()
    async for cases in _by_page(
        sources,
        sources.reports,
        "ListMyReportCases",
        reports_pb2.ListMyReportCasesRequest,
        "report_cases",
    ):
        listed.update(case.name for case in cases)
        yield Export(report_cases=cases)
    for _, name in held.reports:
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
        yield Export(report_cases=[case])


async def _evidence(sources: Sources, person: str, held: Held) -> AsyncGenerator[Export, None]:
    """The records of the files that are the person's to have, read once
    every case is (`held.cases`), each with its path in the archive."""
    async for records in _by_page(
        sources, sources.evidence, "ListEvidence", evidence_pb2.ListEvidenceRequest, "evidence"
    ):
        files = [
            Export.EvidenceFile(evidence=record, path=_path_of(record))
            for record in records
            if _of_the_person(record, person, held.cases)
        ]
        held.files.extend(files)
        yield Export(evidence=files)


async def _report_steps(sources: Sources, held: Held) -> AsyncGenerator[Export, None]:
    for name, _ in held.reports:
        request = reports_pb2.ListReportEventsRequest(name=name)
        steps = await sources.call(sources.reports, "ListReportEvents", request)
        part = Export()
        part.report_steps.add(report=name, events=steps.events)
        yield part


async def _standing(sources: Sources) -> AsyncGenerator[Export, None]:
    request = reports_pb2.GetMyReportingStandingRequest()
    standing = await sources.call(sources.reports, "GetMyReportingStanding", request)
    yield Export(reporting_standing=standing)


async def _listed(sources: Sources) -> AsyncGenerator[Export, None]:
    """From the help centre: their help sessions and phone-number changes;
    from the notifier: every message sent to them about their cases."""
    help_centre, notifier = sources.helpcenter, sources.notifier
    # Each list, the field of its pages and the manifest's field it fills.
    for service, method, request, listed, into in (
        (
            help_centre,
            "ListMyHelpSessions",
            hpb.ListMyHelpSessionsRequest,
            "sessions",
            "help_sessions",
        ),
        (
            help_centre,
            "ListMyPhoneChanges",
            hpb.ListMyPhoneChangesRequest,
            "phone_changes",
            "phone_changes",
        ),
        (
            notifier,
            "ListMyNotifications",
            npb.ListMyNotificationsRequest,
            "notifications",
            "notifications",
        ),
    ):
        async for items in _by_page(sources, service, method, request, listed):
            part = Export()
            getattr(part, into).extend(items)
            yield part


def _of_the_person(record: evidence_pb2.Evidence, person: str, cases: set[str]) -> bool:
    """Whether the file `record` belongs in the person's export: one they
    uploaded (the service lists only theirs; checked again) that is attached
    to a case the export holds, or to none the evidence service has heard
    of (not attached, or attached a moment ago). One attached only to cases
    the export does not hold is another person's: an agent's screenshot on
    someone's ticket (an internal note) or copyright case (a court action);
    or the file of a case of theirs gone since (expired: soon deleted)."""
    if record.owner != person:
        return False
    return not record.cases or not cases.isdisjoint(record.cases)


def _manifest_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(MANIFEST, date_time=datetime.now(UTC).timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


# The manifest's JSON, as `json_format.MessageToJson(whole, indent=2,
# ensure_ascii=False)` renders it: each part of it is rendered alike.
_JSON = json.JSONEncoder(indent=2, ensure_ascii=False)
# Text rendered is encoded and deflated about this much at a time.
_WRITE = 256 * 1024


class _Manifest:
    """`MANIFEST` as it is written: the parts given to `put` (`_contents`)
    make one `Export`, written byte for byte as `json_format.MessageToJson`
    (`_JSON`) renders the whole, while no more than one part is held. Parts
    come in the order of their fields' numbers (the order the JSON of the
    whole has them in); a list's items may come in many parts."""

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._text: list[str] = []
        self._size = 0
        self._fields = 0
        # The list whose items are being written, open until another field.
        self._list = ""

    def put(self, part: Export) -> None:
        for key, value in json_format.MessageToDict(part).items():
            if isinstance(value, list):
                for item in value:
                    self._item(key, item)
            else:
                self._close_list()
                self._field(key)
                self._value(value, "\n  ")
        self._flush()

    def close(self) -> None:
        self._close_list()
        self._add("\n}" if self._fields else "{}")
        self._flush()

    def _field(self, key: str) -> None:
        self._add(f"{',' if self._fields else '{'}\n  {_JSON.encode(key)}: ")
        self._fields += 1

    def _item(self, key: str, item: Any) -> None:
        if key == self._list:
            self._add(",\n    ")
        else:
            self._close_list()
            self._field(key)
            self._add("[\n    ")
            self._list = key
        self._value(item, "\n    ")

    def _close_list(self) -> None:
        if self._list:
            self._add("\n  ]")
            self._list = ""

    def _value(self, value: Any, indent: str) -> None:
        """`value` as `json.dumps` renders it, nested in `indent`: no text in
        JSON holds a line break but those of its indentation (one in a
        string is written `\\n`)."""
        for text in _JSON.iterencode(value):
            self._add(text.replace("\n", indent))

    def _add(self, text: str) -> None:
        self._text.append(text)
        self._size += len(text)
        if self._size >= _WRITE:
            self._flush()

    def _flush(self) -> None:
        if self._text:
            self._file.write("".join(self._text).encode())
            self._text, self._size = [], 0


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


async def _by_page(
    sources: Sources, service: Service, method: str, request_of: Callable[..., Message], field: str
) -> AsyncGenerator[Sequence[Any], None]:
    """Every page of a paged list, as its items; a service that gives a page
    token twice is a fault, not a reason to ask for ever."""
    token, seen = "", set[str]()
    while True:
        request = request_of(page_size=PAGES.get(method, PAGE), page_token=token)
        page = await sources.call(service, method, request)
        yield getattr(page, field)
        token = page.next_page_token
        if not token:
            return
        if token in seen:
            raise RepeatedPage(f"{method} gave the same page token twice")
        seen.add(token)


async def _pages(
    sources: Sources, service: Service, method: str, request_of: Callable[..., Message], field: str
) -> AsyncIterator[Any]:
    """Every item of a paged list, page after page."""
    pages = _by_page(sources, service, method, request_of, field)
    async with contextlib.aclosing(pages):
        async for items in pages:
            for item in items:
                yield item


async def _history(
    sources: Sources,
    service: Service,
    method: str,
    request_of: Callable[..., Message],
    name: str,
    into: Any,
) -> None:
    """Every step of the case `name`'s history, page after page, added to
    `into` (its record's `events`)."""
    request = partial(request_of, name=name)
    async for steps in _by_page(sources, service, method, request, "events"):
        into.extend(steps)


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
