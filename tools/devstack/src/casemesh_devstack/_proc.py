"""Small process helpers shared by the local servers (pid checks, log tails)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path


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


def die_with_parent() -> list[str]:
    """An argv prefix that makes the child get SIGTERM when this process dies, even by
    SIGKILL (where atexit hooks never run); [] where that is not available.

    Linux delivers the signal when the *thread* that forked the child exits, so it is
    only used from the main thread, which lives as long as the process.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "TERM", "--"]
