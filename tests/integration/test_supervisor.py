"""The local supervisor as a developer running `./dev up` meets it, with tiny
Python children: a crash is restarted with growing backoff, a stop is a
SIGTERM that a well-behaved process obeys in time, a process that ignores it
is killed after its grace period and that is said, and nothing outlives a
supervisor killed with -9 — PostgreSQL included."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from casemesh_devstack._proc import pid_alive
from casemesh_devstack.supervisor import Supervisor, grace_period
from tests.support import wait_until

PY = sys.executable
CRASH = [PY, "-c", "import sys; sys.exit(3)"]
# Says it is ready once its SIGTERM handler is in place; on SIGTERM writes its
# name to the file in $SEEN, tidies up briefly and exits 0.
OBEDIENT = [
    PY,
    "-c",
    textwrap.dedent(
        """
        import os, signal, sys, time
        def bye(*_):
            with open(os.environ["SEEN"], "a") as f:
                f.write(os.environ["WHO"] + "\\n")
            time.sleep(0.3)
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
        print("ready", flush=True)
        while True:
            time.sleep(1)
        """
    ),
]
STUBBORN = [
    PY,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)",
]
SLEEPER = [PY, "-c", "import time; print('ready', flush=True); time.sleep(600)"]


def notes(sup: Supervisor, name: str) -> list[str]:
    """The supervisor's own lines in a child's log."""
    return [line for line in sup.log_path(name).read_text().splitlines() if line.startswith("===")]


def ready(sup: Supervisor, name: str) -> bool:
    # The line the child printed, not the argv in the supervisor's start note.
    path = sup.log_path(name)
    return path.exists() and "ready" in path.read_text().splitlines()


def crashes_said(
    tmp_path: Path,
    argv: list[str],
    restarts: int,
    *,
    first_restart_delay: float,
    max_restart_delay: float = 30.0,
    stable_after: float = 60.0,
) -> list[str]:
    """What the supervisor said about the first `restarts` crashes of `argv`."""
    sup = Supervisor(
        tmp_path,
        restart=True,
        first_restart_delay=first_restart_delay,
        max_restart_delay=max_restart_delay,
        stable_after=stable_after,
    )
    try:
        sup.start("flaky", argv, {})
        wait_until(lambda: sup.restarts("flaky") >= restarts, timeout=60)
    finally:
        sup.stop_all()
    assert sum("starting flaky" in n for n in notes(sup, "flaky")) >= restarts
    return [n.split(" ", 2)[2] for n in notes(sup, "flaky") if "exited" in n][:restarts]


def test_a_crashed_process_is_restarted_with_growing_backoff(tmp_path: Path) -> None:
    said = crashes_said(tmp_path, CRASH, 4, first_restart_delay=0.1, max_restart_delay=0.4)
    assert said == [
        "flaky exited with code 3; restarting in 0.1 s (restart 1)",
        "flaky exited with code 3; restarting in 0.2 s (restart 2)",
        "flaky exited with code 3; restarting in 0.4 s (restart 3)",
        "flaky exited with code 3; restarting in 0.4 s (restart 4)",
    ]


def test_the_backoff_starts_over_once_a_process_stayed_up(tmp_path: Path) -> None:
    lives_a_second = [PY, "-c", "import sys, time; time.sleep(1); sys.exit(1)"]
    said = crashes_said(tmp_path, lives_a_second, 3, first_restart_delay=0.1, stable_after=0.5)
    # Each run lasted longer than stable_after, so each restart waits the first delay.
    assert said == [
        f"flaky exited with code 1; restarting in 0.1 s (restart {n})" for n in (1, 2, 3)
    ]


def test_a_process_stopped_or_killed_through_the_supervisor_stays_down(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, restart=True, first_restart_delay=0.1, max_restart_delay=0.1)
    try:
        for name in ("killed", "stopped"):
            sup.start(name, SLEEPER, {})
        wait_until(lambda: ready(sup, "killed") and ready(sup, "stopped"), timeout=30)
        sup.kill("killed")
        sup.stop("stopped")
        # A crashing neighbour shows the watcher went round many times meanwhile.
        sup.start("canary", CRASH, {})
        wait_until(lambda: sup.restarts("canary") >= 3, timeout=30)
        assert not sup.is_running("killed") and sup.restarts("killed") == 0
        assert not sup.is_running("stopped") and sup.restarts("stopped") == 0
        assert [name for name, _ in sup.exited()] == ["canary"] * sup.restarts("canary")
        sup.restart("stopped")  # brought back by hand
        wait_until(lambda: sup.is_running("stopped"), timeout=10)
    finally:
        sup.stop_all()


def test_stop_all_stops_each_rank_with_sigterm_and_kills_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = tmp_path / "sigterm-order"
    seen.touch()
    sup = Supervisor(tmp_path / "logs", restart=True)
    try:
        for name, rank in (("worker", 2), ("server", 1), ("front", 0), ("server-2", 1)):
            sup.start(name, OBEDIENT, {"SEEN": str(seen), "WHO": name}, stop_rank=rank)
        wait_until(lambda: all(ready(sup, n) for n in sup.names), timeout=30)
    finally:
        with caplog.at_level(logging.DEBUG, logger="casemesh_devstack.supervisor"):
            sup.stop_all()
    order = seen.read_text().split()
    assert order[0] == "front" and sorted(order[1:3]) == ["server", "server-2"]
    assert order[3] == "worker"
    assert [sup.returncode(n) for n in sup.names] == [0, 0, 0, 0]
    assert "SIGKILL" not in caplog.text and "killed" not in caplog.text
    assert all("stopped (code 0" in notes(sup, n)[-1] for n in sup.names)
    assert sum(sup.restarts(n) for n in sup.names) == 0


def test_a_process_that_ignores_sigterm_is_killed_after_its_grace_and_that_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sup = Supervisor(tmp_path, exit_margin=0.5)
    grace = {"CASEMESH_SHUTDOWN_DELAY_SECONDS": "0.2", "CASEMESH_SHUTDOWN_GRACE_SECONDS": "0.3"}
    try:
        sup.start("stubborn", STUBBORN, grace)
        wait_until(lambda: ready(sup, "stubborn"), timeout=30)
    finally:
        sup.stop_all()
    assert sup.returncode("stubborn") == -signal.SIGKILL
    said = "stubborn did not stop within 1 s of SIGTERM; sending SIGKILL"
    assert said in caplog.text
    assert notes(sup, "stubborn")[-1].endswith(said)
    assert "killed: stubborn" in caplog.text


def test_with_echo_each_line_shows_once_under_the_childs_name(tmp_path: Path) -> None:
    out = io.StringIO()
    talker = [PY, "-c", "print('one'); print('two', end='')"]
    sup = Supervisor(tmp_path, echo=True, out=out, restart=True, first_restart_delay=0.1)
    try:
        sup.start("talker", talker, {})
        wait_until(lambda: sup.restarts("talker") >= 2, timeout=30)
    finally:
        sup.stop_all()
    lines = out.getvalue().splitlines()
    runs = sum("starting talker" in n for n in notes(sup, "talker"))
    assert lines == ["[talker] one", "[talker] two"] * runs
    assert sup.log_path("talker").read_text().count("one\ntwo") == runs


def test_the_grace_period_is_the_services_drain_and_a_margin() -> None:
    drain = {"CASEMESH_SHUTDOWN_DELAY_SECONDS": "5", "CASEMESH_SHUTDOWN_GRACE_SECONDS": "20"}
    assert grace_period(drain) == 35
    assert grace_period({}) == 20  # the services' defaults: no delay, 10 s grace


# Run as its own process, killed with -9 by the test: a PostgreSQL cluster and
# supervised children, their pids printed as one JSON line.
_DOOMED = """
import json, sys, time
from pathlib import Path
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres, live_postmaster_pid
from casemesh_devstack.supervisor import Supervisor

root = Path(sys.argv[1])
pg = LocalPostgres(root / "pg", free_port())
pg.start()
sup = Supervisor(root / "logs", restart=True)
for name, argv in json.loads(sys.argv[2]).items():
    sup.start(name, argv, {})
for name in sup.names:  # each has its SIGTERM handler in place
    while "ready" not in sup.log_path(name).read_text().splitlines():
        time.sleep(0.1)
pids = {name: sup.pid(name) for name in sup.names}
print(json.dumps({"postgres": live_postmaster_pid(pg.data_dir), **pids}), flush=True)
sys.stdin.read()
"""


def test_nothing_outlives_a_supervisor_killed_with_9(tmp_path: Path) -> None:
    # Under /tmp-like permissions: PostgreSQL may run as an unprivileged user.
    tmp_path.chmod(0o755)
    children = {"sleeper": SLEEPER, "obedient": OBEDIENT}
    doomed = subprocess.Popen(
        [PY, "-c", _DOOMED, str(tmp_path), json.dumps(children)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SEEN": str(tmp_path / "seen"), "WHO": "obedient"},
    )
    try:
        assert doomed.stdout is not None
        pids: dict[str, int] = json.loads(doomed.stdout.readline())
        assert sorted(pids) == ["obedient", "postgres", "sleeper"]
        assert all(pid_alive(pid) for pid in pids.values())
    finally:
        doomed.kill()
        doomed.wait()
    wait_until(lambda: not any(pid_alive(pid) for pid in pids.values()), timeout=30)
    # It got SIGTERM (the kernel may send it once per thread of the dead supervisor).
    assert set((tmp_path / "seen").read_text().split()) == {"obedient"}
