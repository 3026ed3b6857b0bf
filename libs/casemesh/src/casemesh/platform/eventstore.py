"""Event-store plumbing for the writer services (eventsourcing + PostgreSQL).

`TracedApplication` stores the trace context of the action that recorded each
event next to the event's state, so the relay (another process, maybe much
later) can continue the same trace onto Kafka. Given a sealer and a
`personal_fields` spec, it also stores its events' personal fields sealed
(`casemesh.platform.personal.mapper`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

import psycopg
from eventsourcing.application import Application, ProcessingEvent, Repository
from eventsourcing.domain import BaseAggregate, DomainEventProtocol
from eventsourcing.persistence import Mapper, Recording, StoredEvent
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.utils import strtobool
from opentelemetry import propagate

from casemesh.platform import schema
from casemesh.platform.errors import InvalidArgument
from casemesh.platform.logging import get_logger
from casemesh.platform.pools import (
    POOL_WAIT_S,
    connect_at_start,
    guard_pool,
)

if TYPE_CHECKING:
    from casemesh.platform.personal.fields import PersonalFields
    from casemesh.platform.personal.sealing import Sealer

log = get_logger(__name__)

# Key of the trace context inside a stored event's state; not part of the domain.
TRACE_KEY = "__trace__"


# The largest stored event a command may record. Its record on Kafka can
# be about twice as large (personal texts sealed in base64, fields derived
# from the state, the envelope's headers): the topics, producers and
# consumers take records of up to `topics.MAX_RECORD_BYTES` (4 MiB), so
# that one made from an event of this size always fits, with room to spare.
# A record that did not would stop its relay for good (every later event
# waits behind it), so a larger event is refused instead of stored.
MAX_EVENT_BYTES = 512 * 1024


class TracingMapper(Mapper[Any]):
    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if carrier and TRACE_KEY not in vars(domain_event):
            # Events are frozen dataclasses; the trace is storage metadata.
            object.__setattr__(domain_event, TRACE_KEY, carrier)
        stored = super().to_stored_event(domain_event)
        if len(stored.state) > MAX_EVENT_BYTES:
            # Before anything is stored: the command fails and changes nothing.
            raise InvalidArgument.field(
                _largest_part(vars(domain_event)),
                f"makes the change too large to record ({len(stored.state):,} bytes;"
                f" at most {MAX_EVENT_BYTES:,})",
            )
        return stored


def _largest_part(state: Mapping[str, Any]) -> str:
    """The path (`a.b`) of what makes an event's state large: of its fields
    (the trace aside), the largest, and within a mapping its largest field in
    turn; a list is named as a whole (many items make it large as much as
    one long one)."""
    path, value = "", cast(Any, state)
    while isinstance(value, Mapping) and value:
        sizes = {k: _size(v) for k, v in value.items() if k != TRACE_KEY}
        if not sizes:
            break
        key = max(sizes, key=sizes.__getitem__)
        path, value = f"{path}.{key}" if path else str(key), value[key]
    return path


def _size(value: object) -> int:
    return len(json.dumps(value, ensure_ascii=False, default=str))


def trace_carrier(domain_event: object) -> dict[str, str]:
    carrier = vars(domain_event).get(TRACE_KEY)
    return dict(carrier) if isinstance(carrier, dict) else {}


class TracedApplication(Application[Any]):
    """An application whose stored events carry their trace context.

    A subclass that names `personal_fields`, given a `sealer`, stores those
    fields sealed; `reveal_personal=False` (the relay) reads them back as
    tokens rather than clear text. Not with snapshots: a snapshot holds the
    aggregate's state, personal text included, in the clear.
    """

    personal_fields: PersonalFields | None = None

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        sealer: Sealer | None = None,
        reveal_personal: bool = True,
    ) -> None:
        # Read by construct_mapper, which Application.__init__ calls.
        self.sealer = sealer
        self.reveal_personal = reveal_personal
        super().__init__(env)
        datastore = getattr(self.recorder, "datastore", None)
        if isinstance(datastore, PostgresDatastore):
            # Instead of the library's pre-ping (a round trip on every use).
            guard_pool(datastore.pool)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """As the library's, but an aggregate's events are collected without
        its checks against runtime protocols, which Python 3.11 works out
        afresh on every call (a sixth of the interpreter's time in a
        writer under load); anything else is collected as the library does."""
        processing_event: ProcessingEvent[Any] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            else:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's deprecated hook, kept
        return recordings

    def construct_repository(self) -> Repository[Any]:
        """The library's, made as it makes it, rebuilding aggregates
        without its per-event check against a runtime protocol (see `save`)."""
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return _Repository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(
                self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")
            ),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def construct_mapper(self) -> Mapper[Any]:
        if self.sealer is None or self.personal_fields is None:
            return TracingMapper(
                transcoder=self.construct_transcoder(),
                compressor=self.factory.compressor(),
                cipher=self.factory.cipher(),
            )
        if self.factory.is_snapshotting_enabled():
            raise ValueError("snapshots would store personal fields in the clear")
        # Imported here: the personal package builds on this module.
        from casemesh.platform.personal.mapper import SealingMapper

        return SealingMapper(
            transcoder=self.construct_transcoder(),
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
            sealer=self.sealer,
            fields=self.personal_fields,
            reveal=self.reveal_personal,
        )


def _project(aggregate: Any, events: Iterable[Any]) -> Any:
    """The library's `project_aggregate` without its `assert isinstance(event,
    CanMutateProtocol)`: 12 µs an event under Python 3.11. Every event
    here is the library's `DomainEvent`, whose `mutate` is what is called."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class _Repository(Repository[Any]):
    def get(self, aggregate_id: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("projector_func", _project)
        return super().get(aggregate_id, **kwargs)


R = TypeVar("R", bound=PostgresTrackingRecorder)


def side_table(app: Application[Any], make: Callable[[PostgresDatastore], R]) -> R:
    """A table in `app`'s own database beside its events (a case index, timers,
    a view), created if need be (`schema.create_table`), sharing the
    application's pool. Call inside `schema_lock`."""
    recorder = make(app.recorder.datastore)  # type: ignore[attr-defined]
    schema.create_table(recorder)
    return recorder


@contextmanager
def schema_lock(database_url: str, name: str = "casemesh-schema") -> Iterator[None]:
    """Serialises schema creation: processes of one service starting together
    (the API and its relay, or replicas) would otherwise race on
    CREATE TABLE IF NOT EXISTS, which PostgreSQL does not make safe.

    Taken at start-up, before anything is served: a database away then is
    waited out, never a reason to exit (`pools.connect_at_start`)."""
    conn = _locked(database_url, zlib.crc32(name.encode()), name)
    try:
        yield
    finally:
        conn.close()  # the session's end lets the lock go


def _locked(database_url: str, key: int, name: str) -> psycopg.Connection[Any]:
    """A connection holding the advisory lock `key`, however long that takes."""

    def lock(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))

    return connect_at_start(database_url, lock, lock=name)


@asynccontextmanager
async def advisory_lock(conn: psycopg.AsyncConnection[Any], key: int | str) -> AsyncIterator[None]:
    """Holds a session advisory lock on `conn` for the block: a number, or a
    name PostgreSQL hashes (`hashtext`). Replicas starting together take
    turns creating a schema or seeding data."""
    arg = "%s" if isinstance(key, int) else "hashtext(%s)"
    await conn.execute(f"SELECT pg_advisory_lock({arg})", (key,))
    try:
        yield
    finally:
        await conn.execute(f"SELECT pg_advisory_unlock({arg})", (key,))


def postgres_env(database_url: str, *, pool_size: int = 5) -> dict[str, str]:
    """eventsourcing's PostgreSQL settings from one database URL."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path[1:]:
        raise ValueError("database URL must look like postgresql://user@host:port/dbname")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(parts.path[1:]),
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        # How long a caller waits for a pooled connection (not only to connect).
        "POSTGRES_CONNECT_TIMEOUT": str(int(POOL_WAIT_S)),
        "POSTGRES_MAX_OVERFLOW": str(pool_size),
        # No pre-ping: TracedApplication checks pooled connections without a round trip.
        "POSTGRES_PRE_PING": "n",
        # Serialised inserts wait for each other; give them room under load.
        "POSTGRES_LOCK_TIMEOUT": "5",
        "CREATE_TABLE": "y",
        # Commands arriving together share one transaction (see groupcommit).
        "APPLICATION_RECORDER_TOPIC": "casemesh.platform.groupcommit:GroupCommitRecorder",
    }
    return env
