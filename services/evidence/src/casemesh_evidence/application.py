"""Receiving, describing and reading evidence.

An upload streams to a temporary file while it is hashed, its real type is
read from the first bytes and its size is held to the limit of that type; an
image's declared width and height are held to what any photo or screenshot
is (`sniff.viewable`).
Only a complete, valid upload is stored (once per content) and recorded (once
per owner and content). Who may see it: its owner and agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg_pool import AsyncConnectionPool

from casemesh.platform import schema
from casemesh.platform.cases import page_after
from casemesh.platform.clock import Clock, SystemClock
from casemesh.platform.errors import InvalidArgument, NotFound, ResourceExhausted, Violations
from casemesh.platform.eventstore import advisory_lock
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.platform.paging import older_than, page_of, page_size_of
from casemesh.platform.pools import with_keepalives
from casemesh.rules import tickets as rules
from casemesh_evidence import lifecycle, sniff
from casemesh_evidence.store import BlobStore

log = get_logger(__name__)

MAX_CHUNK = 1024 * 1024
SCHEMA_LOCK = 0x65766964  # "evid"

SCHEMA = """CREATE TABLE IF NOT EXISTS evidence (
    id uuid PRIMARY KEY,
    owner text NOT NULL,
    sha256 text NOT NULL,
    size_bytes bigint NOT NULL,
    media_type text NOT NULL,
    file_name text NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (owner, sha256));
CREATE INDEX IF NOT EXISTS evidence_owner_recent ON evidence (owner, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS evidence_content ON evidence (sha256);
ALTER TABLE evidence ADD COLUMN IF NOT EXISTS last_uploaded_at timestamptz"""
# An owner's own advisory lock, two-key (the first is OWNER_LOCKS, the second
# a hash of the owner): an erasure (`forget_person`) and the recording of
# an upload (`EvidenceLocker._record`) take it before anything else, so that
# one of them sees all the other wrote. Unserialised, each read before the
# other committed: the erasure did not see the record, nor the record the
# erasure, and the file of an erased person kept its name for good. Two-key
# locks never meet the files' one-key ones (`lifecycle.file_locks`).
OWNER_LOCKS = 0x6576_6F77  # "evow"
LOCK_OWNER = "SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))"

# `created_at`: when the upload began (`receive`), so that an erasure heard
# while it came, or after, takes it for one from before if it began before.
# `last_uploaded_at`: when its owner last uploaded the bytes (NULL in a record
# a release before it wrote: then `created_at`). An erasure heard late must
# not take an upload of the same bytes made after it for one made before.


def forget_person(
    database_url: str, clock: Clock, person: str, erased_at: datetime | None = None
) -> int:
    """After `person` was erased (at `erased_at`; now if not given): the
    names they gave the files they uploaded before (their words) are
    forgotten, and those files become candidates for deletion (`lifecycle`:
    deleted unless a live case holds them). Files they upload after it are
    theirs as anyone's, and so are those they uploaded again after it
    (heard late, the erasure finds the record from before: it becomes the
    new upload it was, from then, but nameless: the name it holds was given
    before). Returns how many names. Idempotent; erased again later, from
    the later time."""
    at = erased_at or datetime.now(UTC)  # the clock uploads are stamped with
    before = "owner = %s AND created_at <= %s AND coalesce(last_uploaded_at, created_at) <= %s"
    with psycopg.connect(with_keepalives(database_url), connect_timeout=10) as conn:
        # Before any read: an upload being recorded is waited for, and seen.
        conn.execute(LOCK_OWNER, (OWNER_LOCKS, person))
        # The latest erasure's time (GREATEST passes over a NULL).
        conn.execute(
            "INSERT INTO evidence_erased_owners (owner, erased_at) VALUES (%s, %s)"
            " ON CONFLICT (owner) DO UPDATE"
            " SET erased_at = greatest(evidence_erased_owners.erased_at, EXCLUDED.erased_at)",
            (person, at),
        )
        # Candidates before records: the order the purger locks them in.
        found = conn.execute(f"SELECT id FROM evidence WHERE {before}", (person, at, at))
        theirs = [row[0] for row in found.fetchall()]
        lifecycle.mark_unneeded(conn, theirs, clock.now())
        forgotten = conn.execute(
            f"UPDATE evidence SET file_name = '' WHERE {before} AND file_name <> ''",
            (person, at, at),
        ).rowcount
        # Uploaded again since: a new upload from then, as when the erasure
        # is known at the upload (`RECORD`). Its name is still the one given
        # before the erasure (the record keeps its first): that goes too, the
        # name given since being one the record never kept.
        forgotten += conn.execute(
            "UPDATE evidence SET created_at = last_uploaded_at, file_name = ''"
            " WHERE owner = %s AND created_at <= %s AND last_uploaded_at > %s",
            (person, at, at),
        ).rowcount
    log.info("person.forgotten", person=person, file_names=forgotten, files=len(theirs))
    return forgotten


# An upload's record; the same owner's same bytes keep their first record,
# noting when they came again (the latest: an upload begun earlier may end
# later). The record of the same bytes from before the owner's erasure is
# erased: uploaded again, they are a new upload.
_ERASED_SINCE = (
    "EXISTS (SELECT FROM evidence_erased_owners o WHERE o.owner = evidence.owner"
    " AND evidence.created_at <= o.erased_at)"
)
RECORD = f"""INSERT INTO evidence (id, owner, sha256, size_bytes, media_type, file_name,
    created_at, last_uploaded_at) VALUES (%(id)s, %(owner)s, %(sha256)s, %(size)s,
    %(media_type)s, %(file_name)s, %(now)s, %(now)s)
ON CONFLICT (owner, sha256) DO UPDATE
SET last_uploaded_at = GREATEST(evidence.last_uploaded_at, EXCLUDED.created_at),
    file_name = CASE WHEN {_ERASED_SINCE} THEN EXCLUDED.file_name ELSE evidence.file_name END,
    created_at = CASE WHEN {_ERASED_SINCE} THEN EXCLUDED.created_at ELSE evidence.created_at END"""


# When its owner (`%s`) was erased, if at or after `%s`.
ERASURE_SINCE = "SELECT erased_at FROM evidence_erased_owners WHERE owner = %s AND erased_at >= %s"


# Of a file `e`: the names of the cases its owner attached it to, sorted
# (found by `evidence_uses`' key, which begins with owner and hash).
HELD_BY = """ARRAY(SELECT u.case_name FROM evidence_uses u
    WHERE (u.owner, u.sha256) = (e.owner, e.sha256) ORDER BY u.case_name)"""


@dataclass(frozen=True)
class EvidenceView:
    id: str
    owner: str
    sha256: str
    size_bytes: int
    media_type: str
    file_name: str
    created_at: datetime
    # The cases its owner attached it to, as heard (`lifecycle`): read only
    # for the owner's own list (`list_own`), empty otherwise.
    cases: tuple[str, ...] = ()


def evidence_id(name: str) -> str:
    return resource_id(name, "evidence")


def clean_file_name(name: str) -> str:
    """The name's last path segment, trimmed; refused when empty, longer than
    255 characters, or holding anything but printable text: control
    characters (DEL and C1 too), line or paragraph separators, direction
    controls. Emoji joiners and the like are text."""
    v = Violations()
    base = rules.base_name(name).strip()
    if not base:
        v.add("metadata.file_name", "must not be empty")
    elif len(base) > 255 or any(rules.unprintable(c) for c in base):
        v.add("metadata.file_name", "must be at most 255 printable characters")
    v.raise_if_any()
    return base


# A spool file not written to for this long belongs to no upload under way.
SPOOL_STALE = timedelta(hours=1)
# How often a running service looks for such files (a container restarted
# in place keeps its volume, and the files of the process before).
SWEEP_EVERY = timedelta(minutes=10)


@dataclass(kw_only=True, eq=False)
class EvidenceLocker:
    """The records in `pool`, the bytes in `store`; uploads are spooled in
    `incoming`, a file of each kind held to its size in `limits`."""

    pool: AsyncConnectionPool[Any]
    store: BlobStore
    limits: dict[str, int]
    incoming: Path
    clock: Clock = field(default_factory=SystemClock)
    # The bytes all uploads under way may spool at once: the spool's volume
    # must hold them (a pod past its emptyDir's limit is evicted, and every
    # upload on it lost).
    spool_budget: int = 3 << 30
    # What one person's uploads under way may hold of it at once (a video
    # and a few screenshots): a few stalled videos of one account would
    # otherwise hold the whole budget, and everyone's uploads be refused
    # UPLOADS_BUSY.
    spool_per_owner: int = 640 << 20
    _spooled: int = field(default=0, init=False)
    # What each person's uploads under way hold (only those who have some).
    _spooled_by: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)

    def remove_stale_spools(self, now: float | None = None) -> int:
        """Deletes the spool files (`upload-*`) nothing has written to for
        SPOOL_STALE, and the store's unfinished copies as old: what a
        process killed mid-upload left (its `finally` never ran). In a pod's
        own volume they would pile up across restarts until it is evicted.
        Run at start and then every SWEEP_EVERY; returns how many went.
        Another replica's upload under way on a shared volume is written to
        all the time, so it is not taken."""
        before = (time.time() if now is None else now) - SPOOL_STALE.total_seconds()
        try:
            removed = self.store.sweep(before)
        except Exception as exc:
            # Tried again at the next sweep: a bucket away, or a key without
            # the permission, stops neither the spool's clean-up nor a start.
            log.warning("evidence.store_sweep_failed", error=str(exc))
            removed = 0
        for spooled in self.incoming.glob("upload-*"):
            with contextlib.suppress(FileNotFoundError):
                if spooled.stat().st_mtime < before:
                    spooled.unlink()
                    removed += 1
        if removed:
            log.info("evidence.stale_spools_removed", files=removed)
        return removed

    async def create_schema(self) -> None:
        # Replicas starting together must not race on CREATE TABLE; the
        # statements run only when they changed (`casemesh.platform.schema`).
        async with self.pool.connection() as conn:
            async with advisory_lock(conn, SCHEMA_LOCK):
                statements = (SCHEMA, lifecycle.SCHEMA, lifecycle.UNATTACHED_SCHEMA)
                await schema.ensure(conn, "evidence", statements)
            # By the clock that stamps the uploads (`created_at`).
            await lifecycle.wait_for_the_unrecorded(conn, datetime.now(UTC))

    async def receive(
        self, who: Identity, file_name: str, declared_type: str, chunks: AsyncIterator[bytes]
    ) -> EvidenceView:
        started = datetime.now(UTC)  # the clock erasures' times are compared with
        file_name = clean_file_name(file_name)
        fd, tmp_name = tempfile.mkstemp(dir=self.incoming, prefix="upload-")
        tmp = Path(tmp_name)
        held = [0]  # what this upload counts against the spool budget
        try:
            with os.fdopen(fd, "w+b") as out:
                sha, size, detected = await self._spool(
                    chunks, out, held, declared_type, who.subject
                )
            async with self.pool.connection() as conn:
                storing = self.clock.now() + lifecycle.STORING_FOR
                await conn.execute(lifecycle.STORING, (sha, storing))
            await asyncio.to_thread(self.store.put, sha, tmp)
            return await self._record(who, tmp, sha, size, detected, file_name, storing, started)
        finally:
            # The budget first: a cancellation landing in the await below
            # must not keep it held for good (every later upload refused
            # UPLOADS_BUSY). The file goes even then (shielded).
            self._release(held, who.subject)
            await asyncio.shield(asyncio.to_thread(tmp.unlink, missing_ok=True))

    async def _spool(
        self,
        chunks: AsyncIterator[bytes],
        out: Any,
        held: list[int],
        declared_type: str,
        owner: str,
    ) -> tuple[str, int, str]:
        """Writes the upload to `out` as it comes; refused as soon as its
        first bytes show a kind not taken or not `declared_type`, or its size
        passes its kind's; an image too large to view, once its size shows
        (in the first bytes, or the whole file). Its digest, size and media
        type."""
        digest = hashlib.sha256()
        head = b""
        detected: str | None = None
        limit = 0
        size = 0
        async for chunk in chunks:
            if len(chunk) > MAX_CHUNK:
                raise InvalidArgument.field("chunk", "chunks must be at most 1 MiB")
            if detected is None:
                head += chunk[: sniff.HEAD_BYTES]
                if len(head) >= sniff.HEAD_BYTES:
                    detected, limit = self._check_type(head, declared_type)
            size += len(chunk)
            if detected is not None and size > limit:
                raise InvalidArgument.field(
                    "chunk", f"{sniff.KIND[detected]} evidence may be at most {_mib(limit)}"
                )
            # Once its kind is known, an upload holds its kind's largest size
            # against the budget (refused at once, not most of a video in);
            # until then, the smallest kind's: uploads that stall before
            # their first bytes come hold their share of the person's too.
            self._hold(held, max(size, limit or min(self.limits.values())), owner)
            digest.update(chunk)
            await asyncio.to_thread(out.write, chunk)
        if size == 0:
            raise InvalidArgument.field("chunk", "the upload has no content")
        if detected is None:  # a file shorter than the sniffing window
            detected, limit = self._check_type(head, declared_type)
        # A JPEG's frame header may come after megabytes of metadata.
        await asyncio.to_thread(_check_dimensions, detected, out)
        return digest.hexdigest(), size, detected

    def _hold(self, held: list[int], wanted: int, owner: str) -> None:
        """Holds `wanted` bytes of the spool budget for an upload of `owner`'s
        that holds `held[0]`; RESOURCE_EXHAUSTED when the budget has not that
        much left, or their uploads under way would hold more than one
        person may (`spool_per_owner`)."""
        more = wanted - held[0]
        if more <= 0:
            return
        if self._spooled_by.get(owner, 0) + more > self.spool_per_owner:
            raise ResourceExhausted(
                "your uploads under way hold as much as one person's may at once;"
                " retry once one is done",
                reason="UPLOADS_IN_FLIGHT",
                retry_after=random.uniform(15, 45),
            )
        if self._spooled + more > self.spool_budget:
            raise ResourceExhausted(
                "this server is taking in as many uploads as it can hold; retry shortly",
                reason="UPLOADS_BUSY",
                retry_after=random.uniform(15, 45),
            )
        self._spooled += more
        self._spooled_by[owner] = self._spooled_by.get(owner, 0) + more
        held[0] = wanted

    def _release(self, held: list[int], owner: str) -> None:
        """Gives back what an upload of `owner`'s held of the budget."""
        self._spooled -= held[0]
        left = self._spooled_by.get(owner, 0) - held[0]
        if left > 0:
            self._spooled_by[owner] = left
        else:
            self._spooled_by.pop(owner, None)  # the map holds only those with some
        held[0] = 0

    def _check_type(self, head: bytes, declared_type: str) -> tuple[str, int]:
        """The media type the first bytes show, and its kind's largest size;
        INVALID_ARGUMENT for a kind not taken, one the upload did not
        declare (a video sent as a picture: refused at once, not once it
        has all come), or an image whose size they show too large."""
        detected = sniff.media_type(head)
        if detected is None:
            raise InvalidArgument.field(
                "chunk",
                f"the file is {sniff.describe(head)}; evidence must be an image, a video or a PDF",
            )
        if not sniff.declared_as(declared_type, detected):
            raise InvalidArgument.field(
                "metadata.declared_type", f"the bytes are {detected}, not {declared_type}"
            )
        _check_dimensions(detected, io.BytesIO(head))
        return detected, self.limits[sniff.KIND[detected]]

    async def _record(
        self,
        who: Identity,
        spooled: Path,
        sha: str,
        size: int,
        media_type: str,
        file_name: str,
        storing: datetime,
        started: datetime,
    ) -> EvidenceView:
        # A random id: an id must not tell who uploaded which bytes. The same
        # owner's same bytes find their first record. Under the file's lock,
        # which the deletion of its bytes holds too: bytes deleted since they
        # were stored are stored again, and none are deleted once recorded.
        # Its owner's lock before it (as `forget_person` takes that first):
        # an erasure heard meanwhile is seen below, or sees this record.
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(LOCK_OWNER, (OWNER_LOCKS, who.subject))
            await conn.execute(lifecycle.LOCK, lifecycle.file_locks(sha))
            if not await asyncio.to_thread(self.store.exists, sha):
                await asyncio.to_thread(self.store.put, sha, spooled)
            # Its owner erased since the upload began, the erasure heard
            # already (`forget_person` may not run again): the upload is one
            # from before it, recorded as that leaves those, nameless and a
            # candidate for deletion (unless the record is one from after).
            cur = await conn.execute(ERASURE_SINCE, (who.subject, started))
            erased = await cur.fetchone()
            await conn.execute(
                RECORD,
                {
                    "id": uuid.uuid4(),
                    "owner": who.subject,
                    "sha256": sha,
                    "size": size,
                    "media_type": media_type,
                    "file_name": "" if erased else file_name,
                    "now": started,
                },
            )
            cur = await conn.execute(
                "SELECT id, created_at FROM evidence WHERE owner = %s AND sha256 = %s",
                (who.subject, sha),
            )
            row = await cur.fetchone()
            assert row is not None
            # Recorded: this upload's note is done with (unless another upload
            # of the same bytes, still under way, moved it later).
            await conn.execute(lifecycle.STORED, (sha, storing))
            # No case holds it (yet): deleted if none takes it up in time.
            now = self.clock.now()
            until = now + lifecycle.UNATTACHED
            await conn.execute(lifecycle.AWAIT_ATTACHING, {"until": until, "id": row[0]})
            await conn.execute(lifecycle.TOUCH, (now, row[0]))  # uploaded again
            # A candidate (its owner erased: above) only once its wait is
            # written, the order the purger's `PROMOTE` takes the two in: the
            # other way round, this and a purge each waited for the other.
            if erased is not None and row[1] <= erased[0]:
                await conn.execute(lifecycle.MARK, lifecycle.marked([row[0]], now))
        ident = str(row[0])
        log.info("evidence.received", evidence_id=ident, media_type=media_type, size=size)
        return await self._load(ident)

    async def _load(self, ident: str) -> EvidenceView:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, owner, sha256, size_bytes, media_type, file_name, created_at"
                " FROM evidence WHERE id = %s",
                (ident,),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"evidence/{ident} not found")
        return EvidenceView(str(row[0]), *row[1:])

    async def describe(self, who: Identity, name: str) -> EvidenceView:
        """The evidence, for its owner or an agent; to anyone else it is not
        found, as if it did not exist (as every service answers)."""
        view = await self._visible(who, name)
        if view.owner == who.subject:
            await self._touch(view)
        return view

    async def _visible(self, who: Identity, name: str) -> EvidenceView:
        ident = evidence_id(name)
        view = await self._load(ident)
        if view.owner != who.subject and not who.is_agent:
            raise NotFound(f"evidence/{ident} not found")
        return view

    async def _touch(self, view: EvidenceView) -> None:
        """Its owner asked for it (GetEvidence: the gateway asks before
        attaching it): a candidate for deletion only because no case took it
        up in time waits its grace period again; one an ended or expired case
        or an erasure made a candidate does not (`lifecycle`). One deleted
        meanwhile is not found."""
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute(lifecycle.LOCK, lifecycle.file_locks(view.sha256))
            await conn.execute(lifecycle.TOUCH_UNATTACHED, (self.clock.now(), view.id))
            cur = await conn.execute("SELECT FROM evidence WHERE id = %s", (view.id,))
            if await cur.fetchone() is None:
                raise NotFound(f"evidence/{view.id} not found")

    async def list_own(
        self, who: Identity, page_size: int, page_token: str
    ) -> tuple[list[EvidenceView], str]:
        """The caller's uploads, newest first, a page at a time (agents' too:
        only their own), each with the cases they attached it to (an export
        tells by them whose case a file is), and the token of the next page
        ("" on the last)."""
        limit = page_size_of(page_size)
        after = page_after(page_token)
        where, args = older_than("owner = %s", [who.subject], after)
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, owner, sha256, size_bytes, media_type, file_name, created_at,"
                f" {HELD_BY} FROM evidence e WHERE {where}"
                " ORDER BY created_at DESC, id DESC LIMIT %s",
                (*args, limit + 1),
            )
            rows = await cur.fetchall()
        views = [_listed(row) for row in rows]
        return page_of(views, limit, lambda v: (v.created_at, v.id))

    async def read(self, who: Identity, name: str) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time; DamagedEvidence, once they
        are read, if they are not the ones recorded (its hash checked in the
        worker thread that reads them)."""
        # Reading (an export reads every file) does not put off a deletion.
        view = await self._visible(who, name)
        stored = await asyncio.to_thread(self.store.read, view.sha256)
        chunks = _checked(stored, view)
        while True:
            try:
                chunk = await asyncio.to_thread(next, chunks, b"")
            except FileNotFoundError:  # deleted as it was asked for (`lifecycle`)
                raise NotFound(f"evidence/{view.id} not found") from None
            if not chunk:
                return
            yield chunk


def _listed(row: Any) -> EvidenceView:
    """A file as `list_own` selects it: its record, then its cases."""
    ident, owner, sha256, size_bytes, media_type, file_name, created_at, cases = row
    return EvidenceView(
        str(ident), owner, sha256, size_bytes, media_type, file_name, created_at, tuple(cases)
    )


class DamagedEvidence(Exception):
    """The stored bytes of a file are not the ones recorded (cut short, or
    altered): served as they are, a reader would take them for the file."""


def _checked(chunks: Iterator[bytes], view: EvidenceView) -> Iterator[bytes]:
    """`chunks`, as long as they add up to the file `view` records: past its
    size, or at their end short of it or of another hash, DamagedEvidence."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > view.size_bytes:
            break
        digest.update(chunk)
        yield chunk
    if size != view.size_bytes or digest.hexdigest() != view.sha256:
        # The operator's to see: the same bytes uploaded again repair a copy
        # of another size (`BlobStore.put`); one altered in place, a backup.
        log.error(
            "evidence.damaged",
            evidence_id=view.id,
            sha256=view.sha256,
            size=view.size_bytes,
            size_read=size,
        )
        raise DamagedEvidence(
            f"evidence/{view.id} is damaged in storage: its bytes are not those uploaded"
        )


def _check_dimensions(media_type: str, file: BinaryIO) -> None:
    """INVALID_ARGUMENT for an image `file` holds whose declared size is past
    any photo's or screenshot's (`sniff.viewable`): an agent's console that
    opens it would run out of memory before it showed anything."""
    try:
        size = sniff.dimensions(media_type, file)
    except (ValueError, OverflowError, IndexError) as exc:
        # SizeHidden; or a reader meeting bytes it was not written for (a
        # seek past what a file can hold, say): the client's to hear about,
        # not a fault of the server's that they would retry for ever.
        if not isinstance(exc, sniff.SizeHidden):
            log.warning("evidence.size_unreadable", media_type=media_type, error=repr(exc))
        raise InvalidArgument.field(
            "chunk", "the image's size could not be read; it may be damaged"
        ) from None
    if size is not None and not sniff.viewable(*size):
        width, height = size
        side, megapixels = sniff.MAX_SIDE, sniff.MAX_PIXELS // 1_000_000
        raise InvalidArgument.field(
            "chunk",
            f"the image is {width}×{height} pixels; an image may be at most {side} pixels"
            f" on a side and {megapixels} megapixels",
        )


def _mib(size: int) -> str:
    """A size limit as people read it: `20 MiB`, `1.5 MiB`."""
    mib = size / (1 << 20)
    return f"{mib:.0f} MiB" if mib == round(mib) else f"{mib:.1f} MiB"
