"""Following an application's notification log in batches, from a tracked
position, woken by the event store's NOTIFY: what the read models and the
deadline timers of a writer service run on.

Under load a follower takes whatever has been stored since its last batch
(up to `BATCH`) and handles it at once — one read of the log, one
transaction for the batch — instead of one of each per event.

A follower of a few kinds of event (`topics`) has the database pick them
out, and moves its position past the others unread: up to the highest
notification id stored when it looked. That is safe because the event
store makes notification ids visible in order (its table lock: no id at or
below one that has been read becomes visible later, which the relay relies
on too).

Every replica of a service follows the same log and records one shared
position (its tracking row is keyed by the application's name), also during
a rolling update, when replicas of two releases run side by side. A
replica of the older release may not read every event the newer one must
handle (a new event class, one it cannot decode, or one whose deadlines it
reckons otherwise), and moves the shared position past it. So a follower
whose handling is idempotent records its position with `SharedTracking`
(never back, never refused) and reads on from where it got itself, not
from where another replica got (`own_position`): each replica handles all
it reads. A replica that starts (or restarts) still begins at the shared
position: an event an older replica recorded past before any running
replica of the newer release had read it is skipped by a newer one that
starts then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.persistence import Notification, Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import BACKGROUND_FAILURES, FOLLOWER_LAG
from casemesh.platform.pools import with_keepalives

log = get_logger(__name__)

BATCH = 200
# How far a follower of a few topics moves past events it does not handle
# before it records its position anyway (else a restart reads them again).
RECORD_EVERY = 10_000
# How long a follower waits for a NOTIFY before it looks again anyway (and
# notices that it was asked to stop).
WAKE_S = 1.0
# How often, at most, a follower that is behind (or failing) reads how far
# behind it is (`casemesh_follower_lag_events`).
LAG_EVERY_S = 5.0


def select_batch(
    app: Any, position: int | None, limit: int, topics: Sequence[str] = ()
) -> tuple[Sequence[Notification], int | None]:
    """The notifications stored after `position` (None: from the start), of
    `topics` if any are given, and the position they bring the reader to."""
    recorder = app.recorder
    if not topics:
        batch = recorder.select_notifications(
            start=position, limit=limit, inclusive_of_start=position is None
        )
        return batch, batch[-1].id if batch else position
    stop = recorder.max_notification_id()
    if stop is None or (position is not None and stop <= position):
        return [], position
    batch = recorder.select_notifications(
        start=position,
        limit=limit,
        stop=stop,
        topics=list(topics),
        inclusive_of_start=position is None,
    )
    return batch, batch[-1].id if len(batch) == limit else stop


class SharedTracking(PostgresTrackingRecorder):
    """A tracking recorder whose position only moves forward, and which
    does not refuse a position at or behind the recorded one: the follower
    that records it has still done its work (idempotent writes, in the same
    transaction), which must not be rolled back because another replica,
    perhaps of another release, recorded further first."""

    def _insert_tracking(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        if not self.datastore.single_row_tracking:
            super()._insert_tracking(curs, tracking)  # (a legacy table: refused as ever)
            return
        # The library's upsert, which moves the row only forward; no row
        # returned (it was as far already) is no error here.
        curs.execute(
            query=self.insert_tracking_statement,
            params={
                "application_name": tracking.application_name,
                "notification_id": tracking.notification_id,
            },
            prepare=True,
        )


class SharedMemoryTracking(POPOTrackingRecorder):
    """`SharedTracking` in memory, for the read models kept in a process:
    the position moves only forward, and one as far already is no error."""

    def insert_tracking(self, tracking: Tracking) -> None:
        with self._database_lock:
            self._move_to(tracking)

    def _move_to(self, tracking: Tracking) -> None:
        """The position, unless it is as far already; under the lock."""
        held = self._max_tracking_ids[tracking.application_name]
        if held is None or held < tracking.notification_id:
            self._insert_tracking(tracking)


class Follower:
    """Runs `handle(batch, reached)` in a background thread for each batch of
    the application's notifications after `position()`, the tracked position
    `handle` records (`reached`: where the batch brings it). With `topics`,
    only notifications of those topics are handled; an empty batch is handed
    over only when the position has moved `RECORD_EVERY` past the tracked one.
    With `pace`, it reads at most once in that many seconds, however often
    events are stored (for what need not follow closely: a read costs the
    writers a pooled connection and the database a query).
    After a failure (the database away) it waits a second and resumes from
    the tracked position; with `own_position` (its `handle` records with
    `SharedTracking`), from where it had got itself: the tracked position
    may have been moved past what this one must handle. It starts from the
    tracked position all the same (see the module's docstring)."""

    def __init__(
        self,
        app: Any,
        name: str,
        position: Callable[[], int | None],
        handle: Callable[[Sequence[Notification], int], None],
        topics: Sequence[str] = (),
        pace: float = 0.0,
        own_position: bool = False,
    ) -> None:
        self._app = app
        self._name = name
        self._position = position
        self._handle = handle
        self._topics = topics
        self._pace = pace
        self._own_position = own_position
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{app.name}-{name}", daemon=True)
        # Seen by operators: a follower failing on the same events again and
        # again (a key missing, say) leaves its read model or deadlines behind,
        # with no request failing to tell.
        self._failures = BACKGROUND_FAILURES.labels(self._thread.name)
        self._failures.inc(0)  # 0 before any (an alert reads it)
        self._lag = FOLLOWER_LAG.labels(self._thread.name)
        self._lag.set(0)
        self._lag_read_at = float("-inf")
        # Where it has read to (None: not yet), ahead of the tracked position
        # for a follower of a few topics, which records it only now and then.
        self._at: int | None = None
        self._started = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=WAKE_S + 5)

    def catch_up(self) -> None:
        """Handles, here and now, all that is stored past the tracked position
        (the application tests' way; a service runs the thread)."""
        position = self._position()
        while True:
            batch, reached = select_batch(self._app, position, BATCH, self._topics)
            if reached is None or reached == position:
                return
            self._handle(batch, reached)
            position = reached

    def _handled(self, batch: Sequence[Notification], reached: int) -> int | None:
        """Handles the batch; or, when another replica's follower recorded as
        far or further first (its tracking row refuses ours: every replica
        follows the same log), where it got, to read on from there. That is
        no failure: replicas of a writer service do it all the time. A
        follower recording with `SharedTracking` (`own_position`) is never
        refused: an IntegrityError there is its rows' own, raised however
        far another replica got (a failure, counted and tried again)."""
        if self._own_position:
            self._handle(batch, reached)
            return None
        try:
            self._handle(batch, reached)
            return None
        except (persistence.IntegrityError, psycopg.IntegrityError):
            tracked = self._position()
            if tracked is None or tracked < reached:
                raise  # a conflict of its own, not the position's
            log.debug("follower.overtaken", follower=self._name, position=tracked)
            return tracked

    def _report_lag(self, position: int | None) -> None:
        """At most every LAG_EVERY_S: how far the log goes past `position`
        (None: the tracked one); NaN when the database cannot say."""
        now = time.monotonic()
        if now - self._lag_read_at < LAG_EVERY_S:
            return
        self._lag_read_at = now
        try:
            at = self._position() if position is None else position
            head = self._app.recorder.max_notification_id() or 0
            self._lag.set(max(0, head - (at or 0)))
        except Exception:
            self._lag.set(float("nan"))

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except Exception as exc:
                self._failures.inc()
                self._report_lag(self._at)
                log.error("follower.failed", follower=self._name, error=repr(exc))
                self._stopped.wait(1.0)

    def _follow(self) -> None:
        recorder = self._app.recorder
        pool = recorder.datastore.pool
        # Opened as the pool's are (its connection options, and psycopg's
        # own, such as `prepare_threshold`), but left in autocommit.
        params = {k: v for k, v in pool.kwargs.items() if k not in ("row_factory", "autocommit")}
        conninfo = with_keepalives(pool.conninfo)
        with psycopg.connect(conninfo, autocommit=True, **params) as listening:
            listening.execute(SQL("LISTEN {}").format(Identifier(recorder.channel_name)))
            position = recorded = self._position()
            if self._own_position and self._started:
                position = self._at
            else:
                # Where an earlier try read to, if further (a follower of a few
                # topics failing again and again starts at the tracked position).
                self._at = position if self._at is None else max(position or 0, self._at)
            self._started = True
            while not self._stopped.is_set():
                batch, reached = select_batch(self._app, position, BATCH, self._topics)
                if reached is not None and reached != position:
                    if batch or reached - (recorded or 0) >= RECORD_EVERY:
                        overtaken = self._handled(batch, reached)
                        if overtaken is not None:
                            position = recorded = self._at = overtaken
                            continue
                        recorded = reached
                    position = self._at = reached
                    self._report_lag(position)
                    if len(batch) < BATCH:  # else more is waiting already
                        self._stopped.wait(self._pace)
                    # The NOTIFYs of what this read took are spent.
                    for _ in listening.notifies(timeout=0):
                        pass
                    continue
                self._lag.set(0)  # as of this read
                # Listening since before the read: a NOTIFY after it is not missed.
                for _ in listening.notifies(timeout=WAKE_S, stop_after=1):
                    pass
