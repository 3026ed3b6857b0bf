"""Install a lock file's npm packages once into a cache directory, and survive a slow registry.

Used by the deploy check (the Strimzi validators) and the AsyncAPI test (@asyncapi/parser).
`installed(source, target)` copies `package.json` and `package-lock.json` from `source` to
`target` and runs `npm ci` there, unless the lock already installed there is the same one. A
fetch that stalls is given up after a minute and retried (npm's own default waits five
minutes, twice, per package), and a whole install that fails or overruns is tried again from
the start, a few times, before the error reaches the caller.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

ATTEMPTS = 3
ATTEMPT_SECONDS = 420
FETCH_FLAGS = (
    "--fetch-timeout=60000",
    "--fetch-retries=5",
    "--fetch-retry-mintimeout=2000",
    "--fetch-retry-maxtimeout=30000",
)


class InstallError(RuntimeError):
    """npm could not install the packages in any attempt."""


def installed(source: Path, target: Path, announce: Callable[[str], None] | None = None) -> Path:
    """`target`'s node_modules, holding exactly what `source`'s lock file names;
    `announce` is told before an install starts (it can take minutes)."""
    files = ("package.json", "package-lock.json")
    digest = hashlib.sha256(b"".join((source / name).read_bytes() for name in files)).hexdigest()
    stamp = target / ".installed-lock-sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return target / "node_modules"
    if shutil.which("npm") is None:
        raise InstallError(f"`npm` is needed to install the packages of {source}")
    target.mkdir(parents=True, exist_ok=True)
    # What is there no longer matches any stamp until this install succeeds.
    stamp.unlink(missing_ok=True)
    for name in files:
        shutil.copyfile(source / name, target / name)
    command = ["npm", "ci", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"]
    failures: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        if announce is not None:
            announce(f"installing the packages of {source} (npm ci, attempt {attempt})")
        failure = _run(command + list(FETCH_FLAGS))
        if failure is None:
            stamp.write_text(digest)
            return target / "node_modules"
        failures.append(failure)
    raise InstallError(f"npm ci for {source} failed {ATTEMPTS} times:\n" + "\n".join(failures))


def _run(command: list[str]) -> str | None:
    """Runs one install; None when it succeeded, else what went wrong. An
    install that overruns is stopped with every process it started (install
    scripts included), so that none writes into the next attempt's tree."""
    with subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            _, errors = process.communicate(timeout=ATTEMPT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, errors = process.communicate()
            return f"no end after {ATTEMPT_SECONDS} s: {errors.strip()[-2000:]}"
    if process.returncode == 0:
        return None
    return f"exit {process.returncode}: {errors.strip()[-2000:]}"
