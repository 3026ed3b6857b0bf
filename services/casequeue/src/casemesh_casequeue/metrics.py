"""Queue figures for Prometheus, read from the queue at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from casemesh.platform.clock import Clock
from casemesh.platform.logging import get_logger
from casemesh.platform.pools import with_keepalives

log = get_logger(__name__)

QUERY = """
SELECT queue,
       count(*) FILTER (WHERE claimable AND holder = '') AS depth,
       count(*) FILTER (WHERE waiting) AS waiting,
       min(created_at) FILTER (WHERE claimable AND holder = '') AS oldest,
       count(*) FILTER (WHERE sla_state = 'WARNING') AS near_breach,
       count(*) FILTER (WHERE sla_state = 'BREACHED' AND claimable AND holder = '') AS breached
FROM queue_cases WHERE open GROUP BY queue
"""


class QueueCollector(Collector):
    def __init__(self, conninfo: str, clock: Clock, queues: list[str]) -> None:
        # A primary's figures, never a standby's.
        self.conninfo = with_keepalives(conninfo)
        self.clock = clock
        # Every queue the service levels name: an empty one shows 0, not nothing.
        self.queues = queues

    def collect(self) -> Iterator[Metric]:
        try:
            with psycopg.connect(self.conninfo, connect_timeout=3) as conn:
                rows = conn.execute(QUERY).fetchall()
                breaches = conn.execute(
                    "SELECT count(*) FROM queue_outbox WHERE ce_type LIKE '%.SlaBreached.v1'"
                ).fetchone()
        except psycopg.Error as exc:
            log.warning("metrics.queue_unavailable", error=repr(exc))
            return
        now = self.clock.now()
        families: dict[str, Any] = {
            "depth": GaugeMetricFamily(
                "casemesh_queue_depth", "Cases waiting for an agent", labels=["queue"]
            ),
            "waiting": GaugeMetricFamily(
                "casemesh_queue_waiting",
                "Open cases waiting on the requester or a third party",
                labels=["queue"],
            ),
            "oldest": GaugeMetricFamily(
                "casemesh_queue_oldest_case_age_seconds",
                "Age of the oldest case waiting for an agent",
                labels=["queue"],
            ),
            "near": GaugeMetricFamily(
                "casemesh_queue_near_breach",
                "Open cases within their SLA warning margin",
                labels=["queue"],
            ),
            "breached": GaugeMetricFamily(
                "casemesh_queue_breached",
                # Not those an agent holds or that wait on the requester: a
                # case stays BREACHED while open, and those need no one.
                "Cases past an SLA target waiting for an agent",
                labels=["queue"],
            ),
        }
        found = {row[0]: row for row in rows}
        for queue in sorted(set(self.queues) | set(found)):
            _, depth, waiting, oldest, near, breached = found.get(queue, (queue, 0, 0, None, 0, 0))
            families["depth"].add_metric([queue], depth)
            families["waiting"].add_metric([queue], waiting)
            families["oldest"].add_metric(
                [queue], (now - oldest).total_seconds() if oldest else 0.0
            )
            families["near"].add_metric([queue], near)
            families["breached"].add_metric([queue], breached)
        yield from families.values()
        yield CounterMetricFamily(
            "casemesh_queue_sla_breaches",
            "SLA breaches recorded (each case and clock once)",
            value=breaches[0] if breaches else 0,
        )
