"""The whole local Casemesh system: infrastructure, sinks and services, wired together.

``casemesh-dev up`` and ``casemesh-dev infra`` run from here in the foreground;
:func:`service_specs` is the single description of how each service process is
launched, shared with the test fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh import topics
from casemesh.platform.identity import new_signing_key, verify_key_of
from casemesh.platform.personal import create_schema
from casemesh.platform.personal.masterkeys import SETTING, new_master_key
from casemesh_devstack._proc import pid_alive
from casemesh_devstack.kafka import KAFKA_VERSION, LocalKafka, live_broker_pid
from casemesh_devstack.postgres import LocalPostgres, live_postmaster_pid
from casemesh_devstack.sinks import MailSink, SmsSink
from casemesh_devstack.supervisor import Supervisor

TICKETS_DB = "casemesh_tickets"
NOTIFIER_DB = "casemesh_notifier"
EVIDENCE_DB = "casemesh_evidence"
APPEALS_DB = "casemesh_appeals"
REPORTS_DB = "casemesh_reports"
QUEUE_DB = "casemesh_casequeue"
HELP_DB = "casemesh_helpcenter"
# The shared key database of personal data (casemesh.platform.personal).
KEYS_DB = "casemesh_keys"
DATABASES = (
    TICKETS_DB,
    NOTIFIER_DB,
    EVIDENCE_DB,
    APPEALS_DB,
    REPORTS_DB,
    QUEUE_DB,
    HELP_DB,
    KEYS_DB,
)
TICKETS_TOPIC = topics.TICKETS
NOTIFICATIONS_TOPIC = topics.NOTIFICATIONS
APPEALS_TOPIC = topics.APPEALS
REPORTS_TOPIC = topics.REPORTS
QUEUE_TOPIC = topics.CASEQUEUE
CODES_TOPIC = topics.VERIFICATION
HELP_TOPIC = topics.HELPCENTER
TOPICS = topics.ALL
TOPIC_PARTITIONS = 3

TICKETS_ADDR = "127.0.0.1:50061"
EVIDENCE_ADDR = "127.0.0.1:50062"
APPEALS_ADDR = "127.0.0.1:50063"
REPORTS_ADDR = "127.0.0.1:50064"
QUEUE_ADDR = "127.0.0.1:50065"
HELP_ADDR = "127.0.0.1:50066"
PRIVACY_ADDR = "127.0.0.1:50067"
NOTIFIER_ADDR = "127.0.0.1:50068"
GATEWAY_ADDR = "127.0.0.1:50051"
# The inbound mail service's SMTP port, and the domain of its reply addresses.
INBOUND_ADDR = "127.0.0.1:2526"
REPLY_DOMAIN = "reply.casemesh.local"
GATEWAY_HTTP_ADDR = "127.0.0.1:8080"
WEB_ROOT = "clients/web/selfservice/dist"
CONSOLE_ROOT = "clients/web/console/dist"
# The first process's Prometheus endpoint; the others follow in start order.
METRICS_PORT = 9460
_SINK_HOST = "127.0.0.1"
# Files that mark a directory as a casemesh-dev run dir (so `clean` never wipes anything else).
_RUN_DIR_MARKERS = ("pg", "kafka", "logs", "sinks", "cache", "jwt-secret")
# How long `up` waits for every gRPC server to answer before saying which do not.
_SERVING_TIMEOUT_S = 180.0
# How long the notifier is given to stop: it finishes the send in hand, which
# may take 250 s with its default timeouts (ten SMTP steps of 10 s, 120 s for
# the message, then 30 s to record the outcome); killed sooner, it would send
# that job again once the claim lapsed, as a possible repeat. The same as
# docker-compose.yml's stop_grace_period and the pod's termination grace
# (tests/unit/test_deploy_config.py holds them together).
NOTIFIER_STOP_GRACE_S = 270.0


@dataclass(frozen=True)
class IdentityKeys:
    """The key pair with which the gateway vouches for callers: it signs each
    call to a service with ``signing`` (private PEM); the services check it
    with ``verifying`` (public PEM)."""

    signing: str
    verifying: str

    @classmethod
    def of(cls, signing: str) -> IdentityKeys:
        return cls(signing, verify_key_of(signing))

    @classmethod
    def new(cls) -> IdentityKeys:
        return cls.of(new_signing_key())


@dataclass(frozen=True)
class ServiceSpec:
    """How to launch one service process: its name, argv and the variables it adds to
    the inherited environment; and the least time it is given to stop after
    SIGTERM, for one whose work in hand outlasts its drain (compose's
    ``stop_grace_period``; 0: its drain and exit margin alone)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    stop_grace: float = 0.0


def service_specs(
    pg: LocalPostgres,
    kafka: LocalKafka,
    mail: tuple[str, int],
    sms_url: str,
    jwt_secret: str,
    *,
    identity_keys: IdentityKeys,
    inbound_keys: IdentityKeys | None = None,
    tickets_addr: str = TICKETS_ADDR,
    evidence_addr: str = EVIDENCE_ADDR,
    appeals_addr: str = APPEALS_ADDR,
    reports_addr: str = REPORTS_ADDR,
    queue_addr: str = QUEUE_ADDR,
    help_addr: str = HELP_ADDR,
    privacy_addr: str = PRIVACY_ADDR,
    notifier_addr: str = NOTIFIER_ADDR,
    inbound_addr: str = INBOUND_ADDR,
    gateway_addr: str | None = None,
    gateway_http_addr: str | None = None,
    evidence_dir: Path | None = None,
    clock_offset_file: Path | None = None,
    metrics_addr: Callable[[str], str] | None = None,
    master_keys: str | None = None,
) -> list[ServiceSpec]:
    """The Casemesh service processes, in start order.

    ``gateway_addr`` defaults to ``$CASEMESH_GATEWAY_ADDR`` or 127.0.0.1:50051 and
    ``gateway_http_addr`` (Connect, gRPC-Web, the self-service page) to
    ``$CASEMESH_GATEWAY_HTTP_ADDR`` or 127.0.0.1:8080; tests pass free ports for
    both so they can run beside a developer's stack.
    ``metrics_addr(name)`` gives each process its Prometheus endpoint (default:
    127.0.0.1:9460 upwards, in start order).
    ``master_keys`` (``CASEMESH_MASTER_KEYS``) defaults to a fresh key: fine for
    a stack whose key database is as new as it is.
    """
    python = sys.executable
    gateway = gateway_addr or os.environ.get("CASEMESH_GATEWAY_ADDR") or GATEWAY_ADDR
    gateway_http = (
        gateway_http_addr or os.environ.get("CASEMESH_GATEWAY_HTTP_ADDR") or GATEWAY_HTTP_ADDR
    )
    # Unbuffered so a service's log lines show up as they happen, not at exit.
    common = {"PYTHONUNBUFFERED": "1"}
    tickets_db = pg.dsn(TICKETS_DB)
    # Tests move the clock of the services that keep time through this file.
    clock = {"CASEMESH_CLOCK_OFFSET_FILE": str(clock_offset_file)} if clock_offset_file else {}
    reports_db = pg.dsn(REPORTS_DB)
    # The services behind the gateway believe only calls it signed; the two
    # the inbound mail service calls also believe its own key (fresh per run
    # unless given: nothing outlives its tokens' minute).
    vouched = {"CASEMESH_INTERNAL_VERIFY_KEY": identity_keys.verifying}
    inbound_keys = inbound_keys or IdentityKeys.new()
    by_mail = {"CASEMESH_INBOUND_VERIFY_KEY": inbound_keys.verifying}
    # Who seals or reveals personal data: tickets, appeals and reports (serve and
    # relay), reports-appeals, the help centre, the notifier.
    personal = {
        "CASEMESH_MASTER_KEYS": master_keys or f"dev:{new_master_key()}",
        "CASEMESH_KEYS_DATABASE_URL": pg.dsn(KEYS_DB),
    }
    specs = [
        ServiceSpec(
            "tickets",
            [python, "-m", "casemesh_tickets", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": tickets_db,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": tickets_addr,
                "CASEMESH_SERVICE_NAME": "tickets",
                **personal,
                **vouched,
                **by_mail,
            },
        ),
        ServiceSpec(
            "tickets-relay",
            [python, "-m", "casemesh_tickets", "relay"],
            {
                **common,
                "CASEMESH_DATABASE_URL": tickets_db,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_SERVICE_NAME": "tickets-relay",
                **personal,
            },
        ),
        ServiceSpec(
            "notifier",
            [python, "-m", "casemesh_notifier"],
            {
                **common,
                "CASEMESH_DATABASE_URL": pg.dsn(NOTIFIER_DB),
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": notifier_addr,
                "CASEMESH_SMTP_HOST": mail[0],
                "CASEMESH_SMTP_PORT": str(mail[1]),
                "CASEMESH_SMS_URL": sms_url,
                # Ticket e-mails' Reply-To: the inbound service's addresses.
                "CASEMESH_REPLY_DOMAIN": REPLY_DOMAIN,
                "CASEMESH_REPLY_TOKEN_SECRET": reply_token_secret(jwt_secret),
                "CASEMESH_SERVICE_NAME": "notifier",
                **personal,
                **vouched,
                # A local stack is tried at any hour: no SMS quiet hours unless asked for.
                "CASEMESH_SMS_QUIET_HOURS": os.environ.get("CASEMESH_SMS_QUIET_HOURS", ""),
            },
            stop_grace=NOTIFIER_STOP_GRACE_S,
        ),
        ServiceSpec(
            "appeals",
            [python, "-m", "casemesh_appeals", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": pg.dsn(APPEALS_DB),
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": appeals_addr,
                "CASEMESH_SERVICE_NAME": "appeals",
                **personal,
                **vouched,
            },
        ),
        ServiceSpec(
            "appeals-relay",
            [python, "-m", "casemesh_appeals", "relay"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": pg.dsn(APPEALS_DB),
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_SERVICE_NAME": "appeals-relay",
                **personal,
            },
        ),
        ServiceSpec(
            "reports",
            [python, "-m", "casemesh_reports", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": reports_db,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": reports_addr,
                "CASEMESH_SERVICE_NAME": "reports",
                **personal,
                **vouched,
            },
        ),
        ServiceSpec(
            "reports-relay",
            [python, "-m", "casemesh_reports", "relay"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": reports_db,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_SERVICE_NAME": "reports-relay",
                **personal,
            },
        ),
        ServiceSpec(
            "reports-appeals",
            [python, "-m", "casemesh_reports", "consume"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": reports_db,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_SERVICE_NAME": "reports-appeals",
                **personal,
            },
        ),
        ServiceSpec(
            "casequeue",
            [python, "-m", "casemesh_casequeue", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_DATABASE_URL": pg.dsn(QUEUE_DB),
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": queue_addr,
                "CASEMESH_SERVICE_NAME": "casequeue",
                **vouched,
            },
        ),
        ServiceSpec(
            "helpcenter",
            [python, "-m", "casemesh_helpcenter", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_DATABASE_URL": pg.dsn(HELP_DB),
                "CASEMESH_GRPC_ADDR": help_addr,
                "CASEMESH_SERVICE_NAME": "helpcenter",
                **personal,
                # Nobody outside reads the changes here: sealed, as they should be.
                "CASEMESH_SEAL_PHONE_CHANGES": "true",
                **vouched,
            },
        ),
        ServiceSpec(
            "privacy",
            [python, "-m", "casemesh_privacy", "serve"],
            {
                **common,
                **clock,
                "CASEMESH_KEYS_DATABASE_URL": personal["CASEMESH_KEYS_DATABASE_URL"],
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": privacy_addr,
                "CASEMESH_SERVICE_NAME": "privacy",
                **vouched,
            },
        ),
        ServiceSpec(
            "evidence",
            [python, "-m", "casemesh_evidence"],
            {
                **common,
                "CASEMESH_DATABASE_URL": pg.dsn(EVIDENCE_DB),
                "CASEMESH_KAFKA_BOOTSTRAP": kafka.bootstrap,
                "CASEMESH_GRPC_ADDR": evidence_addr,
                "CASEMESH_EVIDENCE_DIR": str(evidence_dir or repo_root() / ".run" / "evidence"),
                "CASEMESH_SERVICE_NAME": "evidence",
                **clock,
                # A local stack deletes a file no case needs within seconds, not days.
                "CASEMESH_EVIDENCE_DELETION_GRACE_SECONDS": "15",
                "CASEMESH_EVIDENCE_PURGE_INTERVAL_SECONDS": "1",
                **vouched,
                **by_mail,
            },
        ),
        ServiceSpec(
            "gateway",
            [python, "-m", "casemesh_gateway"],
            {
                **common,
                "CASEMESH_GRPC_ADDR": gateway,
                "CASEMESH_HTTP_ADDR": gateway_http,
                # The self-service page (built by `just web`) and its
                # development sign-in; pages served elsewhere on this machine
                # may call the API too.
                "CASEMESH_WEB_ROOT": str(repo_root() / WEB_ROOT),
                "CASEMESH_CONSOLE_ROOT": str(repo_root() / CONSOLE_ROOT),
                "CASEMESH_DEV_SIGN_IN": "true",
                "CASEMESH_CORS_ORIGINS": "http://localhost:5173,http://127.0.0.1:5173",
                "CASEMESH_TICKETS_TARGET": tickets_addr,
                "CASEMESH_EVIDENCE_TARGET": evidence_addr,
                "CASEMESH_APPEALS_TARGET": appeals_addr,
                "CASEMESH_REPORTS_TARGET": reports_addr,
                "CASEMESH_CASEQUEUE_TARGET": queue_addr,
                "CASEMESH_HELPCENTER_TARGET": help_addr,
                "CASEMESH_PRIVACY_TARGET": privacy_addr,
                "CASEMESH_NOTIFIER_TARGET": notifier_addr,
                "CASEMESH_JWT_SECRET": jwt_secret,
                "CASEMESH_INTERNAL_SIGNING_KEY": identity_keys.signing,
                "CASEMESH_SERVICE_NAME": "gateway",
            },
        ),
        ServiceSpec(
            "inbound",
            [python, "-m", "casemesh_inbound"],
            {
                **common,
                "CASEMESH_SMTP_ADDR": inbound_addr,
                "CASEMESH_REPLY_DOMAIN": REPLY_DOMAIN,
                "CASEMESH_REPLY_TOKEN_SECRET": reply_token_secret(jwt_secret),
                "CASEMESH_TICKETS_TARGET": tickets_addr,
                "CASEMESH_EVIDENCE_TARGET": evidence_addr,
                # Its own key: it vouches for the requesters whose replies it
                # carries, to tickets and evidence only (docs/operations.md).
                "CASEMESH_INTERNAL_SIGNING_KEY": inbound_keys.signing,
                "CASEMESH_SERVICE_NAME": "inbound",
            },
        ),
    ]
    for index, spec in enumerate(specs):
        addr = metrics_addr(spec.name) if metrics_addr else f"127.0.0.1:{METRICS_PORT + index}"
        spec.env["CASEMESH_METRICS_ADDR"] = addr
    return specs


def reply_token_secret(jwt_secret: str) -> str:
    """The local stack's reply-address secret, derived from its JWT secret
    (one secret to keep in the run dir; tests make addresses with it)."""
    return hmac.new(jwt_secret.encode(), b"casemesh reply addresses", hashlib.sha256).hexdigest()


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding a justfile."""
    here = (start or Path.cwd()).absolute()
    for candidate in (here, *here.parents):
        if (candidate / "justfile").is_file():
            return candidate
    return here


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"casemesh-dev: {name}={raw!r} is not a port number") from None


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack keeps its files and which ports it uses."""

    run_dir: Path
    pg_port: int
    kafka_port: int
    kafka_controller_port: int
    smtp_port: int
    sms_port: int

    @classmethod
    def from_env(cls, run_dir: Path | None = None) -> StackConfig:
        kafka_port = _env_port("CASEMESH_DEV_KAFKA_PORT", 59092)
        return cls(
            run_dir=(run_dir or repo_root() / ".run").absolute(),
            pg_port=_env_port("CASEMESH_DEV_PG_PORT", 55432),
            kafka_port=kafka_port,
            kafka_controller_port=_env_port("CASEMESH_DEV_KAFKA_CONTROLLER_PORT", kafka_port + 1),
            smtp_port=_env_port("CASEMESH_DEV_SMTP_PORT", 2525),
            sms_port=_env_port("CASEMESH_DEV_SMS_PORT", 8025),
        )

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def sinks_dir(self) -> Path:
        return self.run_dir / "sinks"

    @property
    def jwt_secret_path(self) -> Path:
        return self.run_dir / "jwt-secret"

    @property
    def signing_key_path(self) -> Path:
        return self.run_dir / "internal-signing-key.pem"

    @property
    def master_keys_path(self) -> Path:
        return self.run_dir / "master-keys"

    @property
    def lock_path(self) -> Path:
        return self.run_dir / "casemesh-dev.pid"

    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.run_dir / "pg", self.pg_port)

    def kafka(self) -> LocalKafka:
        return LocalKafka(
            self.run_dir / "kafka",
            self.kafka_port,
            self.kafka_controller_port,
            self.run_dir / "cache" / f"kafka-{KAFKA_VERSION}",
        )


def jwt_secret(cfg: StackConfig) -> str:
    """``$CASEMESH_JWT_SECRET``, else the run dir's secret (created once, mode 600)."""
    from_env = os.environ.get("CASEMESH_JWT_SECRET")
    if from_env:
        return from_env
    path = cfg.jwt_secret_path
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")
    return secret


def identity_keys(cfg: StackConfig) -> IdentityKeys:
    """The gateway's signing key: ``$CASEMESH_INTERNAL_SIGNING_KEY``, else the
    run dir's (created once, mode 600); the services get its public half."""
    from_env = os.environ.get("CASEMESH_INTERNAL_SIGNING_KEY")
    path = cfg.signing_key_path
    if from_env or path.exists():
        where = "CASEMESH_INTERNAL_SIGNING_KEY" if from_env else str(path)
        try:
            return IdentityKeys.of(from_env or path.read_text())
        except ValueError as exc:
            raise SystemExit(f"casemesh-dev: {where}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = IdentityKeys.new()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keys.signing)
    return keys


def create_databases(pg: LocalPostgres) -> None:
    """Every service's database, and the key database's table (made by the
    operator, here the devstack: services have no DDL rights on it)."""
    for db in DATABASES:
        pg.create_database(db)
    create_schema(pg.dsn(KEYS_DB))


def master_keys(cfg: StackConfig) -> str:
    """``$CASEMESH_MASTER_KEYS``, else the run dir's (created once, mode 600):
    the key database outlives a run, and its keys need the same master key."""
    from_env = os.environ.get(SETTING)
    if from_env:
        return from_env
    path = cfg.master_keys_path
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = f"dev:{new_master_key()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keys + "\n")
    return keys


def start_infra(cfg: StackConfig, stack: contextlib.ExitStack) -> tuple[LocalPostgres, LocalKafka]:
    """Start Postgres and Kafka, create the databases and topics; ``stack`` stops them."""
    pg = cfg.postgres()
    stack.callback(pg.stop)
    pg.start()
    create_databases(pg)
    kafka = cfg.kafka()
    stack.callback(kafka.stop)
    kafka.start()
    asyncio.run(
        kafka.create_topics(list(TOPICS), partitions=TOPIC_PARTITIONS, configs=topics.CONFIGS)
    )
    return pg, kafka


# -- foreground commands -------------------------------------------------------


def _say(message: str) -> None:
    print(f"casemesh-dev: {message}", flush=True)


def _show(path: Path) -> str:
    """A path as short as possible for the endpoint summary."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


class _Stop(Exception):
    """Raised by our SIGTERM handler while starting up, to unwind and clean up."""


@contextlib.contextmanager
def _run_lock(cfg: StackConfig) -> Iterator[None]:
    """One foreground stack per run dir; the pid file also tells `clean` we are live."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        other = int(cfg.lock_path.read_text().strip())
    except (OSError, ValueError):
        other = -1
    if other != os.getpid() and pid_alive(other):
        raise SystemExit(
            f"casemesh-dev: another casemesh-dev (pid {other}) is running on {cfg.run_dir}"
        )
    cfg.lock_path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            cfg.lock_path.unlink()


def _stop_rank(spec: ServiceSpec) -> int:
    """Where a process comes in the Ctrl-C order, against the flow of a request:
    the gateway, then the servers behind it (the case queue and the notifier
    among them), then the relays that publish what the servers stored, then
    the consumers that act on it."""
    if spec.name in ("gateway", "inbound"):
        return 0
    if "CASEMESH_GRPC_ADDR" in spec.env:
        return 1
    return 2 if spec.name.endswith("-relay") else 3


def _serving(address: str) -> bool:
    try:
        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _wait_serving(servers: dict[str, str], log_dir: Path) -> None:
    """Return once every gRPC server answers its health check as SERVING, or, after
    a while, say which do not (the stack stays up; a crashed one is restarted)."""
    deadline = time.monotonic() + _SERVING_TIMEOUT_S
    waiting = dict(servers)
    while waiting and time.monotonic() < deadline:
        waiting = {name: addr for name, addr in waiting.items() if not _serving(addr)}
        if waiting:
            time.sleep(0.3)
    if waiting:
        _say(
            f"not answering after {_SERVING_TIMEOUT_S:.0f} s: {', '.join(waiting)}; "
            f"see {_show(log_dir)}/<service>.log"
        )


def _foreground(cfg: StackConfig, setup: Callable[[contextlib.ExitStack], None]) -> int:
    """Run ``setup``, then wait for Ctrl-C/SIGTERM, then undo everything in reverse order."""
    stop = threading.Event()

    def raise_stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop

    def set_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    stopping_since: list[float] = []

    def still_stopping(signum: int, frame: FrameType | None) -> None:
        # `uv run` forwards the terminal's Ctrl-C, so one keypress can arrive twice.
        if stopping_since and time.monotonic() - stopping_since[0] > 1.0:
            _say("still shutting down, please wait")

    old_term = signal.signal(signal.SIGTERM, raise_stop)
    old_int = signal.getsignal(signal.SIGINT)
    try:
        with _run_lock(cfg), contextlib.ExitStack() as stack:
            try:
                setup(stack)
                signal.signal(signal.SIGTERM, set_stop)
                signal.signal(signal.SIGINT, set_stop)
                stop.wait()
            except (KeyboardInterrupt, _Stop):
                pass
            finally:
                stopping_since.append(time.monotonic())
                signal.signal(signal.SIGTERM, still_stopping)
                signal.signal(signal.SIGINT, still_stopping)
                _say("stopping ...")
        _say(f"stopped in {time.monotonic() - stopping_since[0]:.1f} s")
        return 0
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def _infra_summary(cfg: StackConfig, pg: LocalPostgres, kafka: LocalKafka) -> list[str]:
    return [
        f"  PostgreSQL   {pg.dsn(TICKETS_DB)}",
        f"               {pg.dsn(NOTIFIER_DB)}",
        f"               {pg.dsn(EVIDENCE_DB)}",
        f"               {pg.dsn(APPEALS_DB)}",
        f"               {pg.dsn(REPORTS_DB)}",
        f"               {pg.dsn(QUEUE_DB)}",
        f"               {pg.dsn(HELP_DB)}",
        f"               {pg.dsn(KEYS_DB)} (personal data keys)",
        f"  Kafka        {kafka.bootstrap}   topics: {', '.join(TOPICS)}",
        f"  infra logs   {_show(pg.log_path)}, {_show(kafka.log_path)}",
    ]


def run_infra(cfg: StackConfig) -> int:
    """Postgres + Kafka + databases + topics, in the foreground until Ctrl-C."""

    def setup(stack: contextlib.ExitStack) -> None:
        pg, kafka = start_infra(cfg, stack)
        lines = [
            "",
            "Casemesh infrastructure is up (Ctrl-C stops it):",
            *_infra_summary(cfg, pg, kafka),
        ]
        print("\n".join([*lines, ""]), flush=True)

    return _foreground(cfg, setup)


def run_up(cfg: StackConfig) -> int:
    """The whole local system (infra, sinks, services) in the foreground until Ctrl-C."""

    def setup(stack: contextlib.ExitStack) -> None:
        began = time.monotonic()
        secret = jwt_secret(cfg)
        keys = identity_keys(cfg)
        pg, kafka = start_infra(cfg, stack)

        smtp_host = os.environ.get("CASEMESH_SMTP_HOST")
        if smtp_host:
            mail = (smtp_host, _env_port("CASEMESH_SMTP_PORT", 25))
            mail_where = f"external SMTP {mail[0]}:{mail[1]} (CASEMESH_SMTP_HOST)"
        else:
            mail_sink = MailSink(cfg.sinks_dir, cfg.smtp_port)
            stack.callback(mail_sink.stop)
            mail_sink.start()
            mail = mail_sink.address
            mail_where = (
                f"SMTP {mail[0]}:{mail[1]} -> {_show(mail_sink.log_path)} "
                f"(raw .eml in {_show(mail_sink.mail_dir)})"
            )
        sms_url = os.environ.get("CASEMESH_SMS_URL")
        if sms_url:
            sms_where = f"external {sms_url} (CASEMESH_SMS_URL)"
        else:
            sms_sink = SmsSink(cfg.sinks_dir, cfg.sms_port)
            stack.callback(sms_sink.stop)
            sms_sink.start()
            sms_url = sms_sink.url
            sms_where = f"{sms_url} -> {_show(sms_sink.log_path)}"

        # A crashed service is restarted with backoff, as Kubernetes would.
        supervisor = Supervisor(cfg.log_dir, echo=True, restart=True)
        stack.callback(supervisor.stop_all)
        specs = service_specs(
            pg, kafka, mail, sms_url, secret, identity_keys=keys, master_keys=master_keys(cfg)
        )
        for spec in specs:
            supervisor.start(
                spec.name,
                spec.argv,
                spec.env,
                stop_rank=_stop_rank(spec),
                stop_grace=spec.stop_grace,
            )
        _wait_serving(
            {s.name: s.env["CASEMESH_GRPC_ADDR"] for s in specs if "CASEMESH_GRPC_ADDR" in s.env},
            cfg.log_dir,
        )

        gateway = next(s for s in specs if s.name == "gateway").env["CASEMESH_GRPC_ADDR"]
        gateway_http = next(s for s in specs if s.name == "gateway").env["CASEMESH_HTTP_ADDR"]
        tickets = next(s for s in specs if s.name == "tickets").env["CASEMESH_GRPC_ADDR"]
        inbound = next(s for s in specs if s.name == "inbound").env["CASEMESH_SMTP_ADDR"]
        secret_hint = (
            "CASEMESH_JWT_SECRET from your environment"
            if os.environ.get("CASEMESH_JWT_SECRET")
            else _show(cfg.jwt_secret_path)
        )
        lines = [
            "",
            f"Casemesh is up after {time.monotonic() - began:.0f} s (Ctrl-C stops everything):",
            f"  gateway      {gateway} (gRPC, JWT required)",
            f"  web          http://{gateway_http}/ (the self-service page; Connect and"
            " gRPC-Web for every service)",
            f"  console      http://{gateway_http}/console/ (agents: sign in with any name)",
            f"  tickets      {tickets} (gRPC, internal)",
            f"  replies      SMTP {inbound} (reply+<ticket>.<token>@{REPLY_DOMAIN})",
            *_infra_summary(cfg, pg, kafka),
            f"  e-mail       {mail_where}",
            f"  SMS          {sms_where}",
            f"  service logs {_show(cfg.log_dir)}/<service>.log",
            "  metrics      "
            + ", ".join(
                f"{s.name} {s.env['CASEMESH_METRICS_ADDR'].rpartition(':')[2]}" for s in specs
            ),
            f"  try it       ./dev casemesh --as alice categories   (signed with {secret_hint})",
            "",
        ]
        print("\n".join(lines), flush=True)

    return _foreground(cfg, setup)


def run_clean(cfg: StackConfig) -> int:
    """Delete the run dir, refusing while anything of ours still runs from it."""
    run_dir = cfg.run_dir
    if not run_dir.exists():
        _say(f"nothing to clean ({_show(run_dir)} does not exist)")
        return 0
    if not any((run_dir / marker).exists() for marker in _RUN_DIR_MARKERS):
        _say(f"refusing: {run_dir} does not look like a casemesh-dev run dir")
        return 1
    live: list[str] = []
    pg_pid = live_postmaster_pid(run_dir / "pg" / "data")
    if pg_pid is not None:
        live.append(f"PostgreSQL (pid {pg_pid})")
    kafka_pid = live_broker_pid(run_dir / "kafka")
    if kafka_pid is not None:
        live.append(f"Kafka (pid {kafka_pid})")
    with contextlib.suppress(OSError, ValueError):
        dev_pid = int(cfg.lock_path.read_text().strip())
        if pid_alive(dev_pid):
            live.append(f"casemesh-dev (pid {dev_pid})")
    if live:
        _say(f"refusing to clean {_show(run_dir)}: still running: {', '.join(live)}")
        return 1
    shutil.rmtree(run_dir)
    _say(f"removed {_show(run_dir)}")
    return 0
