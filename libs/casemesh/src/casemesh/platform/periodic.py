"""Work a worker does again and again on a clock, in a thread of its own:
a case timer firing its due deadlines, the evidence purger deleting what no
case needs. `Periodic` is a worker (`serve_servicer`'s `start`/`stop`)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from casemesh.platform.logging import get_logger
from casemesh.platform.metrics import BACKGROUND_FAILURES

log = get_logger(__name__)


class Periodic:
    """Runs `work()` every `seconds`, the first time `seconds` after `start`,
    until `stop`. A failure is logged as `failed`, counted under the task
    `name` (`casemesh_background_failures`), and tried again at the next
    tick: the work is not on any request's path, and what it does is left
    to do until it is done."""

    def __init__(
        self, name: str, seconds: float, work: Callable[[], object], failed: str, join_s: float
    ) -> None:
        self.name = name  # in logs
        self._work, self._seconds, self._failed, self._join_s = work, seconds, failed, join_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._failures = BACKGROUND_FAILURES.labels(name)
        self._failures.inc(0)  # 0 before any (an alert reads it)

    @property
    def stopping(self) -> bool:
        """True once `stop` was called: long work can end early."""
        return self._stopped.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Asks the work to stop, and waits up to `join_s` for the thread."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._join_s)

    def _loop(self) -> None:
        while not self._stopped.wait(self._seconds):
            try:
                self._work()
            except Exception as exc:
                self._failures.inc()
                log.error(self._failed, error=repr(exc))
