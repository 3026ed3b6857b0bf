"""A small process supervisor for the Casemesh service processes.

Each child runs in its own process group (so a terminal Ctrl-C reaches only us
and signals hit the child's whole tree), its output is appended to
``<log_dir>/<name>.log`` and, with ``echo=True``, also copied to our stdout with
a ``[name] `` prefix.  Tests use :meth:`Supervisor.kill` and
:meth:`Supervisor.restart` to crash services mid-run and bring them back.
"""

from __future__ import annotations

import atexit
import contextlib
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

from casemesh_devstack._proc import die_with_parent

# Signals after which the child's exit is our doing, not a crash worth reporting.
_STOPPING_SIGNALS = {signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}
_MIN_GRACE_S = 1.0


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    pump: threading.Thread | None = None
    # Set when we asked it to stop, so its exit is not reported as unexpected.
    stopping: bool = False
    reported: bool = False
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Runs named child processes and stops them in reverse start order."""

    def __init__(self, log_dir: Path, echo: bool = False, out: TextIO | None = None) -> None:
        self.log_dir = Path(log_dir).absolute()
        self.echo = echo
        self._out = out
        self._children: dict[str, _Child] = {}
        self._lock = threading.RLock()
        self._echo_lock = threading.Lock()
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
        """Children that died without being asked to since the last call: (name, exit code).

        A negative code is the signal that killed it, as in :attr:`subprocess.Popen.returncode`.
        """
        found: list[tuple[str, int]] = []
        with self._lock:
            for child in self._children.values():
                code = child.proc.poll()
                if code is not None and not child.stopping and not child.reported:
                    child.reported = True
                    found.append((child.name, code))
        return found

    # -- control --------------------------------------------------------------

    def start(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        """Start ``argv`` as child ``name``; ``env`` is added to (overrides) our environment."""
        with self._lock:
            old = self._children.get(name)
            if old is not None and old.proc.poll() is None:
                raise ValueError(f"process {name!r} is already running (pid {old.proc.pid})")
            if old is not None and old.pump is not None:
                old.pump.join(timeout=5)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_file = self.log_path(name).open("ab")
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            log_file.write(f"=== {stamp} starting {name}: {' '.join(argv)}\n".encode())
            log_file.flush()
            try:
                proc = subprocess.Popen(
                    [*die_with_parent(), *argv],
                    env={**os.environ, **env},
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE if self.echo else log_file,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except BaseException:
                log_file.close()
                raise
            child = _Child(name=name, argv=list(argv), env=dict(env), proc=proc)
            if self.echo:
                assert proc.stdout is not None
                child.pump = threading.Thread(
                    target=self._pump,
                    args=(name, proc.stdout, log_file),
                    name=f"supervisor-{name}",
                    daemon=True,
                )
                child.pump.start()
            else:
                # The child holds its own descriptor for the log now.
                log_file.close()
            # Re-starting a name keeps its place in the start (and so stop) order.
            self._children[name] = child
            if not self._atexit_registered:
                atexit.register(self._stop_at_exit)
                self._atexit_registered = True

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the child's process group; for SIGKILL, also wait until it is gone."""
        with self._lock:
            child = self._children[name]
            if sig in _STOPPING_SIGNALS:
                child.stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, sig)
        if sig == signal.SIGKILL:
            child.proc.wait()

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM one child and wait up to ``timeout`` s, then SIGKILL it."""
        with self._lock:
            child = self._children[name]
        self._terminate(child, time.monotonic() + timeout)

    def restart(self, name: str, timeout: float = 15.0) -> None:
        """Start ``name`` again with its original argv and env (stopping it first if needed)."""
        with self._lock:
            child = self._children[name]
        if child.proc.poll() is None:
            self._terminate(child, time.monotonic() + timeout)
        self.start(name, child.argv, child.env)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM the children one by one in reverse start order, waiting for each.

        The ``timeout`` is shared: a child still alive when it has run out is SIGKILLed
        (each child still gets at least one second after its SIGTERM)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            children = list(reversed(self._children.values()))
        for child in children:
            self._terminate(child, deadline)
        if self._atexit_registered:
            atexit.unregister(self._stop_at_exit)
            self._atexit_registered = False

    def _terminate(self, child: _Child, deadline: float) -> None:
        child.stopping = True
        if child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGTERM)
            try:
                # Even past the shared deadline each child gets a moment to exit cleanly.
                child.proc.wait(timeout=max(_MIN_GRACE_S, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._write_echo(child.name, b"*** did not stop after SIGTERM; sending SIGKILL\n")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        # Grandchildren in the group may outlive the leader; they go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        if child.pump is not None:
            child.pump.join(timeout=5)

    def _stop_at_exit(self) -> None:
        # Services must not outlive the Python that started them (tests, Ctrl-C paths).
        self.stop_all(timeout=5)

    # -- output ---------------------------------------------------------------

    def _write_echo(self, name: str, line: bytes) -> None:
        if not self.echo:
            return
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

    def _pump(self, name: str, stream: IO[bytes], log_file: IO[bytes]) -> None:
        with stream, log_file:
            for line in iter(stream.readline, b""):
                log_file.write(line)
                log_file.flush()
                self._write_echo(name, line)
