"""Files are deleted once no case needs them, on a real PostgreSQL database
and a real blob directory, from the case events the evidence service reads:
a file goes when every case that holds it has expired, or, its uploader
erased, when no live case holds it, or when no case took it up in the time
files wait to be attached; bytes another record names stay."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.callers import _VOUCHED
from casemesh.platform.consuming import HeardUntil
from casemesh.platform.errors import NotFound, ResourceExhausted
from casemesh.platform.identity import Identity, Vouched
from casemesh.platform.pools import async_pool
from casemesh.v1 import evidence_pb2 as pb
from casemesh_evidence.api import EvidenceServicer
from casemesh_evidence.application import (
    SPOOL_STALE,
    EvidenceLocker,
    EvidenceView,
    forget_person,
)
from casemesh_evidence.lifecycle import (
    LOCK,
    PROMOTE,
    PURGE_BATCH,
    STORING_FOR,
    UNATTACHED,
    file_locks,
    mark_unneeded,
    observe,
    purge,
    purge_round,
    take,
)
from casemesh_evidence.store import LocalBlobStore
from tests.e2e.test_evidence import png
from tests.support import case_event, column, eventually

CLOSED, NEW = tev.TICKET_STATUS_CLOSED, tev.TICKET_STATUS_NEW
GRACE = timedelta(days=3)
# The case topics heard up to any time: the purger's grace counts up to now.
CAUGHT_UP = datetime.max.replace(tzinfo=UTC)


@pytest.fixture()
async def locker(dsn: str, tmp_path: Path) -> AsyncIterator[EvidenceLocker]:
    pool = async_pool(dsn, min_size=1, max_size=2)
    await pool.open()
    store = LocalBlobStore(tmp_path / "blobs")
    locker = EvidenceLocker(pool=pool, store=store, limits={"image": 1 << 20}, incoming=tmp_path)
    await locker.create_schema()
    yield locker
    await pool.close()


async def upload(
    locker: EvidenceLocker, owner: str, data: bytes, file_name: str = "photo.png"
) -> EvidenceView:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    return await locker.receive(Identity(owner, frozenset({"user"})), file_name, "", chunks())


def attached(*files: EvidenceView) -> list[tev.EvidenceAttachment]:
    """As events carry them: the name sealed (a token), the hash clear."""
    return [tev.EvidenceAttachment(name=f"pd2.{uuid.uuid4().hex}", sha256=f.sha256) for f in files]


def ticket(
    ident: str, version: int, status: Any, kind: Any = tev.TicketClosed, by: str = "", **kw: Any
) -> Any:
    header = tev.TicketEventHeader(ticket_id=ident, version=version, status=status, actor=by)
    return case_event("tickets", f"tickets/{ident}", version, kind(header=header, **kw))


def report(ident: str, version: int, state: str, kind: Any, by: str = "", **kw: Any) -> Any:
    header = rev.ReportEventHeader(aggregate_id=ident, version=version, state=state, actor=by)
    return case_event("reports", f"reports/{ident}", version, kind(header=header, **kw))


def notice(ident: str, version: int, state: str, event: Any, by: str = "", **kw: Any) -> Any:
    header = aev.AppealEventHeader(appeal_id=ident, version=version, state=state, actor=by)
    return case_event("appeals", f"appeals/{ident}", version, event(header=header, **kw))


class Cases:
    """The service's follower of the case topics, fed by hand, and its
    purger, run by hand, on a clock the test sets."""

    def __init__(self, dsn: str, locker: EvidenceLocker) -> None:
        self.dsn, self.store = dsn, locker.store
        self.time = datetime(2026, 12, 1, tzinfo=UTC)
        locker.clock = self  # its owner's asking for a file is stamped with this time too

    def now(self) -> datetime:
        return self.time

    def hear(self, event: Any) -> None:
        told = observe(event)
        assert told is not None
        with psycopg.connect(self.dsn) as conn:
            conn.execute(LOCK, file_locks(*told.files))  # as the service's follower does
            mark_unneeded(conn, take(conn, told), self.now())

    def purge(self, heard: datetime | None = CAUGHT_UP) -> int:
        """The purger's round now, the case topics heard up to `heard` (None:
        nothing known to be heard; by default, everything: the follower is
        not behind)."""
        return purge(
            partial(psycopg.connect, self.dsn), self.store, self.time, GRACE, lambda: heard
        ).deleted

    def purge_after_grace(self) -> int:
        """Nothing goes within the grace period; the purger's round after it."""
        assert self.purge() == 0
        self.time += GRACE + timedelta(seconds=1)
        return self.purge()


async def kept(locker: EvidenceLocker, *files: EvidenceView) -> list[bool]:
    """Per file: is its record still there, and are its bytes?"""
    agent = Identity("agent-1", frozenset({"agent"}))
    found = []
    for f in files:
        try:
            await locker.describe(agent, f"evidence/{f.id}")
            found.append(True)
        except NotFound:
            found.append(False)
    return found


def stored(locker: EvidenceLocker, *files: EvidenceView) -> list[bool]:
    return [locker.store.exists(f.sha256) for f in files]


async def test_a_round_goes_past_candidates_still_needed_to_those_due_behind_them(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Kim's closed ticket marks its files, needed until it expires; a file
    of an expired case is marked after them. A round looks at them a batch
    at a time, and deletes the due one behind batches that deleted nothing."""
    cases = Cases(dsn, locker)
    held = [await upload(locker, "kim", png()) for _ in range(3)]
    due = await upload(locker, "kim", png())
    closed, expired = str(uuid.uuid4()), str(uuid.uuid4())
    cases.hear(ticket(closed, 1, NEW, tev.TicketCreated, "kim", evidence=attached(*held)))
    cases.hear(ticket(expired, 1, NEW, tev.TicketCreated, "kim", evidence=attached(due)))
    cases.hear(ticket(closed, 4, CLOSED))
    cases.time += timedelta(seconds=1)
    cases.hear(ticket(expired, 4, CLOSED))
    cases.hear(ticket(expired, 5, CLOSED, tev.TicketExpired))
    cases.time += GRACE + timedelta(seconds=1)

    deleted = await asyncio.to_thread(
        purge_round,
        partial(psycopg.connect, dsn),
        locker.store,
        cases,
        GRACE,
        Told(cases.time),
        limit=2,
    )
    assert deleted == 1
    assert await kept(locker, *held, due) == [True, True, True, False]


async def test_a_file_goes_when_every_case_holding_it_expired(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Ada's ticket expires: the file only it held is deleted (its bytes stay
    while Bo's upload of the same bytes names them), the file her other,
    open ticket also holds stays until that one expires too, and a file no
    case holds is hers to keep while it waits to be attached."""
    cases = Cases(dsn, locker)
    same = png()
    only, shared, loose = [await upload(locker, "ada", d) for d in (same, png(), png())]
    bos = await upload(locker, "bo", same)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    cases.hear(ticket(first, 1, NEW, tev.TicketCreated, "ada", evidence=attached(only, shared)))
    cases.hear(ticket(second, 1, NEW, tev.TicketCreated, "ada", evidence=attached(shared)))

    cases.hear(ticket(first, 4, CLOSED))
    assert cases.purge_after_grace() == 0  # ended: still within its retention
    assert await kept(locker, only, shared) == [True, True]
    cases.hear(ticket(first, 5, CLOSED, tev.TicketExpired))
    assert cases.purge_after_grace() == 1
    assert await kept(locker, only, shared, loose, bos) == [False, True, True, True]
    assert stored(locker, only, shared) == [True, True]  # Bo's record names the bytes
    # Her same bytes uploaded again are a new file, which no case holds: the
    # expired ticket's events heard again (a redelivery, a reset group) do
    # not make it hold them.
    back = await upload(locker, "ada", same)
    cases.hear(ticket(first, 1, NEW, tev.TicketCreated, "ada", evidence=attached(only, shared)))
    cases.hear(ticket(first, 4, CLOSED))
    cases.hear(ticket(first, 5, CLOSED, tev.TicketExpired))
    # A later event of an expired case (a report's decision reversed on an
    # appeal upheld late) leaves it expired.
    cases.hear(ticket(first, 6, CLOSED))
    assert await kept(locker, only, shared) == [False, True]

    cases.hear(ticket(second, 3, CLOSED))
    cases.hear(ticket(second, 4, CLOSED, tev.TicketExpired))
    assert cases.purge_after_grace() == 1
    assert await kept(locker, shared, loose, bos, back) == [False, True, True, True]
    assert stored(locker, shared, loose, bos) == [False, True, True]
    assert back.id != only.id


async def test_an_erased_persons_files_go_once_no_live_case_holds_them(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Cy is erased: the file no case holds and the one of her closed ticket
    are deleted after the grace period, though she asked for them just
    before; the one a new ticket of hers takes up, heard in time, stays, and
    so does the one her report still under review holds, while the report
    is decided (an appeal may reopen it), until the decision is reversed.
    Dan's file in her closed ticket is his, and stays."""
    cases = Cases(dsn, locker)
    loose, closed, reported, later = [await upload(locker, "cy", png()) for _ in range(4)]
    dans = await upload(locker, "dan", png())
    ticket_id, report_id = str(uuid.uuid4()), str(uuid.uuid4())
    cases.hear(ticket(ticket_id, 1, NEW, tev.TicketCreated, "cy", evidence=attached(closed)))
    cases.hear(ticket(ticket_id, 2, NEW, tev.CommentAdded, "dan", evidence=attached(dans)))
    cases.hear(ticket(ticket_id, 5, CLOSED))
    filed = rev.ReportFiled
    cases.hear(report(report_id, 1, "SUBMITTED", filed, "cy", evidence=attached(reported)))

    assert forget_person(dsn, cases, "cy") == 4  # the names she gave her four files
    assert cases.purge() == 0  # within the grace period
    cases.time += GRACE + timedelta(seconds=1)
    # Just before the purger's round, she asks for files to attach them to a
    # ticket she is filing (the gateway does): an erasure's candidates do not
    # wait their grace again for that. The ticket, heard, holds one of them.
    for file in (loose, closed, later):
        await locker.describe(Identity("cy", frozenset({"user"})), f"evidence/{file.id}")
    taken_up = ticket(str(uuid.uuid4()), 1, NEW, tev.TicketCreated, "cy", evidence=attached(later))
    cases.hear(taken_up)
    assert cases.purge() == 2
    assert cases.purge_after_grace() == 0
    assert await kept(locker, loose, closed, reported, later, dans) == [
        False,
        False,
        True,
        True,
        True,
    ]
    assert stored(locker, loose, closed, reported, later, dans) == [False, False, True, True, True]
    assert forget_person(dsn, cases, "cy") == 0  # idempotent
    assert cases.purge_after_grace() == 0

    cases.hear(report(report_id, 2, "NO_VIOLATION", rev.ReportResolved))
    assert cases.purge_after_grace() == 0
    cases.hear(report(report_id, 3, "REVERSED", rev.ReportDecisionReversed))
    assert cases.purge_after_grace() == 1
    assert await kept(locker, reported, dans) == [False, True]
    assert stored(locker, reported) == [False]


@pytest.mark.parametrize("answered", ["window passed", "court kept it down"])
async def test_a_notice_with_items_still_down_keeps_its_erased_partys_evidence(
    dsn: str, locker: EvidenceLocker, answered: str
) -> None:
    """Cy's takedown notice names two videos of Ul's and is upheld; Ul's
    counter-notice answers for one only: it comes back when its window
    passes, or a court Cy went to keeps it down. Either way the other is down
    still, and Ul may appeal for it. Both are erased meanwhile: the notice's
    proof and the counter-notice's stay past the grace period, an appeal is
    decided on them. Ul's appeal upheld, the rest comes back, nothing more
    can follow: then they go."""
    cases = Cases(dsn, locker)
    originality, infringement = [await upload(locker, "cy", png()) for _ in range(2)]
    answer = await upload(locker, "ul", png())
    ident, items = str(uuid.uuid4()), ["videos/1", "videos/2"]
    filed = {"kind": "TAKEDOWN_NOTICE", "infringing_items": items}
    proofs = attached(originality, infringement)
    cases.hear(notice(ident, 1, "SUBMITTED", aev.AppealFiled, "cy", evidence=proofs, **filed))
    cases.hear(notice(ident, 2, "UPHELD", aev.AppealDecided, "agent-1", outcome="UPHOLD"))
    countered = aev.CounterNoticeFiled
    cases.hear(
        notice(ident, 3, "FORWARDED_TO_CLAIMANT", countered, "ul", evidence=attached(answer))
    )
    restored = aev.ContentRestored
    if answered == "window passed":
        after = "RESTORED"
        cases.hear(notice(ident, 4, after, restored, "system", restored_items=items[:1]))
    else:
        after = "UPHELD_BY_COURT"
        cases.hear(notice(ident, 4, "HELD", aev.CourtActionRecorded, "agent-1"))
        outcome = {"outcome": "CONTENT_STAYS_DOWN"}
        cases.hear(notice(ident, 5, after, aev.CourtOutcomeRecorded, "agent-1", **outcome))

    forget_person(dsn, cases, "cy")
    forget_person(dsn, cases, "ul")
    assert cases.purge_after_grace() == 0
    assert await kept(locker, originality, infringement, answer) == [True] * 3

    appeal = f"appeals/{uuid.uuid4()}"
    rest = {"restored_items": items[1:], "outcome_of": appeal}
    cases.hear(notice(ident, 6, after, restored, "agent-1", **rest))
    assert cases.purge_after_grace() == 3
    assert await kept(locker, originality, infringement, answer) == [False] * 3


async def test_a_case_taking_a_file_up_while_the_follower_is_away_keeps_it(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Gil's two tickets expire: their files become candidates. The
    service's follower of the case topics stops; a day later Gil attaches
    one of the files to a new ticket, which the follower does not hear. Four
    days on, past the grace, the purger deletes nothing: the topics are heard
    only up to when the follower stopped. Back, it hears the new ticket: the
    file it holds stays, the other goes."""
    cases = Cases(dsn, locker)
    taken, dropped = [await upload(locker, "gil", png()) for _ in range(2)]
    for file in (taken, dropped):
        ident = str(uuid.uuid4())
        cases.hear(ticket(ident, 1, NEW, tev.TicketCreated, "gil", evidence=attached(file)))
        cases.hear(ticket(ident, 4, CLOSED))
        cases.hear(ticket(ident, 5, CLOSED, tev.TicketExpired))
    stopped = cases.time  # the follower stops, everything until now heard
    cases.time += timedelta(days=1)
    again = ticket(str(uuid.uuid4()), 1, NEW, tev.TicketCreated, "gil", evidence=attached(taken))
    cases.time += GRACE + timedelta(seconds=1)
    assert cases.purge(heard=stopped) == 0
    assert await kept(locker, taken, dropped) == [True, True]

    cases.hear(again)
    assert cases.purge(heard=None) == 0  # Kafka never answered since the start
    assert cases.purge() == 1
    assert await kept(locker, taken, dropped) == [True, False]
    assert cases.purge_after_grace() == 0
    assert stored(locker, taken) == [True]


async def test_asking_for_a_file_puts_off_only_the_deletion_of_an_upload_no_case_took_up(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Ida's ticket expires, and Jo is erased: their files become candidates,
    as does the upload of Ida's that no case took up in its wait. Both ask
    for their files twice a day (a script polling GetEvidence): the expired
    case's file and the erased person's go once the grace period is over,
    as if never asked for; only the upload still to be attached waits its
    grace again each time (the gateway asks before attaching it)."""
    cases = Cases(dsn, locker)
    ida, jo = Identity("ida", frozenset({"user"})), Identity("jo", frozenset({"user"}))
    expired, loose = [await upload(locker, "ida", png()) for _ in range(2)]
    erased = await upload(locker, "jo", png())  # never attached either
    ident = str(uuid.uuid4())
    cases.hear(ticket(ident, 1, NEW, tev.TicketCreated, "ida", evidence=attached(expired)))
    cases.time += UNATTACHED + timedelta(seconds=1)  # the waits are over
    cases.hear(ticket(ident, 4, CLOSED))
    cases.hear(ticket(ident, 5, CLOSED, tev.TicketExpired))
    forget_person(dsn, cases, "jo")
    assert cases.purge() == 0  # all three candidates from now

    deleted = 0
    for _ in range(7):  # three and a half days
        cases.time += timedelta(hours=12)
        for who, file in ((ida, expired), (ida, loose), (jo, erased)):
            with contextlib.suppress(NotFound):
                await locker.describe(who, f"evidence/{file.id}")
        deleted += cases.purge()
    assert deleted == 2
    assert await kept(locker, expired, erased, loose) == [False, False, True]
    assert stored(locker, expired, erased, loose) == [False, False, True]


async def test_a_candidate_an_earlier_release_marked_is_still_put_off_when_asked_for(
    dsn: str, locker: EvidenceLocker
) -> None:
    """A candidate recorded by a release that did not say why (as an old
    replica still running in a rollout marks one whose wait to be attached
    ended): asked for before it is attached, it waits its grace again, as it
    did then; a file a case is taking up is never deleted for want of it."""
    cases = Cases(dsn, locker)
    ida = Identity("ida", frozenset({"user"}))
    loose = await upload(locker, "ida", png())
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM evidence_unattached WHERE evidence_id = %s", (loose.id,))
        conn.execute(
            "INSERT INTO evidence_unneeded (evidence_id, since) VALUES (%s, %s)",
            (loose.id, cases.time),
        )
    deleted = 0
    for _ in range(7):  # three and a half days, asked for twice a day
        cases.time += timedelta(hours=12)
        await locker.describe(ida, f"evidence/{loose.id}")
        deleted += cases.purge()
    assert deleted == 0 and await kept(locker, loose) == [True]


class Told(HeardUntil):
    """How far the case topics were heard, as set by the test; counts the
    times it is asked."""

    def __init__(self, until: datetime | None) -> None:
        super().__init__("", "", ())
        self.until, self.asked = until, 0

    async def check(self, now: datetime) -> datetime | None:
        self.asked += 1
        return self.until


async def test_a_purge_round_asks_how_far_the_topics_were_heard_only_when_a_file_is_due(
    dsn: str, locker: EvidenceLocker
) -> None:
    """The service's purger, a round at a time: Kafka is asked nothing while
    no candidate is due; once some are, it is asked once a round, however
    many batches the round deletes, and nothing goes while it knows nothing."""
    cases = Cases(dsn, locker)
    files = [await upload(locker, "hal", png()) for _ in range(3)]
    ident = str(uuid.uuid4())
    cases.hear(ticket(ident, 1, NEW, tev.TicketCreated, "hal", evidence=attached(*files)))
    cases.hear(ticket(ident, 4, CLOSED))
    cases.hear(ticket(ident, 5, CLOSED, tev.TicketExpired))
    connect = partial(psycopg.connect, dsn)

    async def a_round(heard: Told) -> int:
        # In a thread of its own, as the service's purger runs it; a batch a file.
        return await asyncio.to_thread(
            purge_round, connect, locker.store, cases, GRACE, heard, limit=1
        )

    unknown = Told(None)
    assert await a_round(unknown) == 0
    assert unknown.asked == 0  # within the grace: nothing due

    cases.time += GRACE + timedelta(seconds=1)
    assert await a_round(unknown) == 0
    assert unknown.asked == 1
    assert await kept(locker, *files) == [True] * 3

    caught_up = Told(cases.time)
    assert await a_round(caught_up) == 3  # in three batches
    assert caught_up.asked == 1
    assert await kept(locker, *files) == [False] * 3


def waiting_until(dsn: str, *files: EvidenceView) -> list[datetime | None]:
    """Per file: when its wait to be attached ends (None: it does not wait)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT evidence_id::text, until FROM evidence_unattached")
        found: dict[str, datetime] = dict(rows.fetchall())
    return [found.get(f.id) for f in files]


async def test_a_file_never_attached_goes_once_its_wait_to_be_attached_is_over(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Eve uploads five files and attaches one to a ticket at once; one she
    uploads again on day 20, and its wait starts again. Long after the
    waits are over (the purger was away), the others become candidates,
    each with its whole grace period from then: the ones she gave up on go
    after it; the one she asks for to attach it near its end waits its grace
    again, and the ticket taking it up, heard only after the first grace,
    keeps it; the one she uploads again within the grace waits to be
    attached anew. The attached one stays with its open ticket."""
    cases = Cases(dsn, locker)
    eve, start = Identity("eve", frozenset({"user"})), cases.time
    data = [png() for _ in range(5)]
    dropped, late, renewed, used, again = [await upload(locker, "eve", d) for d in data]
    assert waiting_until(dsn, dropped) == [start + UNATTACHED]
    cases.hear(ticket(str(uuid.uuid4()), 1, NEW, tev.TicketCreated, "eve", evidence=attached(used)))
    assert waiting_until(dsn, used) == [None]  # taken up: its wait is over
    cases.time = start + timedelta(days=20)
    assert (await upload(locker, "eve", data[4])).id == again.id
    assert waiting_until(dsn, again) == [cases.time + UNATTACHED]

    cases.time = start + UNATTACHED + timedelta(days=60)
    assert cases.purge() == 0  # candidates from now: their grace begins
    assert waiting_until(dsn, dropped, late, renewed, again) == [None] * 4
    cases.time += GRACE - timedelta(seconds=1)
    await locker.describe(eve, f"evidence/{late.id}")  # to attach it
    assert (await upload(locker, "eve", data[2])).id == renewed.id
    renewed_at = cases.time
    cases.time += timedelta(seconds=2)
    assert cases.purge() == 2  # the two she gave up on
    taken_up = ticket(str(uuid.uuid4()), 1, NEW, tev.TicketCreated, "eve", evidence=attached(late))
    cases.hear(taken_up)  # heard late, within the grace her asking gave it
    assert cases.purge_after_grace() == 0
    five = (dropped, late, renewed, used, again)
    assert await kept(locker, *five) == [False, True, True, True, False]
    assert stored(locker, dropped, used) == [False, True]
    assert waiting_until(dsn, renewed) == [renewed_at + UNATTACHED]


async def test_a_ticket_status_added_since_reads_as_live_and_its_files_are_kept(
    dsn: str, locker: EvidenceLocker
) -> None:
    """The tickets service may add a status before this service knows it
    (additive changes only): its events are still heard, as a live case's,
    so a file a comment attaches in it is taken up, not left to go."""
    cases = Cases(dsn, locker)
    newer = 99  # a TicketStatus number this build does not know
    assert newer not in tev.TicketStatus.values()
    kept_file = await upload(locker, "fay", png())
    ident = str(uuid.uuid4())
    cases.hear(ticket(ident, 1, NEW, tev.TicketCreated, "fay"))
    cases.hear(ticket(ident, 2, newer, tev.CommentAdded, "fay", evidence=attached(kept_file)))
    assert waiting_until(dsn, kept_file) == [None]  # taken up: no wait to be attached
    cases.time += UNATTACHED + timedelta(days=1)
    assert cases.purge_after_grace() == 0
    assert await kept(locker, kept_file) == [True]


async def test_files_uploaded_before_the_wait_came_in_wait_from_their_upload(
    dsn: str, locker: EvidenceLocker
) -> None:
    """A database from before files waited to be attached: on the first
    start with it, each file no case holds waits from its upload. Then a
    replica of that older release, still running during the rollout, stores
    a file without a wait: the next start gives it one. A start reads only
    the files uploaded since the last one began (less a day), not the whole
    table: an older file without a wait, which that start would have seen,
    is not looked at again."""
    cases = Cases(dsn, locker)
    loose, held = [await upload(locker, "fay", png()) for _ in range(2)]
    cases.hear(ticket(str(uuid.uuid4()), 1, NEW, tev.TicketCreated, "fay", evidence=attached(held)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE evidence_unattached, evidence_sweeps")
        conn.execute("DELETE FROM casemesh_schema")  # made by other statements
    await locker.create_schema()
    await locker.create_schema()  # the next start finds nothing more to record
    assert waiting_until(dsn, loose, held) == [loose.created_at + UNATTACHED, None]

    cases.time += timedelta(hours=1)
    late = await upload(locker, "fay", png())
    with psycopg.connect(dsn, autocommit=True) as conn:
        for unrecorded in (late, loose):
            conn.execute("DELETE FROM evidence_unattached WHERE evidence_id = %s", (unrecorded.id,))
        # As if uploaded two days before the last start.
        conn.execute(
            "UPDATE evidence SET created_at = created_at - interval '2 days' WHERE id = %s",
            (loose.id,),
        )
    await locker.create_schema()
    assert waiting_until(dsn, late, loose) == [late.created_at + UNATTACHED, None]


async def test_bytes_stored_by_an_upload_that_never_recorded_them_go_after_a_while(
    dsn: str, locker: EvidenceLocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload stored its bytes, then failed to record them (cancelled, or
    the database gone): no record names them, so no deletion of a record
    would ever delete them. They are kept while such an upload might still
    record them, and deleted after; bytes an upload did record stay."""
    cases = Cases(dsn, locker)
    lost, kept_bytes = png(), png()

    async def gone(*args: object) -> EvidenceView:
        raise psycopg.OperationalError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(locker, "_record", gone)
        with pytest.raises(psycopg.OperationalError):
            await upload(locker, "fay", lost)
    recorded = await upload(locker, "fay", kept_bytes)
    sha = hashlib.sha256(lost).hexdigest()
    assert locker.store.exists(sha)
    # The recorded upload's note went with its record: its bytes, should the
    # record go (an erasure), go at the next purge, not an hour later.
    with psycopg.connect(dsn) as conn:
        noted = conn.execute("SELECT sha256 FROM evidence_bytes_unneeded").fetchall()
    assert noted == [(sha,)]
    assert cases.purge() == 0
    assert locker.store.exists(sha)  # its upload might still have recorded it
    cases.time += STORING_FOR
    cases.purge()
    assert not locker.store.exists(sha)
    assert stored(locker, recorded) == [True]
    assert await kept(locker, recorded) == [True]


async def test_spool_files_a_killed_upload_left_go_at_the_next_start(
    locker: EvidenceLocker,
) -> None:
    """A process killed mid-upload leaves its spool file; in a pod's own
    volume they piled up across restarts. The next start deletes those
    nothing has written to for an hour, and leaves one still being written."""
    left, live = locker.incoming / "upload-left", locker.incoming / "upload-live"
    # The store's own unfinished copy, left by a kill between copy and rename.
    assert isinstance(locker.store, LocalBlobStore)
    folder = locker.store.root / "ab" / "cd"
    folder.mkdir(parents=True)
    staged, staging = folder / ".staging-left", folder / ".staging-live"
    for spool in (left, live, staged, staging):
        spool.write_bytes(png())
    an_hour_ago = time.time() - SPOOL_STALE.total_seconds() - 1
    for spool in (left, staged):
        os.utime(spool, (an_hour_ago, an_hour_ago))
    assert locker.remove_stale_spools() == 2
    assert [p.exists() for p in (left, live, staged, staging)] == [False, True, False, True]
    after = await upload(locker, "gus", png())  # uploads go on as before
    assert await kept(locker, after) == [True]


async def test_uploads_past_the_spool_budget_are_refused_to_retry_and_keep_nothing(
    locker: EvidenceLocker,
) -> None:
    """A pod whose spool outgrows its volume is evicted, with every upload on
    it: one that would take the uploads under way past the budget is refused
    RESOURCE_EXHAUSTED (with when to retry), its spool file gone; the others
    go on, and once they are done it is taken."""
    # Two images' largest size, and a little: each upload holds its kind's
    # largest size once its first bytes say what it is.
    locker.spool_budget = 2 * locker.limits["image"] + 100
    release = asyncio.Event()

    async def held_open(data: bytes) -> AsyncIterator[bytes]:
        yield data
        await release.wait()  # the rest of a long upload still to come

    who = Identity("hal", frozenset({"user"}))
    # Long enough to be recognised as images before the rest is sent.
    first = asyncio.create_task(locker.receive(who, "a.png", "", held_open(png() + bytes(600))))
    second = asyncio.create_task(locker.receive(who, "b.png", "", held_open(png() + bytes(601))))
    await eventually(lambda: locker._spooled == 2 * locker.limits["image"])
    with pytest.raises(ResourceExhausted) as refused:
        await upload(locker, "ida", png() + b"3" * 100)
    assert refused.value.reason == "UPLOADS_BUSY"
    assert refused.value.retry_after is not None and 15 <= refused.value.retry_after <= 45
    assert len(list(locker.incoming.glob("upload-*"))) == 2
    release.set()
    await asyncio.gather(first, second)
    after = await upload(locker, "ida", png() + b"3" * 100)
    assert await kept(locker, after) == [True]
    assert list(locker.incoming.glob("upload-*")) == []


async def test_one_persons_uploads_under_way_hold_only_their_share_of_the_spool(
    locker: EvidenceLocker,
) -> None:
    """Hal's two uploads stall part-way, each holding its kind's largest
    size of the spool budget: his share. His third is refused
    RESOURCE_EXHAUSTED at once, to retry later, and spools nothing, while
    Ida's upload is taken. Once his are done, his next is taken too."""
    locker.spool_budget = 10 * locker.limits["image"]
    locker.spool_per_owner = 2 * locker.limits["image"]
    release = asyncio.Event()

    async def held_open(data: bytes) -> AsyncIterator[bytes]:
        yield data
        await release.wait()

    hal = Identity("hal", frozenset({"user"}))
    stalled = [
        asyncio.create_task(locker.receive(hal, f"{n}.png", "", held_open(png() + bytes(600))))
        for n in range(2)
    ]
    try:
        await eventually(lambda: len(list(locker.incoming.glob("upload-*"))) == 2)
        with pytest.raises(ResourceExhausted) as refused:
            await upload(locker, "hal", png())
        assert refused.value.reason == "UPLOADS_IN_FLIGHT"
        assert refused.value.retry_after is not None and 15 <= refused.value.retry_after <= 45
        assert len(list(locker.incoming.glob("upload-*"))) == 2
        idas = await upload(locker, "ida", png())
    finally:
        # Whatever failed above, his uploads end before the locker goes.
        release.set()
        ended = await asyncio.gather(*stalled, return_exceptions=True)
    assert all(isinstance(end, EvidenceView) for end in ended), ended
    after = await upload(locker, "hal", png())
    assert await kept(locker, idas, after) == [True, True]


async def test_an_upload_cancelled_while_its_spool_file_is_deleted_frees_its_budget(
    locker: EvidenceLocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller's deadline or hang-up may land while an ended upload's spool
    file is being deleted (behind other uploads' writes on the worker
    threads): its share of the spool budget is given back all the same, and
    the file still goes. Held for good, it had every later upload refused
    UPLOADS_BUSY until a restart."""
    locker.spool_budget = locker.limits["image"]  # room for one image at a time
    deleting, deleted = threading.Event(), threading.Event()
    unlink = Path.unlink

    def slow_unlink(path: Path, missing_ok: bool = False) -> None:
        if path.name.startswith("upload-"):
            deleting.set()
            deleted.wait(30)
        unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", slow_unlink)
    who = Identity("kim", frozenset({"user"}))

    async def chunks() -> AsyncIterator[bytes]:
        yield png() + bytes(600)  # an image, declared a PDF: refused once spooled

    ending = asyncio.create_task(locker.receive(who, "a.png", "application/pdf", chunks()))
    await eventually(deleting.is_set)
    ending.cancel()
    try:
        with pytest.raises(asyncio.CancelledError):
            await ending
        assert locker._spooled == 0
    finally:
        deleted.set()
    await eventually(lambda: not list(locker.incoming.glob("upload-*")))
    after = await upload(locker, "kim", png())
    assert await kept(locker, after) == [True]


async def test_files_a_person_uploads_after_their_erasure_are_theirs_as_anyones(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Eve is erased, then comes back and uploads a file for a ticket she is
    filing: it keeps its name, and it is not deleted as an erased owner's
    (it waits to be attached like anyone's). Her file from before goes."""
    cases = Cases(dsn, locker)
    before = await upload(locker, "eve", png())
    erased_at = datetime.now(UTC)
    assert forget_person(dsn, cases, "eve", erased_at) == 1
    after = await upload(locker, "eve", png() + b"after")
    # The erasure heard again (its second pass, or redelivered) after she
    # uploaded: the later file stays hers.
    assert forget_person(dsn, cases, "eve", erased_at) == 0
    cases.time += GRACE + timedelta(seconds=1)
    assert cases.purge() == 1
    assert await kept(locker, before, after) == [False, True]
    shown = await locker.describe(Identity("eve", frozenset({"user"})), f"evidence/{after.id}")
    assert shown.file_name == "photo.png"


async def test_files_a_person_erased_under_an_earlier_release_uploads_later_are_theirs(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Xia was erased under a release that kept no erasure times. Once this
    release has started, she comes back and attaches a screenshot to a new
    ticket: when the ticket closes, the screenshot stays (agents, and her
    export, still find it) until the ticket expires, as anyone's would. Her
    file from before the erasure goes."""
    cases = Cases(dsn, locker)
    before = await upload(locker, "xia", png())
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The database as that release left it: the erasure without a time,
        # her file from before marked.
        conn.execute("ALTER TABLE evidence_erased_owners ALTER COLUMN erased_at DROP DEFAULT")
        conn.execute("INSERT INTO evidence_erased_owners (owner) VALUES ('xia')")
        mark_unneeded(conn, [before.id], cases.now())
        conn.execute("DELETE FROM casemesh_schema")  # made by other statements
    await locker.create_schema()
    # A replica of that release, still running during the rollout, erases Gus.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO evidence_erased_owners (owner) VALUES ('gus')")
    times = "SELECT erased_at FROM evidence_erased_owners ORDER BY owner"
    gus, xia = await column(dsn, times)
    assert None not in (gus, xia)  # hers: when this release first started
    await eventually(lambda: datetime.now(UTC) > xia)

    shot = png()
    screenshot = await upload(locker, "xia", shot, "screenshot.png")
    ident = str(uuid.uuid4())
    cases.hear(ticket(ident, 1, NEW, tev.TicketCreated, "xia", evidence=attached(screenshot)))
    cases.hear(ticket(ident, 4, CLOSED))
    assert cases.purge_after_grace() == 1
    assert await kept(locker, before, screenshot) == [False, True]
    assert await read_as(locker, Identity("xia", frozenset({"user"})), screenshot) == shot
    cases.hear(ticket(ident, 5, CLOSED, tev.TicketExpired))
    assert cases.purge_after_grace() == 1
    assert await kept(locker, screenshot) == [False]


async def test_the_same_file_uploaded_again_after_an_erasure_is_a_new_upload(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Eve is erased before her screenshot's bytes are deleted, then uploads
    the same screenshot again: it is hers as any new upload (its name shown,
    waiting to be attached), not the erased record, nameless and deleted as
    an erased owner's."""
    cases = Cases(dsn, locker)
    screenshot = png()
    before = await upload(locker, "eve", screenshot)
    erased_at = datetime.now(UTC)
    assert forget_person(dsn, cases, "eve", erased_at) == 1
    again = await upload(locker, "eve", screenshot, "again.png")
    assert again.id == before.id  # one record of one owner's bytes
    eve = Identity("eve", frozenset({"user"}))
    assert (await locker.describe(eve, f"evidence/{again.id}")).file_name == "again.png"
    assert forget_person(dsn, cases, "eve", erased_at) == 0  # heard again: it stays hers
    cases.time += GRACE + timedelta(seconds=1)
    assert cases.purge() == 0
    assert await kept(locker, again) == [True]


async def test_the_same_file_uploaded_again_before_the_erasure_is_heard_stays_a_new_upload(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Eve is erased, and comes back at once: she uploads the same
    screenshot again, under another name, before this service hears of the
    erasure (its follower behind). Heard then, the erasure leaves that
    upload hers as any new one: it is stamped with when she uploaded it
    again, and it is not deleted as an erased owner's file past the grace
    period. The name she gave it before the erasure (her words) is gone;
    the record kept no other, so it has none."""
    cases = Cases(dsn, locker)
    screenshot = png()
    before = await upload(locker, "eve", screenshot, "passport_eve.png")
    erased_at = datetime.now(UTC)
    await eventually(lambda: datetime.now(UTC) > erased_at)
    again = await upload(locker, "eve", screenshot, "x.png")
    assert again.id == before.id
    assert forget_person(dsn, cases, "eve", erased_at) == 1  # the name from before
    eve = Identity("eve", frozenset({"user"}))
    shown = await locker.describe(eve, f"evidence/{again.id}")
    assert shown.file_name == "" and shown.created_at > erased_at
    listed, _ = await locker.list_own(eve, 10, "")
    assert [(f.id, f.file_name) for f in listed] == [(again.id, "")]
    assert forget_person(dsn, cases, "eve", erased_at) == 0  # heard again
    assert cases.purge_after_grace() == 0
    assert await kept(locker, again) == [True]


@pytest.mark.parametrize("heard", ["while it came", "after it ended"])
async def test_an_upload_under_way_when_its_owner_is_erased_is_one_from_before(
    dsn: str, locker: EvidenceLocker, heard: str
) -> None:
    """Fay is erased while her upload is still coming: however late this
    service hears of the erasure (while the upload came, or only once it
    ended, its follower behind), the file loses the name she gave it and
    goes after the grace period, as her files from before do; it does not
    keep both for the month files no case takes up wait."""
    cases = Cases(dsn, locker)
    fay = Identity("fay", frozenset({"user"}))
    release = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield png()
        await release.wait()

    coming = asyncio.create_task(locker.receive(fay, "passport_fay.png", "", chunks()))
    try:
        await eventually(lambda: list(locker.incoming.glob("upload-*")))
        erased_at = datetime.now(UTC)
        if heard == "while it came":  # both its passes
            assert forget_person(dsn, cases, "fay", erased_at) == 0
            assert forget_person(dsn, cases, "fay", erased_at) == 0
    finally:
        release.set()
        file = await coming
    if heard == "after it ended":
        assert file.file_name == "passport_fay.png"
        assert forget_person(dsn, cases, "fay", erased_at) == 1
        assert forget_person(dsn, cases, "fay", erased_at) == 0  # its second pass
    shown = await locker.describe(Identity("agent-1", frozenset({"agent"})), f"evidence/{file.id}")
    assert shown.file_name == ""
    assert cases.purge_after_grace() == 1
    assert await kept(locker, file) == [False]
    assert stored(locker, file) == [False]


async def test_an_erasure_heard_as_an_upload_is_being_recorded_waits_for_it_and_forgets_it(
    dsn: str, locker: EvidenceLocker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fay's upload has been checked and is being recorded (its record
    written, not yet committed) when this service hears she is erased: the
    erasure waits for the record, then forgets its name and makes it a
    candidate. Each once read before the other committed, and saw nothing of
    it: the file kept the name and waited a month to be attached, as
    anyone's."""
    cases = Cases(dsn, locker)
    committing, commit = asyncio.Event(), asyncio.Event()
    transaction = psycopg.AsyncConnection.transaction

    @contextlib.asynccontextmanager
    async def held_before_commit(conn: Any, *args: Any, **kw: Any) -> AsyncIterator[Any]:
        async with transaction(conn, *args, **kw) as tx:
            yield tx
            committing.set()
            await commit.wait()

    with monkeypatch.context() as patched:
        patched.setattr(psycopg.AsyncConnection, "transaction", held_before_commit)
        coming = asyncio.create_task(upload(locker, "fay", png(), "passport_fay.png"))
        with ThreadPoolExecutor(1) as follower:
            try:
                async with asyncio.timeout(30):  # not for ever, should the upload fail
                    await committing.wait()
                erasing = follower.submit(forget_person, dsn, cases, "fay", datetime.now(UTC))
                # Until it waits for the record, or has done without it.
                await eventually(lambda: erasing.done() or waits_for_a_lock(dsn))
            finally:
                commit.set()
            file = await coming
            assert await asyncio.wrap_future(erasing) == 1  # the name Fay gave it
    shown = await locker.describe(Identity("agent-1", frozenset({"agent"})), f"evidence/{file.id}")
    assert shown.file_name == ""
    assert cases.purge_after_grace() == 1
    assert await kept(locker, file) == [False]


async def test_an_erased_persons_upload_recorded_as_the_purger_promotes_it_waits_for_it(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Eve uploaded a screenshot no case took up; a month on, its wait to be
    attached over, she uploads it again and is erased while it comes. The
    purger's round, making the file a candidate, has just taken its wait to
    be attached as the upload is recorded: the upload waits for the round,
    and both go through (neither fails on a deadlock, as when the upload
    made the file a candidate first and then waited for the round, which
    waited for it). The file is nameless and goes after the grace, as an
    erased person's from before."""
    cases = Cases(dsn, locker)
    screenshot = png()
    before = await upload(locker, "eve", screenshot, "passport_eve.png")
    cases.time += UNATTACHED + timedelta(days=1)
    release = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield screenshot
        await release.wait()

    eve = Identity("eve", frozenset({"user"}))
    coming = asyncio.create_task(locker.receive(eve, "again.png", "", chunks()))
    # The purger's round, held open: one transaction, as its statement is.
    async with await psycopg.AsyncConnection.connect(dsn) as purger:
        try:
            await eventually(lambda: list(locker.incoming.glob("upload-*")))
            assert forget_person(dsn, cases, "eve", datetime.now(UTC)) == 1
            # The due wait's row, locked first as `PROMOTE` locks it.
            await purger.execute(
                "SELECT FROM evidence_unattached WHERE until < %s FOR UPDATE", (cases.time,)
            )
        finally:
            release.set()
        # Until the upload waits for the round, or has done without it.
        await eventually(lambda: coming.done() or waits_for_a_lock(dsn))
        promoted = await purger.execute(PROMOTE, {"now": cases.time, "limit": PURGE_BATCH})
        assert promoted.rowcount == 1
        await purger.commit()
    file = await coming
    assert file.id == before.id and file.file_name == ""
    assert cases.purge_after_grace() == 1
    assert await kept(locker, file) == [False]


def waits_for_a_lock(dsn: str) -> bool:
    """Whether a transaction on the database is waiting for another's lock."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        waiting = conn.execute(
            "SELECT FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchall()
    return bool(waiting)


class Ended(Exception):
    """How a call ended when its handler aborted it."""


class Call:
    """What a handler sees of a call: it may end it with a status."""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Ended(code, details)


async def read_as(locker: EvidenceLocker, who: Identity, file: EvidenceView) -> bytes:
    """ReadEvidence as the service answers it: the bytes, or how it ended."""
    token = _VOUCHED.set(Vouched(who))
    try:
        request = pb.ReadEvidenceRequest(name=f"evidence/{file.id}")
        answer = EvidenceServicer(locker).ReadEvidence(request, Call())
        return b"".join([piece.chunk async for piece in answer])
    finally:
        _VOUCHED.reset(token)


async def test_a_damaged_file_is_read_as_damaged_until_uploaded_again(
    locker: EvidenceLocker,
) -> None:
    """Lu's screenshot is cut short on disk, then one byte of it changes:
    reading it ends DATA_LOSS, not OK with bytes a reader would take for the
    file. Lu uploads the same screenshot again: the copy is replaced, and
    reads back whole."""
    lu = Identity("lu", frozenset({"user"}))
    screenshot = png() + os.urandom(600 * 1024)  # several chunks
    file = await upload(locker, "lu", screenshot)
    assert await read_as(locker, lu, file) == screenshot
    assert isinstance(locker.store, LocalBlobStore)
    stored_at = locker.store.root / file.sha256[:2] / file.sha256[2:4] / file.sha256
    for damaged in (screenshot[:300_000], screenshot[:-1] + b"\x00"):
        stored_at.write_bytes(damaged)
        with pytest.raises(Ended) as ended:
            await read_as(locker, lu, file)
        assert ended.value.args[0] == grpc.StatusCode.DATA_LOSS
        assert "damaged in storage" in ended.value.args[1]
    stored_at.write_bytes(screenshot[:300_000])
    again = await upload(locker, "lu", screenshot)
    assert again.id == file.id
    assert await read_as(locker, lu, file) == screenshot


async def list_as(locker: EvidenceLocker, who: Identity) -> dict[str, list[str]]:
    """ListEvidence as the service answers it: each listed file's cases."""
    token = _VOUCHED.set(Vouched(who))
    try:
        request = pb.ListEvidenceRequest(page_size=10)
        answer = await EvidenceServicer(locker).ListEvidence(request, Call())
        return {f.name: list(f.cases) for f in answer.evidence}
    finally:
        _VOUCHED.reset(token)


async def test_each_file_listed_shows_the_cases_its_owner_attached_it_to(
    dsn: str, locker: EvidenceLocker
) -> None:
    """Ann, an agent, attaches a screenshot of Kim's ID to an internal note
    on Kim's ticket and to a court action on a copyright case; Kim attaches
    the same bytes, her own upload, to her ticket. Each of them sees, on
    their own file, the cases they attached it to (so an export can tell
    Kim's case from Ann's); a file attached to nothing shows none."""
    cases = Cases(dsn, locker)
    screenshot = png()
    anns, loose = await upload(locker, "ann", screenshot), await upload(locker, "ann", png())
    kims = await upload(locker, "kim", screenshot)
    kims_ticket, court = str(uuid.uuid4()), str(uuid.uuid4())
    cases.hear(ticket(kims_ticket, 1, NEW, tev.TicketCreated, "kim", evidence=attached(kims)))
    internal_note = partial(ticket, kind=tev.CommentAdded, internal=True)
    cases.hear(internal_note(kims_ticket, 2, NEW, by="ann", evidence=attached(anns)))
    cases.hear(notice(court, 5, "HELD", aev.CourtActionRecorded, "ann", evidence=attached(anns)))

    ann = Identity("ann", frozenset({"agent"}))
    assert await list_as(locker, ann) == {
        f"evidence/{loose.id}": [],
        f"evidence/{anns.id}": [f"appeals/{court}", f"tickets/{kims_ticket}"],
    }
    kim = Identity("kim", frozenset({"user"}))
    assert await list_as(locker, kim) == {f"evidence/{kims.id}": [f"tickets/{kims_ticket}"]}
