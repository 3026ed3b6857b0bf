"""Following an application's notification log in batches, from a tracked
position, woken by the event store's NOTIFY: what the read models and the
deadline timers of a writer service run on.

Under load a follower takes whatever has been stored since its last batch
(up to `BATCH`) and handles it at once — one read of the log, one
transaction for the batch — instead of one of each per event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from eventsourcing.persistence import Notification
from psycopg.conninfo import make_conninfo
from psycopg.sql import SQL, Identifier

from casemesh.platform.logging import get_logger
from casemesh.platform.pools import with_keepalives

log = get_logger(__name__)

BATCH = 200
# How long a follower waits for a NOTIFY before it looks again anyway (and
# notices that it was asked to stop).
WAKE_S = 1.0


def select_batch(app: Any, position: int | None, limit: int = BATCH) -> Sequence[Notification]:
    """The notifications stored after `position` (None: from the start)."""
    return app.recorder.select_notifications(  # type: ignore[no-any-return]
        start=position, limit=limit, inclusive_of_start=position is None
    )


class Follower:
    """Runs `handle(batch)` in a background thread for each batch of the
    application's notifications after `position()`, the tracked position
    `handle` records. After a failure (the database away) it waits a second
    and resumes from the tracked position."""

    def __init__(
        self,
        app: Any,
        name: str,
        position: Callable[[], int | None],
        handle: Callable[[Sequence[Notification]], None],
    ) -> None:
        self._app = app
        self._name = name
        self._position = position
        self._handle = handle
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{app.name}-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=WAKE_S + 5)

    def catch_up(self) -> None:
        """Handles, here and now, all that is stored past the tracked position
        (the application tests' way; a service runs the thread)."""
        while batch := select_batch(self._app, self._position()):
            self._handle(batch)

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._follow()
            except Exception as exc:
                log.error("follower.failed", follower=self._name, error=repr(exc))
                self._stopped.wait(1.0)

    def _follow(self) -> None:
        recorder = self._app.recorder
        pool = recorder.datastore.pool
        params = {k: v for k, v in pool.kwargs.items() if k != "row_factory"}
        conninfo = make_conninfo(with_keepalives(pool.conninfo), **params)
        with psycopg.connect(conninfo, autocommit=True) as listening:
            listening.execute(SQL("LISTEN {}").format(Identifier(recorder.channel_name)))
            position = self._position()
            while not self._stopped.is_set():
                batch = select_batch(self._app, position)
                if batch:
                    self._handle(batch)
                    position = batch[-1].id
                    # The NOTIFYs of what this batch took are spent.
                    for _ in listening.notifies(timeout=0):
                        pass
                    continue
                # Listening since before the read: a NOTIFY after it is not missed.
                for _ in listening.notifies(timeout=WAKE_S, stop_after=1):
                    pass
