"""Notification figures for Prometheus: outcomes as they happen, and the jobs
parked or due read from the notifier's table at each scrape."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
from prometheus_client import REGISTRY, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from casemesh.platform.logging import get_logger
from casemesh.platform.pools import with_keepalives

log = get_logger(__name__)

CHANNELS = ("EMAIL", "SMS")

OUTCOMES = Counter(
    "casemesh_notifications",
    "Delivery attempts by channel and outcome (delivered, retried, parked), and jobs"
    " cancelled unsent by an erasure (cancelled) or because what they carried ran out"
    " before they could go (expired)",
    ("channel", "outcome"),
    registry=REGISTRY,
)

POSSIBLE_REPEATS = Counter(
    "casemesh_notifications_possible_repeats",
    "Deliveries of a job whose earlier attempt was in flight when its sender stopped",
    ("channel",),
    registry=REGISTRY,
)

QUERY = """
SELECT channel,
       count(*) FILTER (WHERE status = 'parked') AS parked,
       count(*) FILTER (WHERE status = 'pending' AND next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE status <> 'parked' AND outage_tries > 0) AS waiting
FROM notification_jobs WHERE status IN ('parked', 'pending', 'sending') GROUP BY channel
"""


class JobsCollector(Collector):
    def __init__(self, conninfo: str) -> None:
        # A primary's figures, never a standby's.
        self.conninfo = with_keepalives(conninfo)

    def collect(self) -> Iterator[Metric]:
        try:
            with psycopg.connect(self.conninfo, connect_timeout=3) as conn:
                rows = {r[0]: r[1:] for r in conn.execute(QUERY).fetchall()}
        except psycopg.Error as exc:
            log.warning("metrics.jobs_unavailable", error=repr(exc))
            return
        parked = GaugeMetricFamily(
            "casemesh_notifications_parked",
            "Jobs parked after their retry budget, waiting for a replay",
            labels=["channel"],
        )
        due = GaugeMetricFamily(
            "casemesh_notifications_due",
            "Jobs whose send time has come and that are not sent yet",
            labels=["channel"],
        )
        waiting = GaugeMetricFamily(
            "casemesh_notifications_waiting_for_provider",
            "Jobs whose last try found the relay or provider out of reach or refusing"
            " our login, redirecting or refusing our key (they wait, never parked)",
            labels=["channel"],
        )
        for channel in sorted({*CHANNELS, *rows}):
            p, d, w = rows.get(channel, (0, 0, 0))
            parked.add_metric([channel], p)
            due.add_metric([channel], d)
            waiting.add_metric([channel], w)
        yield parked
        yield due
        yield waiting
