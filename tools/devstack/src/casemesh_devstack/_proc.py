"""Small process helpers shared by the local servers: starting a child that dies
with us, pid checks, log tails."""

from __future__ import annotations

import ctypes
import os
import pwd
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

# linux/prctl.h
_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie answers kill(0) but is already dead for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def cmdline(pid: int) -> list[str]:
    """The argv of a running process, or [] if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def kill_pid(pid: int, timeout: float) -> None:
    """SIGTERM a (non-child) process, then SIGKILL it if it outlives timeout."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while pid_alive(pid):
        time.sleep(0.05)


def tail(path: Path, lines: int = 40) -> str:
    """Last lines of a log file, for error messages; empty if unreadable."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class _Spawner:
    """Forks every child from one daemon thread that lives as long as the process.

    Linux sends a child its parent-death signal when the *thread* that forked it
    exits, not the process; forking from whichever thread happens to call (a test's
    worker thread, a restart timer) would kill children when that thread ends."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="casemesh-dev-spawner", daemon=True
                )
                self._thread.start()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._requests.put((popen, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            popen, done = self._requests.get()
            try:
                done.set_result(popen())
            except BaseException as exc:  # handed to the caller, who raises it
                done.set_exception(exc)


_SPAWNER = _Spawner()


def _set_death_signal(sig: signal.Signals) -> Callable[[], None]:
    """A preexec_fn asking the kernel for ``sig`` when our process dies (where
    setpriv is missing); the libc function is looked up before the fork."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")

    return preexec


def spawn(
    argv: list[str],
    *,
    death_signal: signal.Signals = signal.SIGTERM,
    user: pwd.struct_passwd | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, as ``user`` if given, so that it gets
    ``death_signal`` from the kernel when this process dies, even by SIGKILL
    (where no handler of ours runs). Other keyword arguments go to Popen.

    Its own session: a terminal's Ctrl-C reaches only us, and we stop the
    children in order. The signal is set after the change of user (a change of
    credentials clears it) and survives the exec."""
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        prefix = [setpriv, "--pdeathsig", death_signal.name.removeprefix("SIG")]
        if user is not None:
            prefix += [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        argv = [*prefix, "--", *argv]
    else:
        popen["preexec_fn"] = _set_death_signal(death_signal)
        if user is not None:
            popen.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    return _SPAWNER.run(lambda: subprocess.Popen(argv, start_new_session=True, **popen))
