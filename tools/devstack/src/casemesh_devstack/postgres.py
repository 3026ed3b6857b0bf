"""A throwaway local PostgreSQL cluster (initdb + postgres) for development and tests.

The cluster lives entirely under one directory: ``data/`` (PGDATA), ``sock/``
(the unix socket), ``postgres.log``.  It listens on 127.0.0.1 only, trusts every
local connection and has one superuser, ``casemesh``.  PostgreSQL refuses to run
as root, so when we are root the server runs as an unprivileged ``casemesh``
system user instead.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import logging
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import errors, sql

from casemesh_devstack._proc import pid_alive, spawn, tail

log = logging.getLogger(__name__)

SERVICE_USER = "casemesh"
SUPERUSER = "casemesh"
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
# Unix socket paths are limited to 108 bytes including the file name.
_MAX_SOCKET_DIR_LEN = 90


class PostgresError(RuntimeError):
    """The local PostgreSQL cluster could not be set up, started or stopped."""


def find_bin_dir() -> Path:
    """Directory holding initdb/pg_ctl/postgres for the newest installed server."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        # pg_config may come from libpq-dev alone, without the server binaries.
        if out and (Path(out) / "pg_ctl").exists() and (Path(out) / "initdb").exists():
            return Path(out)
    candidates: list[tuple[int, Path]] = []
    for found in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(found)
        match = re.fullmatch(r"\d+", path.parent.name)
        if match and (path / "pg_ctl").exists():
            candidates.append((int(path.parent.name), path))
    if not candidates:
        raise PostgresError(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found; "
            "install them with `apt-get install postgresql`"
        )
    return max(candidates)[1]


def _ensure_service_user() -> pwd.struct_passwd:
    if subprocess.run(["id", SERVICE_USER], capture_output=True, check=False).returncode != 0:
        log.info("creating system user %s to run PostgreSQL (it refuses root)", SERVICE_USER)
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
            capture_output=True,
        )
    return pwd.getpwnam(SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor of path.

    Only x, never r: the service user must reach its directory, not list ours.
    """
    for ancestor in reversed(path.resolve().parents):
        mode = ancestor.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so user %s can reach %s", ancestor, SERVICE_USER, path)
            ancestor.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.lchown(path, uid, gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


class LocalPostgres:
    """One local PostgreSQL cluster rooted at ``root``, listening on 127.0.0.1:port."""

    def __init__(self, root: Path, port: int, *, durable: bool = False) -> None:
        self.root = Path(root).absolute()
        self.port = port
        # Throwaway clusters skip fsync (it only matters if the machine itself
        # crashes); a durable one flushes every commit, as production does.
        self.durable = durable
        self._bin: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- layout ---------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "postmaster.pid"

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # -- running commands -----------------------------------------------------

    def _bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = find_bin_dir()
        return self._bin

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", SERVICE_USER, "--", *argv]
        return argv

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = self._as_server_user([str(self._bin_dir() / tool), *args])
        # cwd=root: runuser keeps our cwd, which the service user may not be allowed to enter.
        proc = subprocess.run(
            argv,
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise PostgresError(
                f"{tool} {' '.join(args)} failed (exit {proc.returncode}):\n"
                f"{proc.stdout}{proc.stderr}\n{tail(self.log_path)}"
            )
        return proc

    # -- lifecycle ------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() != 0:
            return
        user = _ensure_service_user()
        _make_traversable(self.root)
        for path in (self.root, self.socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
        if self.log_path.exists():
            os.chown(self.log_path, user.pw_uid, user.pw_gid)
        # A data dir created earlier by another user (e.g. a non-root run) must change hands.
        if self.data_dir.exists() and self.data_dir.stat().st_uid != user.pw_uid:
            _chown_tree(self.data_dir, user.pw_uid, user.pw_gid)

    def _initdb(self) -> None:
        if self.data_dir.exists():
            # A half-written data dir from an interrupted initdb is useless.
            shutil.rmtree(self.data_dir)
        last_error: PostgresError | None = None
        for locale in ("C.UTF-8", "C"):
            try:
                self._run(
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    f"--username={SUPERUSER}",
                    "--encoding=UTF8",
                    f"--locale={locale}",
                    "--no-instructions",
                )
                log.info("initialised PostgreSQL cluster in %s (locale %s)", self.data_dir, locale)
                return
            except PostgresError as exc:
                last_error = exc
                shutil.rmtree(self.data_dir, ignore_errors=True)
        assert last_error is not None
        raise last_error

    def _write_config(self) -> None:
        socket_dir = str(self.socket_dir)
        if len(socket_dir) > _MAX_SOCKET_DIR_LEN:
            # Too long for a unix socket path; TCP alone is enough for us.
            socket_dir = ""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'" + socket_dir.replace("'", "''") + "'",
            "max_connections": "200",
            "fsync": "on" if self.durable else "off",
            "logging_collector": "off",
        }
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        (self.data_dir / "casemesh.conf").write_text(
            "# written by casemesh-dev on every start; edits are overwritten\n" + conf
        )
        main_conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'casemesh.conf'"
        text = main_conf.read_text()
        if include not in text:
            main_conf.write_text(text + "\n" + include + "\n")

    def _clear_stale_pid(self) -> None:
        """Deal with a postmaster.pid left behind by a run that was killed."""
        if not self.pid_file.exists():
            return
        pid = live_postmaster_pid(self.data_dir)
        if pid is not None:
            # A postmaster of an earlier run on this directory (started by hand, or by an
            # older casemesh-dev that could die without it): stop it so this start
            # applies the current settings and port.
            log.info("stopping leftover PostgreSQL (pid %d) on %s", pid, self.data_dir)
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", check=False)
            deadline = time.monotonic() + 30
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                raise PostgresError(f"leftover PostgreSQL pid {pid} on {self.data_dir} won't stop")
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        for lock in self.socket_dir.glob(".s.PGSQL.*"):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()

    def start(self) -> None:
        """Initialise (first use) and start the cluster; return once it accepts connections.

        The postmaster is our own child (not daemonized by pg_ctl), in its own
        session, and gets SIGINT (fast shutdown) from the kernel when we die, even
        by kill -9: a dead `casemesh-dev` never leaves it holding the port."""
        if self.is_running():
            return
        self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_config()
        self._clear_stale_pid()
        user = pwd.getpwnam(SERVICE_USER) if os.geteuid() == 0 else None
        with self.log_path.open("ab") as log_file:
            self._proc = spawn(
                [str(self._bin_dir() / "postgres"), "-D", str(self.data_dir)],
                death_signal=signal.SIGINT,
                user=user,
                # The service user may not be allowed to enter our cwd.
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("PostgreSQL ready on 127.0.0.1:%d", self.port)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise PostgresError(
                    f"PostgreSQL did not start on 127.0.0.1:{self.port} "
                    f"(exit {self._proc.returncode}):\n--- {self.log_path} ---\n"
                    f"{tail(self.log_path)}"
                )
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"PostgreSQL on port {self.port} does not accept connections: {exc}\n"
                        f"{tail(self.log_path)}"
                    ) from exc
                time.sleep(0.2)

    def create_database(self, name: str) -> None:
        """Create database ``name`` unless it already exists."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (name,)).fetchone():
                return
            # Someone else may create it between the check and here; that is fine too.
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Stop the cluster (fast shutdown: SIGINT); does nothing if it is not running."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("PostgreSQL did not stop within %d s; killing it", _STOP_TIMEOUT_S)
                # Immediate shutdown: the postmaster takes its backends along.
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.info("PostgreSQL on port %d stopped", self.port)

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _is_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() in {"postgres", "postmaster"}
    except OSError:
        return False


def live_postmaster_pid(data_dir: Path) -> int | None:
    """The pid of a running postmaster for data_dir, if there is one."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    if not (pid_alive(pid) and _is_postgres(pid)):
        return None
    # Line 2 is the data directory; a reused pid may belong to another cluster.
    if len(lines) > 1 and Path(lines[1]).resolve() != data_dir.resolve():
        return None
    return pid
