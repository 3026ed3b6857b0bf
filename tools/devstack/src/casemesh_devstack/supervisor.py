"""A small process supervisor for the local Casemesh processes (``./dev up`` and
the tests' stack).

- Children cannot outlive it: each runs in its own session (a terminal's Ctrl-C
  reaches only the supervisor, which then stops them in order) and gets SIGTERM
  from the kernel when the supervisor dies, even by kill -9 (``_proc.spawn``).
- Stopping is graceful: SIGTERM, then the child's own grace period (its
  ``CASEMESH_SHUTDOWN_DELAY_SECONDS`` + ``CASEMESH_SHUTDOWN_GRACE_SECONDS``, plus
  time to leave consumer groups and close pools, or its ``stop_grace`` if that
  is longer: the notifier finishes the send in hand), and only then SIGKILL,
  said aloud. :meth:`Supervisor.stop_all` stops the children by ``stop_rank``,
  lowest first, equal ranks together: the front door before what it depends on.
- With ``restart=True`` a child that exits without being asked to is started
  again after a backoff (1 s, doubling up to 30 s; back to 1 s once it has
  stayed up a minute), as Kubernetes restarts a crashed container, and each
  crash and restart is said. A child stopped or killed through the supervisor
  stays down until it is started again. Tests keep restarts off, so that a
  crash fails them instead of being hidden.

Output goes to ``<log_dir>/<name>.log`` and, with ``echo=True``, also to our
stdout with a ``[name] `` prefix; the supervisor's own notes about a child go to
its log too (lines starting ``===``) and to the ``logging`` module. Tests use
:meth:`Supervisor.kill` and :meth:`Supervisor.restart` to crash services
mid-run and bring them back.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TextIO

from casemesh_devstack._proc import spawn

log = logging.getLogger(__name__)

# Signals after which the child's exit is our doing, not a crash to restart.
_STOPPING_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
# What a service's own settings default to (casemesh.platform.settings).
_DEFAULT_DELAY_S = 0.0
_DEFAULT_GRACE_S = 10.0
# Beyond the gRPC drain: consumers leave their group, relays stop their
# producer, pools close, Python exits.
_EXIT_MARGIN_S = 10.0
_POLL_S = 0.1


def grace_period(
    env: Mapping[str, str], margin: float = _EXIT_MARGIN_S, least: float = 0.0
) -> float:
    """Seconds a child started with ``env`` may take to exit after SIGTERM: its
    gRPC drain (delay + grace) and ``margin`` for the rest of its way out, or
    ``least`` if that is longer (work in hand that outlasts the drain)."""

    def seconds(name: str, default: float) -> float:
        try:
            return float(env.get(name, default))
        except ValueError:
            return default

    delay = seconds("CASEMESH_SHUTDOWN_DELAY_SECONDS", _DEFAULT_DELAY_S)
    grace = seconds("CASEMESH_SHUTDOWN_GRACE_SECONDS", _DEFAULT_GRACE_S)
    return max(delay + grace + margin, least)


def _how(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
        return f"signal {-code}"
    return f"code {code}"


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    stop_rank: int
    stop_grace: float
    proc: subprocess.Popen[bytes]
    pump: threading.Thread | None = None
    # Set when we asked it to stop (and when), so its exit is not a crash.
    stopping: bool = False
    sigterm_at: float = 0.0
    # The watcher has seen this process exit on its own.
    crash_seen: bool = False
    started_at: float = field(default_factory=time.monotonic)
    # Restarts after crashes, and crashes since it last stayed up (for the backoff).
    restarts: int = 0
    crashes_in_a_row: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs named child processes, restarts crashed ones (if asked to) and stops
    them gracefully by rank."""

    def __init__(
        self,
        log_dir: Path,
        echo: bool = False,
        out: TextIO | None = None,
        *,
        restart: bool = False,
        first_restart_delay: float = 1.0,
        max_restart_delay: float = 30.0,
        stable_after: float = 60.0,
        exit_margin: float = _EXIT_MARGIN_S,
    ) -> None:
        self.log_dir = Path(log_dir).absolute()
        self.echo = echo
        self._out = out
        self._restart = restart
        self._first_delay = first_restart_delay
        self._max_delay = max_restart_delay
        self._stable_after = stable_after
        self._exit_margin = exit_margin
        self._children: dict[str, _Child] = {}
        self._crashes: list[tuple[str, int]] = []
        self._lock = threading.RLock()
        self._echo_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._closing = False
        self._atexit_registered = False

    # -- queries --------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Every child ever started, in start order."""
        with self._lock:
            return list(self._children)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def command(self, name: str) -> tuple[list[str], dict[str, str]]:
        """The argv and added environment child ``name`` was started with."""
        with self._lock:
            child = self._children[name]
            return list(child.argv), dict(child.env)

    def is_running(self, name: str) -> bool:
        with self._lock:
            child = self._children.get(name)
            return child is not None and child.proc.poll() is None

    def pid(self, name: str) -> int | None:
        with self._lock:
            child = self._children.get(name)
            return child.proc.pid if child is not None and child.proc.poll() is None else None

    def returncode(self, name: str) -> int | None:
        with self._lock:
            return self._children[name].proc.poll()

    def exited(self) -> list[tuple[str, int]]:
        """Children that exited without being asked to since the last call: (name, exit
        code). A negative code is the signal that killed it, as in
        :attr:`subprocess.Popen.returncode`."""
        with self._lock:
            now = time.monotonic()
            for child in list(self._children.values()):
                self._check(child, now)
            found, self._crashes = self._crashes, []
        return found

    def restarts(self, name: str) -> int:
        """How often ``name`` was restarted after a crash (0 with restarts off)."""
        with self._lock:
            return self._children[name].restarts

    # -- control --------------------------------------------------------------

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str],
        *,
        stop_rank: int = 0,
        stop_grace: float = 0.0,
    ) -> None:
        """Start ``argv`` as child ``name``; ``env`` is added to (overrides) our
        environment. :meth:`stop_all` stops lower ``stop_rank`` first, and gives
        the child at least ``stop_grace`` seconds after SIGTERM (see
        :func:`grace_period`)."""
        with self._lock:
            old = self._children.get(name)
            if old is not None and old.proc.poll() is None:
                raise ValueError(f"process {name!r} is already running (pid {old.proc.pid})")
            if old is not None and old.pump is not None:
                old.pump.join(timeout=5)
            # Re-starting a name keeps its place in the start order.
            self._children[name] = self._spawn(name, list(argv), dict(env), stop_rank, stop_grace)
            self._closing = False
            if self._watcher is None:
                self._watcher = threading.Thread(
                    target=self._watch, name="supervisor-watch", daemon=True
                )
                self._watcher.start()
            if not self._atexit_registered:
                atexit.register(self._stop_at_exit)
                self._atexit_registered = True

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child's process group; for SIGKILL, also wait until it is
        gone. After a stopping signal the child is not restarted."""
        with self._lock:
            child = self._children[name]
            if sig in _STOPPING_SIGNALS:
                child.stopping = True
                child.restart_at = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)
        if sig == signal.SIGKILL:
            child.proc.wait()

    def stop(self, name: str, timeout: float | None = None) -> None:
        """SIGTERM one child and wait its grace period (or ``timeout`` s), then SIGKILL it."""
        with self._lock:
            child = self._children[name]
            self._ask_to_stop(child)
        self._await_exit(child, timeout)

    def restart(self, name: str, timeout: float | None = None) -> None:
        """Start ``name`` again with its original argv and env (stopping it first if needed)."""
        with self._lock:
            child = self._children[name]
            self._ask_to_stop(child)
        self._await_exit(child, timeout)
        self.start(
            name, child.argv, child.env, stop_rank=child.stop_rank, stop_grace=child.stop_grace
        )

    def stop_all(self, timeout: float | None = None) -> None:
        """Stop every child: lowest ``stop_rank`` first, each rank's children together
        (SIGTERM, then each one's grace period or ``timeout`` s, then SIGKILL)."""
        began = time.monotonic()
        with self._lock:
            self._closing = True
            children = list(self._children.values())
        killed: list[str] = []
        for rank in sorted({child.stop_rank for child in children}):
            wave = [child for child in children if child.stop_rank == rank]
            with self._lock:
                for child in wave:
                    self._ask_to_stop(child)
            killed += [child.name for child in wave if not self._await_exit(child, timeout)]
        if children:
            log.log(
                logging.WARNING if killed else logging.INFO,
                "stopped %d processes in %.1f s%s",
                len(children),
                time.monotonic() - began,
                f"; killed: {', '.join(killed)}" if killed else "",
            )
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str], stop_rank: int, stop_grace: float
    ) -> _Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # The child writes its log itself (not through a pipe to us): if we die, it
        # neither loses its last lines nor meets a broken pipe while it drains.
        with self.log_path(name).open("a+b") as log_file:
            _write_note(log_file, f"starting {name}: {' '.join(argv)}")
            start = log_file.tell()
            proc = spawn(
                argv,
                death_signal=signal.SIGTERM,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        child = _Child(
            name=name, argv=argv, env=env, stop_rank=stop_rank, stop_grace=stop_grace, proc=proc
        )
        if self.echo:
            child.pump = threading.Thread(
                target=self._follow,
                args=(name, start, proc),
                name=f"supervisor-{name}",
                daemon=True,
            )
            child.pump.start()
        return child

    def _ask_to_stop(self, child: _Child) -> None:
        """Mark ``child`` as stopping and SIGTERM it; hold ``self._lock``."""
        child.stopping = True
        child.restart_at = None
        child.sigterm_at = time.monotonic()
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)

    def _await_exit(self, child: _Child, timeout: float | None) -> bool:
        """Wait for a child we sent SIGTERM; SIGKILL it after its grace period.
        False if it had to be killed."""
        if timeout is None:
            grace = grace_period({**os.environ, **child.env}, self._exit_margin, child.stop_grace)
        else:
            grace = timeout
        clean = True
        try:
            child.proc.wait(timeout=max(0.0, child.sigterm_at + grace - time.monotonic()))
        except subprocess.TimeoutExpired:
            clean = False
            self._note(
                child.name,
                f"{child.name} did not stop within {grace:g} s of SIGTERM; sending SIGKILL",
                logging.WARNING,
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        # Grandchildren in the group may outlive the leader; they go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        if child.pump is not None:
            child.pump.join(timeout=5)
        if clean:
            took = time.monotonic() - child.sigterm_at
            self._note(
                child.name,
                f"{child.name} stopped ({_how(child.proc.returncode)}, {took:.1f} s after SIGTERM)",
                logging.DEBUG,
            )
        return clean

    def _stop_at_exit(self) -> None:
        # Services must not outlive the Python that started them (tests, Ctrl-C paths).
        self.stop_all()

    # -- crashes and restarts -------------------------------------------------

    def _watch(self) -> None:
        while True:
            with self._lock:
                if self._closing:
                    self._watcher = None
                    return
                now = time.monotonic()
                for child in list(self._children.values()):
                    self._check(child, now)
            time.sleep(_POLL_S)

    def _check(self, child: _Child, now: float) -> None:
        """Notice a crash and schedule its restart, or carry out a due one; hold the lock."""
        code = child.proc.poll()
        if code is None or child.stopping:
            return
        if not child.crash_seen:
            child.crash_seen = True
            self._crashes.append((child.name, code))
            # Anything it left in its process group goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            if not self._restart:
                self._note(child.name, f"{child.name} exited with {_how(code)}", logging.WARNING)
                return
            if now - child.started_at >= self._stable_after:
                child.crashes_in_a_row = 0
            delay = min(self._max_delay, self._first_delay * 2**child.crashes_in_a_row)
            child.crashes_in_a_row += 1
            child.restarts += 1
            child.restart_at = now + delay
            self._note(
                child.name,
                f"{child.name} exited with {_how(code)}; "
                f"restarting in {delay:g} s (restart {child.restarts})",
                logging.WARNING,
            )
        elif child.restart_at is not None and now >= child.restart_at:
            child.restart_at = None
            if child.pump is not None:
                child.pump.join(timeout=5)
            again = self._spawn(
                child.name, child.argv, child.env, child.stop_rank, child.stop_grace
            )
            again.restarts, again.crashes_in_a_row = child.restarts, child.crashes_in_a_row
            self._children[child.name] = again

    # -- output ---------------------------------------------------------------

    def _note(self, name: str, text: str, level: int) -> None:
        """Our word about child ``name``: in its log file and through ``logging``."""
        with contextlib.suppress(OSError), self.log_path(name).open("a+b") as fh:
            _write_note(fh, text)
        log.log(level, "%s", text)

    def _write_echo(self, name: str, line: bytes) -> None:
        out = self._out if self._out is not None else sys.stdout
        text = line.decode("utf-8", "replace")
        if not text.endswith("\n"):
            text += "\n"
        with self._echo_lock:
            try:
                out.write(f"[{name}] {text}")
                out.flush()
            except (OSError, ValueError):
                # Our stdout went away (closed pipe): the log file still has it all.
                pass

    def _follow(self, name: str, start: int, proc: subprocess.Popen[bytes]) -> None:
        """Echo what one run of a child writes to its log, from ``start`` until it has
        exited and all is read; our own ``===`` notes are said through ``logging``."""
        with self.log_path(name).open("rb") as log_file:
            log_file.seek(start)
            partial = b""
            while True:
                exited = proc.poll() is not None
                chunk = log_file.read()
                if not chunk:
                    if exited:
                        break
                    time.sleep(_POLL_S)
                    continue
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    if not line.startswith(b"=== "):
                        self._write_echo(name, line)
            if partial:
                self._write_echo(name, partial)


def _write_note(log_file: IO[bytes], text: str) -> None:
    """Append one of our ``===`` lines, on a line of its own even if the child's
    last line had no end."""
    log_file.seek(0, os.SEEK_END)
    fresh_line = log_file.tell() == 0
    if not fresh_line:
        log_file.seek(-1, os.SEEK_END)
        fresh_line = log_file.read(1) == b"\n"
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    log_file.write((b"" if fresh_line else b"\n") + f"=== {stamp} {text}\n".encode())
    log_file.flush()
