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
import shutil
import subprocess
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


def installed(source: Path, target: Path) -> Path:
    """`target`'s node_modules, holding exactly what `source`'s lock file names."""
    files = ("package.json", "package-lock.json")
    digest = hashlib.sha256(b"".join((source / name).read_bytes() for name in files)).hexdigest()
    stamp = target / ".installed-lock-sha256"
    if stamp.is_file() and stamp.read_text() == digest:
        return target / "node_modules"
    if shutil.which("npm") is None:
        raise InstallError(f"`npm` is needed to install the packages of {source}")
    target.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copyfile(source / name, target / name)
    command = ["npm", "ci", "--prefix", str(target), "--no-audit", "--no-fund", "--loglevel=error"]
    failures: list[str] = []
    for _ in range(ATTEMPTS):
        try:
            done = subprocess.run(
                [*command, *FETCH_FLAGS],
                capture_output=True,
                text=True,
                timeout=ATTEMPT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            failures.append(f"no end after {ATTEMPT_SECONDS} s")
            continue
        if done.returncode == 0:
            stamp.write_text(digest)
            return target / "node_modules"
        failures.append(f"exit {done.returncode}: {done.stderr.strip()[-2000:]}")
    raise InstallError(f"npm ci for {source} failed {ATTEMPTS} times:\n" + "\n".join(failures))
