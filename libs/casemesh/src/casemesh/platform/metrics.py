"""Prometheus metrics: each process serves its registry over HTTP at
`CASEMESH_METRICS_ADDR` (host:port; unset: no endpoint)."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from casemesh.platform.logging import get_logger

log = get_logger(__name__)


def serve_metrics(addr: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Starts the metrics endpoint in a background thread (no-op when `addr` is empty)."""
    if not addr:
        return
    host, _, port = addr.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    log.info("metrics.serving", addr=addr)
