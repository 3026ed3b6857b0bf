"""Prometheus metrics: each process serves its registry over HTTP at
`CASEMESH_METRICS_ADDR` (host:port; unset: no endpoint).

The metrics every process of a kind shares are defined here, once, with the
names the alert rules in `deploy/k8s/base/monitoring/prometheusrule.yaml` use:
gRPC servers (rate, errors, latency), relays and outbox publishers (lag) and
Kafka consumers (lag, records set aside). Services add their own (notifications, queue depth …).
"""

from __future__ import annotations

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from casemesh.platform.logging import get_logger
from casemesh.platform.settings import listen_address

log = get_logger(__name__)

_GRPC = ("grpc_service", "grpc_method", "grpc_type")

GRPC_STARTED = Counter(
    "grpc_server_started", "RPCs started on the server", _GRPC, registry=REGISTRY
)
GRPC_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by status code",
    (*_GRPC, "grpc_code"),
    registry=REGISTRY,
)
GRPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status",
    _GRPC,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)

RELAY_ACTIVE = Gauge(
    "casemesh_relay_active",
    "1 while this process holds the topic's relay lock and publishes; 0 on standby",
    ("topic",),
    registry=REGISTRY,
)
RELAY_LAG = Gauge(
    "casemesh_relay_lag_events",
    "Stored events not yet published to the topic (every relay of it reports the same)",
    ("topic",),
    registry=REGISTRY,
)
RELAY_PUBLISHED = Counter(
    "casemesh_relay_published_events",
    "Stored events this process published to the topic",
    ("topic",),
    registry=REGISTRY,
)
RELAY_FAILURES = Counter(
    "casemesh_relay_failures",
    "Times publishing to the topic stopped on a database or broker failure and was retried",
    ("topic",),
    registry=REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "casemesh_outbox_pending_events",
    "Outbox rows not yet published to the topic (every publisher of it reports the same)",
    ("topic",),
    registry=REGISTRY,
)
BACKGROUND_FAILURES = Counter(
    "casemesh_background_failures",
    "Times a background task failed and will try again: a follower of the event store (a read"
    " model, the deadline scheduler) reading the same events again, a periodic task (firing"
    " deadlines, purging, upkeep), or a deadline's command (the deadline stays due)",
    ("task",),
    registry=REGISTRY,
)
FOLLOWER_LAG = Gauge(
    "casemesh_follower_lag_events",
    "Stored events after a follower's tracked position (an upper bound: a rolled-back insert"
    " leaves a gap in the ids; NaN while the database cannot be read)",
    ("follower",),
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "casemesh_consumer_lag_records",
    "Records on a partition after the group's committed offset",
    ("group", "topic", "partition"),
    registry=REGISTRY,
)
CONSUMER_SET_ASIDE = Counter(
    "casemesh_consumer_set_aside",
    "Records a consumer committed without applying them, because they never can"
    " (reason: malformed_envelope, unknown_type, handler_error)",
    ("consumer", "topic", "reason"),
    registry=REGISTRY,
)


def grpc_labels(method: str, kind: str) -> tuple[str, str, str]:
    """(service, method, type) of a full method name `/pkg.Service/Method`."""
    service, _, name = method.strip("/").rpartition("/")
    return service, name, kind


def serve_metrics(addr: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Starts the metrics endpoint in a background thread (no-op when `addr` is empty)."""
    if not addr:
        return
    host, port = listen_address(addr)
    start_http_server(port, addr=host, registry=registry)
    log.info("metrics.serving", addr=addr)
