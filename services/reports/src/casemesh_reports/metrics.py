"""The transparency figures as Prometheus metrics, computed at each scrape
from the same read model (projected from the event log) as the RPC."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from casemesh.platform.logging import get_logger
from casemesh_reports.views import ReportsViewLike

log = get_logger(__name__)


class TransparencyCollector(Collector):
    def __init__(self, view: ReportsViewLike) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        try:
            f: dict[str, Any] = self.view.transparency(None, None)
        except Exception as exc:  # the database is away: say so, keep the endpoint up
            log.warning("metrics.transparency_unavailable", error=repr(exc))
            return
        received = CounterMetricFamily(
            "casemesh_reports_received",
            "Abuse reports received, per reason category and source",
            labels=["category", "source"],
        )
        for category, source, n in f["by_category"]:
            received.add_metric([category, source], n)
        yield received
        decisions = CounterMetricFamily(
            "casemesh_report_decisions",
            "Report cases decided, per restriction imposed (NO_VIOLATION for none)",
            labels=["restriction"],
        )
        for restriction, n in f["by_restriction"]:
            decisions.add_metric([restriction], n)
        yield decisions
        yield GaugeMetricFamily(
            "casemesh_report_decision_median_seconds",
            "Median time from a report to the decision of its case",
            value=f["median_seconds"],
        )
        for name, key, text in (
            ("casemesh_report_cases_decided", "decided", "Report cases decided"),
            ("casemesh_report_cases_void", "void", "Report cases closed as void"),
            ("casemesh_report_appeals", "appeals", "Appeals of report decisions"),
            ("casemesh_report_reversals", "reversals", "Report decisions reversed on appeal"),
            ("casemesh_reporters_suspended", "suspended", "Reporters suspended for misuse"),
        ):
            yield CounterMetricFamily(name, text, value=f[key])
