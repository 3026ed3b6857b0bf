"""Every metric the alert rules and the dashboard use shows up on the metrics
endpoint of a running process, with the labels they select on; each kind of
process (gRPC server, relay, consumer) exposes its own."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import grpc
import urllib3
import yaml
from prometheus_client.parser import text_string_to_metric_families

from casemesh import topics
from casemesh.platform.identity import mint_token
from casemesh.v1 import (
    appeals_pb2,
    appeals_pb2_grpc,
    casequeue_pb2,
    casequeue_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    helpcenter_pb2,
    helpcenter_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
)
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import REPO, Stack
from tests.e2e.replicas import metric
from tests.support import Client, wait_until

MONITORING = REPO / "deploy" / "k8s" / "base" / "monitoring"
METRIC = re.compile(r"\b(?:casemesh|grpc_server|cnpg)_[a-z0-9_]+\b")
GRPC_PROCESSES = ("gateway", "tickets", "evidence", "appeals", "reports", "casequeue", "helpcenter")
RELAYS = ("tickets-relay", "appeals-relay", "reports-relay")
CONSUMERS = ("notifier", "casequeue", "reports-appeals")

Sample = tuple[str, dict[str, str], float]


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def scrape(url: str) -> tuple[list[Sample], set[str]]:
    """Every sample at an endpoint, and the names a query would use for each
    family declared there (also one without a sample yet)."""
    text = urllib3.request("GET", url, timeout=5).data.decode()
    samples: list[Sample] = []
    declared: set[str] = set()
    for family in text_string_to_metric_families(text):
        declared.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return samples, declared


# Metrics of other exporters an alert may use: CloudNativePG's (its pods are
# scraped by the casemesh-postgres PodMonitor; the local stack runs none).
OTHER_EXPORTERS = ("cnpg_",)


def names_in_rules(*, ours: bool = True) -> dict[str, set[str]]:
    """Alert name -> the metric names its expression uses (`ours`: only
    those of Casemesh processes)."""
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {
        r["alert"]: {
            name
            for name in METRIC.findall(r["expr"])
            if not (ours and name.startswith(OTHER_EXPORTERS))
        }
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    }


def names_in_dashboard() -> set[str]:
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.update(METRIC.findall(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads((MONITORING / "dashboard.json").read_text()))
    return found


def touch_every_service(stack: Stack) -> None:
    """One call to each service through the gateway, and one ticket (so a
    notification goes out)."""
    run = uuid.uuid4().hex[:6]
    user = Client(stack.gateway, stack.secret, f"metrics-{run}")
    agent = [("authorization", f"Bearer {mint_token(stack.secret, f'agent-{run}', ['agent'])}")]
    token = user.metadata
    email = f"metrics-{run}@example.com"
    user.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject="metrics",
                description="d",
                locale="en",
                contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=f"metrics-{run}",
        )
    )
    with grpc.insecure_channel(stack.gateway) as channel:
        appeals_pb2_grpc.AppealServiceStub(channel).ListAppeals(
            appeals_pb2.ListAppealsRequest(), metadata=token, timeout=10
        )
        reports_pb2_grpc.ReportServiceStub(channel).ListReportReasons(
            reports_pb2.ListReportReasonsRequest(), metadata=token, timeout=10
        )
        casequeue_pb2_grpc.CaseQueueServiceStub(channel).ListQueueCases(
            casequeue_pb2.ListQueueCasesRequest(), metadata=agent, timeout=10
        )
        helpcenter_pb2_grpc.HelpCenterServiceStub(channel).SearchArticles(
            helpcenter_pb2.SearchArticlesRequest(query="密码"), metadata=token, timeout=10
        )
        try:
            evidence_pb2_grpc.EvidenceServiceStub(channel).GetEvidence(
                evidence_pb2.GetEvidenceRequest(name=f"evidence/{uuid.uuid4()}"),
                metadata=token,
                timeout=10,
            )
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
    wait_until(lambda: stack.mail.to(email), timeout=60)


def test_every_metric_the_alerts_and_the_dashboard_use_is_exposed(stack: Stack) -> None:
    touch_every_service(stack)
    exposed: dict[str, list[Sample]] = {}
    declared: set[str] = set()

    def sampled() -> set[str]:
        return {s[0] for samples in exposed.values() for s in samples}

    def all_there() -> bool:
        exposed.clear()
        for name, url in stack.metrics.items():
            exposed[name], families = scrape(url)
            declared.update(families)
        # An alert's metrics have values to alert on; the dashboard may also
        # chart a family with nothing in it yet (no report decided, say).
        return (
            all(n in sampled() for alert in names_in_rules().values() for n in alert)
            and names_in_dashboard() <= declared
        )

    try:
        wait_until(all_there, timeout=30, interval=1.0)
    except AssertionError:
        missing = {
            alert: sorted(used - sampled())
            for alert, used in names_in_rules().items()
            if used - sampled()
        }
        raise AssertionError(
            f"alerts use metrics no process gives a value: {missing}; "
            f"dashboard: {sorted(names_in_dashboard() - declared)}"
        ) from None
    assert all(names_in_rules(ours=False).values()), "an alert that uses no metric"

    def has(process: str, name: str, **labels: str) -> bool:
        return any(s[0] == name and labels.items() <= s[1].items() for s in exposed[process])

    for process in GRPC_PROCESSES:
        assert has(process, "grpc_server_handled_total", grpc_type="unary"), process
        assert has(process, "grpc_server_handling_seconds_bucket", grpc_type="unary"), process
    assert has("tickets", "grpc_server_handled_total", grpc_method="CreateTicket", grpc_code="OK")
    # The status code a client saw, not just "it ended".
    assert has("evidence", "grpc_server_handled_total", grpc_code="NOT_FOUND")
    assert has("gateway", "grpc_server_handled_total", grpc_code="NOT_FOUND")
    for process, topic in zip(RELAYS, ("tickets", "appeals", "reports"), strict=True):
        assert has(process, "casemesh_relay_active", topic=f"casemesh.{topic}.v1"), process
    assert [s[2] for s in exposed["tickets-relay"] if s[0] == "casemesh_relay_active" and s[1]] == [
        1.0
    ], "the stack's one tickets relay is the active one"
    for process in CONSUMERS:
        assert has(process, "casemesh_consumer_lag_records", partition="0"), process
    # Each group an alert looks for by name (absent(): "none reports") is one
    # some process reports: else that alert would fire for ever.
    rules = (MONITORING / "prometheusrule.yaml").read_text()
    named = set(re.findall(r'absent\(casemesh_consumer_lag_records\{group="([^"]+)"\}\)', rules))
    assert named, "the rules name the groups they look for"

    def reported() -> bool:
        exposed.update({name: scrape(url)[0] for name, url in stack.metrics.items()})
        return all(
            any(has(process, "casemesh_consumer_lag_records", group=g) for process in exposed)
            for g in named
        )

    try:
        wait_until(reported, timeout=30, interval=1.0)
    except AssertionError:
        unreported = sorted(
            g
            for g in named
            if not any(has(p, "casemesh_consumer_lag_records", group=g) for p in exposed)
        )
        raise AssertionError(f"alerts wait for groups no process reports: {unreported}") from None
    for process, topic in (("notifier", "notifications"), ("casequeue", "casequeue")):
        assert has(process, "casemesh_outbox_pending_events", topic=f"casemesh.{topic}.v1")
    lags = [s[2] for s in exposed["tickets-relay"] if s[0] == "casemesh_relay_lag_events"]
    assert len(lags) == 1 and 0 <= lags[0] < 1000, lags
    # The notifier has handled every ticket event (it mailed ours): its group
    # is on all partitions of the tickets topic, none behind.
    tickets_lag = [
        s[2]
        for s in exposed["notifier"]
        if s[0] == "casemesh_consumer_lag_records" and s[1]["topic"] == topics.TICKETS
    ]
    assert len(tickets_lag) == 3 and all(v >= 0 for v in tickets_lag), tickets_lag

    def notifier_caught_up() -> bool:
        return (
            metric(stack.metrics["notifier"], "casemesh_consumer_lag_records")
            == 0  # every topic the notifier reads
        )

    wait_until(notifier_caught_up, timeout=45, interval=1.0)
    assert has("notifier", "casemesh_notifications_total", channel="EMAIL", outcome="delivered")
    assert has("notifier", "casemesh_notifications_parked", channel="SMS")


def test_each_alert_has_a_runbook_section() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    runbook = (REPO / "docs" / "operations.md").read_text()
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert re.search(rf"^#+ .*\b{r['alert']}\b", runbook, re.M), r["alert"]
