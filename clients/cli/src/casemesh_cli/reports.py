"""The `casemesh` client's abuse-report commands:

    casemesh --as alice reasons
    casemesh --as alice report --type video --url https://www.casemesh.video/@bob/video/7731 \\
        --reason violence_terrorism/terrorism --explanation "…" --evidence evidence/… \\
        --email alice@example.com
    casemesh --as alice reports | report-show reports/…
    casemesh --as li --role agent queue [--lane child_safety] | report-case report-cases/…
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import grpc

from casemesh.v1 import evidence_pb2
from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh.v1 import tickets_pb2 as pb

COMMANDS = ("reasons", "report", "reports", "report-show", "queue", "report-case")
TARGETS = ("video", "comment", "account", "live_stream", "ad")


def add_commands(sub: Any) -> None:
    sub.add_parser("reasons", help="list the reasons a report can give")
    r = sub.add_parser("report", help="report a video, comment, account, live stream or ad")
    r.add_argument("--type", choices=TARGETS, default="video")
    r.add_argument("--id", default="", help="the item's id (or give --url)")
    r.add_argument("--url", default="")
    r.add_argument("--reason", required=True, help="category/subcategory, e.g. harassment/bullying")
    r.add_argument("--explanation", required=True)
    r.add_argument("--evidence", action="append", default=[], help="evidence/… (repeatable)")
    r.add_argument("--locale", default="zh-CN", choices=["zh-CN", "en"])
    r.add_argument("--email", default="")
    r.add_argument("--phone", default="")
    r.add_argument("--request-id", default="")
    ls = sub.add_parser("reports", help="list my reports (agents: --case)")
    ls.add_argument("--case", default="")
    sub.add_parser("report-show", help="show a report and its outcome").add_argument("report")
    q = sub.add_parser("queue", help="agents: open report cases in triage order")
    q.add_argument("--lane", choices=["child_safety", "ordinary"])
    q.add_argument("--category", default="")
    sub.add_parser("report-case", help="show a report case").add_argument("case")


def _enum(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def show_report(r: rpb.Report) -> None:
    target = _enum(rpb.TargetType, "TARGET_TYPE_", r.target.type)
    print(f"{r.name}  [{_enum(rpb.ReportState, 'REPORT_STATE_', r.state)}]  {target} {r.target.id}")
    print(f"  reason: {r.reason.category}/{r.reason.subcategory}   case: {r.report_case}")
    if r.HasField("outcome"):
        o = r.outcome
        print(f"  outcome: {', '.join(o.restrictions) or 'no violation'}  — {o.decision_facts}")
        if o.manifestly_unfounded:
            print("  judged manifestly unfounded")
        print(f"  appeal by {o.appeal_deadline.ToDatetime():%Y-%m-%d}")


def show_case(c: rpb.ReportCase) -> None:
    state = _enum(rpb.ReportCaseState, "REPORT_CASE_STATE_", c.state)
    lane = _enum(rpb.QueueLane, "QUEUE_LANE_", c.lane)
    target = _enum(rpb.TargetType, "TARGET_TYPE_", c.target.type)
    print(
        f"{c.name}  [{state}]  {lane:12} priority={c.priority:<7} {c.category:20} "
        f"{target} {c.target.id}  reporters={c.reporter_count}"
        + ("  trusted flagger" if c.trusted_flagger else "")
    )


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = rpb_grpc.ReportServiceStub(channel)

    def call(method: str, request: Any) -> Any:
        return getattr(stub, method)(request, metadata=metadata, timeout=10)

    c = args.command
    if c == "reasons":
        for reason in call("ListReportReasons", rpb.ListReportReasonsRequest()).reasons:
            key = f"{reason.category}/{reason.subcategory}"
            print(f"{key:40} {reason.label_zh} / {reason.label_en}")
    elif c == "report":
        category, _, subcategory = args.reason.partition("/")
        channels = ([pb.CHANNEL_EMAIL] if args.email else []) + (
            [pb.CHANNEL_SMS] if args.phone else []
        )
        report = rpb.Report(
            target=rpb.ReportTarget(
                type=rpb.TargetType.Value(f"TARGET_TYPE_{args.type.upper()}"),
                id=args.id,
                url=args.url,
            ),
            reason=rpb.ReportReasonRef(category=category, subcategory=subcategory),
            explanation=args.explanation,
            evidence=[evidence_pb2.EvidenceRef(name=n) for n in args.evidence],
            good_faith_statement=True,
            contact=pb.Contact(email=args.email, phone=args.phone, channels=channels),
            locale=args.locale,
        )
        request_id = args.request_id or uuid.uuid4().hex
        show_report(call("FileReport", rpb.FileReportRequest(report=report, request_id=request_id)))
    elif c == "reports":
        token = ""
        while True:
            page = call(
                "ListReports", rpb.ListReportsRequest(report_case=args.case, page_token=token)
            )
            for r in page.reports:
                state = _enum(rpb.ReportState, "REPORT_STATE_", r.state)
                reason = f"{r.reason.category}/{r.reason.subcategory}"
                print(f"{r.name}  {state:13} {reason:36} {r.target.id}")
            token = page.next_page_token
            if not token:
                break
    elif c == "report-show":
        name = args.report if args.report.startswith("reports/") else f"reports/{args.report}"
        show_report(call("GetReport", rpb.GetReportRequest(name=name)))
    elif c == "queue":
        lane = rpb.QueueLane.Value(f"QUEUE_LANE_{(args.lane or 'unspecified').upper()}")
        for case in call(
            "ListReportCases",
            rpb.ListReportCasesRequest(lane=lane, category=args.category, page_size=100),
        ).report_cases:
            show_case(case)
    elif c == "report-case":
        name = args.case if args.case.startswith("report-cases/") else f"report-cases/{args.case}"
        case = call("GetReportCase", rpb.GetReportCaseRequest(name=name))
        show_case(case)
        for report in case.reports:
            print(f"  {report}")
        if case.HasField("decision"):
            print(f"  decision: {case.decision.decision_facts}")
