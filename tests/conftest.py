"""Session fixtures: a real PostgreSQL cluster and a real Kafka broker (KRaft),
started once for the whole run, and the Casemesh services as processes."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from casemesh import topics
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_devstack.stack import (
    APPEALS_DB,
    NOTIFIER_DB,
    QUEUE_DB,
    REPORTS_DB,
    TICKETS_DB,
    IdentityKeys,
    create_databases,
    service_specs,
)
from casemesh_devstack.supervisor import Supervisor
from tests.support import MailEndpoint, SmsEndpoint, wait_until

REPO = Path(__file__).resolve().parent.parent
TOPICS = list(topics.ALL)
PARTITIONS = 3


@dataclass
class Infra:
    pg: LocalPostgres
    kafka: LocalKafka
    root: Path


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    # Under /tmp and world-traversable: PostgreSQL runs as an unprivileged user.
    root = Path(tempfile.mkdtemp(prefix="casemesh-test-"))
    root.chmod(0o755)
    pg = LocalPostgres(root / "pg", free_port())
    kafka = LocalKafka(
        root / "kafka", free_port(), free_port(), REPO / ".run" / "cache" / "kafka-4.1.1"
    )
    try:
        pg.start()
        kafka.start()
        asyncio.run(kafka.create_topics(TOPICS, partitions=PARTITIONS, configs=topics.CONFIGS))
        yield Infra(pg, kafka, root)
    finally:
        kafka.stop()
        pg.stop()
        if not os.environ.get("CASEMESH_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)


@dataclass
class Stack:
    infra: Infra
    supervisor: Supervisor
    gateway: str
    # The gateway's HTTP port: http://host:port (Connect, gRPC-Web, the page).
    http: str
    secret: str
    mail: MailEndpoint
    sms: SmsEndpoint
    # Each process's Prometheus endpoint (http://host:port/metrics) by name.
    metrics: dict[str, str]
    # The inbound mail service's SMTP address (host, port).
    inbound: tuple[str, int]

    @property
    def reports_metrics(self) -> str:
        return self.metrics["reports"]

    @property
    def queue_metrics(self) -> str:
        return self.metrics["casequeue"]

    @property
    def tickets_dsn(self) -> str:
        return self.infra.pg.dsn(TICKETS_DB)

    @property
    def appeals_dsn(self) -> str:
        return self.infra.pg.dsn(APPEALS_DB)

    @property
    def queue_dsn(self) -> str:
        return self.infra.pg.dsn(QUEUE_DB)

    @property
    def reports_dsn(self) -> str:
        return self.infra.pg.dsn(REPORTS_DB)

    def clock_offset(self) -> float:
        """Seconds the services' clock runs ahead of the system's."""
        path = self.infra.root / "clock-offset"
        return float(path.read_text()) if path.exists() else 0.0

    def advance_clock(self, seconds: float) -> None:
        """Moves the appeals and reports services' clock forward (they read the offset file)."""
        path = self.infra.root / "clock-offset"
        path.write_text(str(self.clock_offset() + seconds))

    @property
    def evidence_dir(self) -> Path:
        return self.infra.root / "evidence"

    @property
    def notifier_dsn(self) -> str:
        return self.infra.pg.dsn(NOTIFIER_DB)


def wait_serving(target: str, timeout: float = 60.0) -> None:
    def serving() -> bool:
        try:
            with grpc.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False

    wait_until(serving, timeout=timeout, interval=0.3)


@pytest.fixture(scope="session")
def stack(infra: Infra) -> Iterator[Stack]:
    create_databases(infra.pg)
    mail = MailEndpoint(free_port())
    sms = SmsEndpoint(free_port())
    mail.start()
    sms.start()
    secret = secrets.token_urlsafe(32)
    identity_keys = IdentityKeys.new()  # the gateway's, fresh for each run
    tickets_addr = f"127.0.0.1:{free_port()}"
    evidence_addr = f"127.0.0.1:{free_port()}"
    appeals_addr = f"127.0.0.1:{free_port()}"
    reports_addr = f"127.0.0.1:{free_port()}"
    queue_addr = f"127.0.0.1:{free_port()}"
    help_addr = f"127.0.0.1:{free_port()}"
    privacy_addr = f"127.0.0.1:{free_port()}"
    notifier_addr = f"127.0.0.1:{free_port()}"
    inbound_port = free_port()
    gateway = f"127.0.0.1:{free_port()}"
    gateway_http = f"127.0.0.1:{free_port()}"
    metrics: dict[str, str] = {}

    def metrics_addr(name: str) -> str:
        addr = f"127.0.0.1:{free_port()}"
        metrics[name] = f"http://{addr}/metrics"
        return addr

    supervisor = Supervisor(infra.root / "logs")
    overrides = {
        # Tests run at any hour: no SMS quiet hours; quick retries.
        "notifier": {"CASEMESH_SMS_QUIET_HOURS": "", "CASEMESH_BACKOFF_BASE_SECONDS": "0.2"},
        "gateway": {
            # Room for the tests' bursts; test_rate_limit floods past it on purpose.
            "CASEMESH_RATE_LIMIT_PER_MINUTE": "600",
            "CASEMESH_RATE_LIMIT_BURST": "150",
            # The console may call the OpenID Connect provider that
            # tests/e2e/test_console_sign_in.py runs on this port.
            "CASEMESH_CONSOLE_CONNECT_ORIGINS": f"http://127.0.0.1:{free_port()}",
        },
        # Small enough that a test can go past it cheaply.
        "evidence": {"CASEMESH_MAX_IMAGE_BYTES": str(2 * 1024 * 1024)},
    }
    try:
        for spec in service_specs(
            infra.pg,
            infra.kafka,
            mail.address,
            sms.url,
            secret,
            identity_keys=identity_keys,
            tickets_addr=tickets_addr,
            evidence_addr=evidence_addr,
            appeals_addr=appeals_addr,
            reports_addr=reports_addr,
            queue_addr=queue_addr,
            help_addr=help_addr,
            privacy_addr=privacy_addr,
            notifier_addr=notifier_addr,
            inbound_addr=f"127.0.0.1:{inbound_port}",
            gateway_addr=gateway,
            gateway_http_addr=gateway_http,
            evidence_dir=infra.root / "evidence",
            clock_offset_file=infra.root / "clock-offset",
            metrics_addr=metrics_addr,
        ):
            supervisor.start(
                spec.name, spec.argv, {**os.environ, **spec.env, **overrides.get(spec.name, {})}
            )
        try:
            wait_serving(tickets_addr)
            wait_serving(evidence_addr)
            wait_serving(appeals_addr)
            wait_serving(reports_addr)
            wait_serving(queue_addr)
            wait_serving(help_addr)
            wait_serving(privacy_addr)
            wait_serving(notifier_addr)
            wait_serving(gateway)
            # Tests start from a consuming notifier and an active relay.
            for name, line in (
                ("notifier", "notifier.started"),
                ("tickets-relay", "relay.active"),
                ("reports-appeals", "reports_consumer.started"),
                ("casequeue", "queue_consumer.started"),
                ("inbound", "inbound.serving"),
            ):
                wait_until(lambda n=name, s=line: s in supervisor.log_path(n).read_text(), 60)
        except AssertionError:
            tails = {n: supervisor.log_path(n).read_text()[-3000:] for n in supervisor.names}
            raise AssertionError(f"the stack did not start; log tails: {tails}") from None
        yield Stack(
            infra,
            supervisor,
            gateway,
            f"http://{gateway_http}",
            secret,
            mail,
            sms,
            metrics,
            ("127.0.0.1", inbound_port),
        )
    finally:
        supervisor.stop_all()
        mail.stop()
        sms.stop()
