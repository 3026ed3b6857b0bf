"""Deadlines as rows with a due time, fired once by a timer that issues
ordinary commands.

Scheduling: a projector follows the application's notification log and asks
the service which deadlines each event sets; the timer rows and the tracking
position commit in one transaction, so each deadline is scheduled exactly once
(replays and replicas change nothing: a row is keyed by what it is). A
service whose deadlines come from a few kinds of event names them
(`deadline_events`): only those are read. Each replica schedules all it
reads, even when another recorded the shared position further first
(`SharedTracking`): during a rolling update that other may be of the older
release, which passed over an event that sets a deadline in the newer one.

Firing: a due row is locked (SKIP LOCKED: replicas share the work), its
command runs, and the row is marked fired in the same locking transaction.
A crash after the command but before the mark fires it again, so commands
must be idempotent: they check that the deadline still applies (the service's
state records what already happened). A command that loses a race raises and
the row stays due. A row of a kind this release does not fire (a newer
release's, after a rollback: `UnknownDeadlineKind`) is left unfired, and
passed over from then on, to fire once a release that knows it runs.

Deadlines whose time follows a setting (a ticket's auto-close: `rechecked`)
are fired once more when the timer starts, due or not: a service restarted
with a shorter setting closes what is now past its time, rather than wait
for the time the row was given under the longer one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventsourcing import persistence
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from casemesh.platform.clock import Clock
from casemesh.platform.eventstore import schema_lock, side_table
from casemesh.platform.following import Follower, SharedTracking
from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import BACKGROUND_FAILURES
from casemesh.platform.periodic import Periodic
from casemesh.platform.personal.errors import UnknownDataKey, UnknownMasterKey
from casemesh.platform.personal.mapper import leaving_sealed
from casemesh.platform.pools import is_database_outage

log = get_logger(__name__)

# The scheduler reads what was stored at most once in this many seconds.
SCHEDULE_PACE_S = 1.0


@dataclass(frozen=True, slots=True)
class Deadline:
    """A case's deadline of one `kind` (a ticket's auto-close, an appeal's next step)."""

    aggregate_id: str
    kind: str
    due: datetime

    @property
    def id(self) -> str:
        return f"{self.aggregate_id}:{self.kind}:{self.due.isoformat()}"


class UnknownDeadlineKind(ValueError):
    """A deadline of a kind this release does not fire: scheduled by a newer
    release, then rolled back. Its row is left for a release that knows it."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown deadline kind {kind!r}")
        self.kind = kind


class TimerTable(SharedTracking):
    def __init__(self, datastore: PostgresDatastore, table: str) -> None:
        super().__init__(datastore, tracking_table_name=f"{table}_tracking")
        self.table = Identifier(table)
        # The kinds met that this release does not fire: their rows are
        # passed over (logged once each kind), not tried again at every tick.
        self.unknown_kinds: set[str] = set()
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY,"
                    " aggregate_id text NOT NULL, kind text NOT NULL,"
                    " due_at timestamptz NOT NULL, fired_at timestamptz)"
                ).format(table=self.table),
                SQL(
                    "CREATE INDEX IF NOT EXISTS {name} ON {table} (due_at) WHERE fired_at IS NULL"
                ).format(table=self.table, name=Identifier(f"{table}_due")),
                # The setting each rechecked kind's deadlines were last
                # rechecked under (`recheck`).
                SQL(
                    "CREATE TABLE IF NOT EXISTS {settings} (kind text PRIMARY KEY,"
                    " seconds double precision NOT NULL)"
                ).format(settings=Identifier(f"{table}_settings")),
            ]
        )
        self.settings = Identifier(f"{table}_settings")
        # A deadline whose command fails stays due and is tried at each tick.
        self._command_failures = BACKGROUND_FAILURES.labels(f"{table}-command")
        self._command_failures.inc(0)  # 0 before any (an alert reads it)

    def schedule(self, deadlines: Iterable[Deadline], tracking: Tracking) -> None:
        """The deadlines, those already scheduled left as they are (fired or
        not), and the position, unless it is as far already."""
        with self.datastore.transaction(commit=True) as curs:
            for d in deadlines:
                self._insert(curs, d)
            self._insert_tracking(curs, tracking)

    def _insert(self, curs: Any, d: Deadline) -> None:
        """A deadline an event set: one already there stays as it is, fired
        or not (a replay must not fire a deadline again)."""
        curs.execute(
            SQL(
                "INSERT INTO {table} (id, aggregate_id, kind, due_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING"
            ).format(table=self.table),
            (d.id, d.aggregate_id, d.kind, d.due),
        )

    def _rearm(self, curs: Any, d: Deadline) -> None:
        """A deadline a command says its case has now: due, even if its row
        was marked fired. That row was moved away from, not acted on: a
        setting shortened then put back (a recheck under 48 hours moved a
        96-hour auto-close to 48, which at its time moves it back to 96).
        Left fired, the case would have no deadline left, and a solved
        ticket would never close. A command moves a deadline to a time
        still to come, so the row it re-arms was only ever fired early, by a
        recheck, never at its time; and no firing re-arms a row due in the
        same tick (two rows moving a case back and forth without end). One
        that moves it to a time past (a policy changed since: a restore's
        grace shortened) has it fired at the next tick, which its command
        then finds due."""
        curs.execute(
            SQL(
                "INSERT INTO {table} (id, aggregate_id, kind, due_at)"
                " VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET fired_at = NULL, due_at = EXCLUDED.due_at"
            ).format(table=self.table),
            (d.id, d.aggregate_id, d.kind, d.due),
        )

    def fire_due(self, now: datetime, fire: Callable[[Deadline], Deadline | None]) -> int:
        """Fires the deadlines due at `now`, one transaction each; returns how
        many. A command that says its deadline moved (returns the new one)
        has it scheduled in the same transaction, due again if its row was
        fired (`_rearm`; one moved to a time past fires at the next tick)."""
        fired = 0
        # A deadline whose command fails stays due, but must not hold up the others.
        failed: list[str] = []
        while True:
            with self.datastore.transaction(commit=True) as curs:
                _hold_while_firing(curs)
                curs.execute(
                    SQL(
                        "SELECT id, aggregate_id, kind, due_at FROM {table}"
                        " WHERE fired_at IS NULL AND due_at <= %s AND NOT id = ANY(%s)"
                        " AND NOT kind = ANY(%s)"
                        " ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                    ).format(table=self.table),
                    (now, failed, list(self.unknown_kinds)),
                )
                row = curs.fetchone()
                if row is None:
                    return fired
                if self._fired(curs, row, now, fire):
                    fired += 1
                elif row["kind"] not in self.unknown_kinds:
                    failed.append(row["id"])

    def recheck(
        self,
        kinds: Mapping[str, timedelta],
        now: datetime,
        fire: Callable[[Deadline], Deadline | None],
    ) -> int:
        """Fires once, due or not, every unfired deadline of the `kinds`
        whose setting is shorter than when they were last rechecked (or
        never were), one transaction each: its command does what it does
        when the deadline is due (acts, or returns the deadline it has now,
        scheduled in its place), or returns the deadline itself, which then
        stays as it is. A setting unchanged or longer rechecks nothing (a
        longer one moves each deadline as it falls due). Returns how many
        were fired or moved."""
        ids: list[Any] = []
        with self.datastore.transaction(commit=False) as curs:
            for kind, longest in kinds.items():
                curs.execute(
                    SQL("SELECT seconds FROM {} WHERE kind = %s").format(self.settings),
                    (str(kind),),
                )
                row = curs.fetchone()
                seconds = longest.total_seconds()
                if row is None or seconds < row["seconds"]:
                    curs.execute(
                        SQL("SELECT id FROM {table} WHERE fired_at IS NULL AND kind = %s").format(
                            table=self.table
                        ),
                        (str(kind),),
                    )
                    ids += [r["id"] for r in curs.fetchall()]
        changed = 0
        for ident in ids:
            with self.datastore.transaction(commit=True) as curs:
                _hold_while_firing(curs)
                curs.execute(
                    SQL(
                        "SELECT id, aggregate_id, kind, due_at FROM {table}"
                        " WHERE id = %s AND fired_at IS NULL FOR UPDATE SKIP LOCKED"
                    ).format(table=self.table),
                    (ident,),
                )
                row = curs.fetchone()
                if row is not None and self._fired(curs, row, now, fire):
                    changed += 1
        # Recorded once they are all rechecked: a process stopped midway
        # leaves the next one to recheck them again.
        with self.datastore.transaction(commit=True) as curs:
            for kind, longest in kinds.items():
                curs.execute(
                    SQL(
                        "INSERT INTO {} (kind, seconds) VALUES (%s, %s)"
                        " ON CONFLICT (kind) DO UPDATE SET seconds = EXCLUDED.seconds"
                    ).format(self.settings),
                    (str(kind), longest.total_seconds()),
                )
        return changed

    def _fired(
        self, curs: Any, row: Any, now: datetime, fire: Callable[[Deadline], Deadline | None]
    ) -> bool:
        """Runs a locked row's command; True if the row was marked fired
        (its command done, or its deadline moved), False if it stays (the
        command failed, its kind is unknown here, or it said the deadline
        stands as it is)."""
        deadline = Deadline(row["aggregate_id"], row["kind"], row["due_at"])
        try:
            moved = fire(deadline)
        except UnknownDeadlineKind as exc:
            self._pass_over(curs, exc.kind, deadline)
            return False
        except persistence.IntegrityError:
            # A change to the same case (or, for a copyright notice, to
            # another notice of its items) stored at the same moment won the
            # event store's version check: a race, not a failure. The
            # deadline stays due and is fired again at the next tick, which
            # reads that change.
            log.info("timer.lost_race", deadline=deadline.id)
            return False
        except Exception as exc:
            self._command_failures.inc()
            log.error("timer.command_failed", deadline=deadline.id, error=repr(exc))
            return False
        if moved == deadline:
            return False
        if moved is not None:
            self._rearm(curs, moved)
        curs.execute(
            SQL("UPDATE {table} SET fired_at = %s WHERE id = %s").format(table=self.table),
            (now, row["id"]),
        )
        return True

    def _pass_over(self, curs: Any, kind: str, deadline: Deadline) -> None:
        """Rows of `kind` are passed over from now on, unfired; said once."""
        self.unknown_kinds.add(kind)
        curs.execute(
            SQL("SELECT count(*) AS n FROM {table} WHERE fired_at IS NULL AND kind = %s").format(
                table=self.table
            ),
            (kind,),
        )
        log.warning(
            "timer.kind_unknown",
            kind=kind,
            deadline=deadline.id,
            unfired=curs.fetchone()["n"],
            why="scheduled by a newer release: left unfired for one that knows it",
        )

    def pending(self) -> list[Deadline]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT aggregate_id, kind, due_at FROM {table}"
                    " WHERE fired_at IS NULL ORDER BY due_at"
                ).format(table=self.table)
            )
            return [Deadline(r["aggregate_id"], r["kind"], r["due_at"]) for r in curs.fetchall()]


def _hold_while_firing(curs: Any) -> None:
    """A firing's transaction holds its row locked while the command runs on
    other connections, so it sits idle: the pool's idle-in-transaction limit
    (the library's 5 s) would end the session under a slow command (a save
    waiting on the table lock, a retention expiry destroying many keys). The
    lock would go with it, another replica would fire the same deadline
    beside it, and the row, never marked fired, would be fired again and
    again. The limit is raised to FIRING_LIMIT, far above any command, but
    not lifted: a command stuck for good (a statement with no timeout of its
    own) must not hold the row and the database's oldest snapshot for ever.
    A dead process still lets the lock go: its session ends."""
    curs.execute(f"SET LOCAL idle_in_transaction_session_timeout = '{FIRING_LIMIT_S}s'")


# How long a firing's transaction may wait, idle, on its command.
FIRING_LIMIT_S = 15 * 60


@dataclass(kw_only=True)
class Timer:
    """Schedules deadlines from the event stream and fires them when due.

    `deadlines_of(domain_event)` says which deadlines an event sets, from
    the event read with its personal texts sealed (a deadline never depends
    on what someone wrote);
    `fire(deadline)` issues the command. Both run in background threads.
    `events`: the only event classes that set deadlines (empty: any may).
    `rechecked`: the kinds fired once more at start, due or not, where due
    later than the time each may be away now (`recheck`)."""

    app: Any
    table: TimerTable
    clock: Clock
    deadlines_of: Callable[[Any], list[Deadline]]
    # Returns the deadline's new time, if it moved (see TimerTable.fire_due).
    fire: Callable[[Deadline], Deadline | None]
    events: Sequence[type] = ()
    rechecked: Mapping[str, timedelta] = dataclasses.field(default_factory=dict)
    tick_seconds: float = 0.5

    def __post_init__(self) -> None:
        self._read = leaving_sealed(self.app.mapper)
        self._to_recheck = bool(self.rechecked)
        self._scheduler = Follower(
            self.app,
            "timer-schedule",
            lambda: self.table.max_tracking_id(self.app.name),
            self._schedule,
            topics=[get_topic(cls) for cls in self.events],
            # Deadlines are days away: a second late to schedule one is nothing.
            pace=SCHEDULE_PACE_S,
            own_position=True,  # its table is a SharedTracking
        )
        # Time-driven by nature: a short tick (deadlines are days away; a
        # test clock may jump), not on any request's path.
        self._firing = Periodic(
            "timer-fire", self.tick_seconds, self._fire_due, "timers.fire_failed", join_s=5
        )

    def start(self) -> None:
        self._scheduler.start()
        self._firing.start()

    def stop(self) -> None:
        self._firing.stop()
        self._scheduler.stop()

    def _schedule(self, batch: Sequence[Notification], reached: int) -> None:
        """The deadlines a batch of events sets, and the position, in one
        transaction. Deadlines depend on an event's structure, never on its
        people's words: personal texts are left sealed (no key look-up)."""
        read = self._read.to_domain_event
        deadlines = []
        for n in batch:
            try:
                deadlines += self.deadlines_of(read(n))
            except (UnknownDataKey, UnknownMasterKey):
                raise  # a key not to be had now (an application's deadlines_of may read)
            except Exception as exc:
                if is_database_outage(exc):
                    raise  # the database away (an application's deadlines_of may read it)
                # An event this release cannot read (a class gone without an
                # upcaster): set aside, loudly, rather than every deadline of
                # every case after it waiting on it for good.
                log.error(
                    "timer.event_unreadable",
                    aggregate_id=str(n.originator_id),
                    version=n.originator_version,
                    notification_id=n.id,
                    error=repr(exc),
                )
        self.table.schedule(deadlines, Tracking(self.app.name, reached))

    def _fire_due(self) -> None:
        if self._to_recheck:
            # At the first tick (again at the next, if the database was away).
            changed = self.table.recheck(self.rechecked, self.clock.now(), self.fire)
            kinds = [str(k) for k in self.rechecked]
            log.info("timer.rechecked", kinds=kinds, fired_or_moved=changed)
            self._to_recheck = False
        self.table.fire_due(self.clock.now(), self._fire_logged)

    def _fire_logged(self, deadline: Deadline) -> Deadline | None:
        log.info(
            "timer.firing",
            aggregate_id=deadline.aggregate_id,
            kind=deadline.kind,
            due=deadline.due.isoformat(),
        )
        return self.fire(deadline)


def case_timer(app: Any, database_url: str, table: str) -> Timer:
    """The timer of a case application (`clock`, `deadlines_of`, `fire`,
    `deadline_events`, and `deadlines_rechecked` if it has any), its table
    beside the application's events."""
    with schema_lock(database_url):
        timers = side_table(app, lambda datastore: TimerTable(datastore, table))
    return Timer(
        app=app,
        table=timers,
        clock=app.clock,
        deadlines_of=app.deadlines_of,
        fire=app.fire,
        events=app.deadline_events,
        rechecked=getattr(app, "deadlines_rechecked", {}),
    )
