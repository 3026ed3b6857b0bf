"""The `casemesh` client's abuse-report commands:

    casemesh --as alice reasons
    casemesh --as alice report --type video --url https://www.casemesh.video/@bob/video/7731 \\
        --reason violence_terrorism/terrorism --explanation "…" --evidence evidence/… \\
        --email alice@example.com --good-faith
    casemesh --as alice reports | report-show reports/…
    casemesh --as li --role agent queue [--lane child_safety] | report-case report-cases/…
    casemesh --as li --role agent decide-case report-cases/… --outcome action_taken \\
        --statement statement.json --uploader bob --uploader-email bob@example.com
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from casemesh.v1 import reports_pb2 as rpb
from casemesh.v1 import reports_pb2_grpc as rpb_grpc
from casemesh_cli.appeals import add_uploader_arguments, uploader
from casemesh_cli.output import each, emit, emit_pages, hanging
from casemesh_cli.paging import PAGE_SIZE, pages
from casemesh_cli.parsing import (
    BadInput,
    add_etag_argument,
    add_filing_arguments,
    add_limit_argument,
    add_request_id_argument,
    command,
    evidence_refs,
    filing_contact,
    request_id,
    resource,
)

COMMANDS = ("reasons", "report", "reports", "report-show", "queue", "report-case", "decide-case")
TARGETS = ("video", "comment", "account", "live_stream", "ad")


def add_commands(sub: Any) -> None:
    command(sub, "reasons", "list the reasons a report can give", "casemesh --as alice reasons")
    r = command(
        sub,
        "report",
        "report a video, comment, account, live stream or ad",
        "casemesh --as alice report --url https://www.casemesh.video/@someone/video/7731 \\",
        '    --reason violence_terrorism/terrorism --explanation "视频宣扬恐怖组织" \\',
        "    --evidence evidence/9b1e… --email alice@example.com --good-faith",
    )
    r.add_argument("--type", choices=TARGETS, default="video", help="what is reported")
    r.add_argument("--id", default="", help="the item's id (or give --url)")
    r.add_argument("--url", default="", help="the item's address (or give --id)")
    r.add_argument("--reason", required=True, help="category/subcategory, e.g. harassment/bullying")
    r.add_argument("--explanation", required=True, help="what is wrong with it, in your words")
    r.add_argument(
        "--good-faith",
        action="store_true",
        required=True,
        help="required: you state that you believe in good faith the report is accurate"
        " and complete (DSA Art. 16(2)(d))",
    )
    add_filing_arguments(r, "news of the report")
    ls = command(
        sub,
        "reports",
        "list my reports (agents: a case's, with --case)",
        "casemesh --as alice reports",
        "casemesh --as li --role agent reports --case report-cases/…",
    )
    ls.add_argument("--case", default="", help="agents: the reports of this report-cases/…")
    add_limit_argument(ls)
    command(
        sub,
        "report-show",
        "show a report and its outcome",
        "casemesh --as alice report-show reports/…",
    ).add_argument("report", help="reports/{id}, or just the id")
    q = command(
        sub,
        "queue",
        "agents: open report cases in triage order",
        "casemesh --as li --role agent queue --lane child_safety",
    )
    q.add_argument("--lane", choices=["child_safety", "ordinary"], help="only this lane")
    q.add_argument("--category", default="", help="only this reason category, e.g. harassment")
    command(
        sub,
        "report-case",
        "agents: show a report case, its reports and its decision",
        "casemesh --as li --role agent report-case report-cases/…",
    ).add_argument("case", help="report-cases/{id}, or just the id")
    d = command(
        sub,
        "decide-case",
        "agents: decide an OPEN or IN_REVIEW report case with a statement of reasons",
        "casemesh --as li --role agent decide-case report-cases/… --outcome action_taken \\",
        "    --statement statement.json --uploader bob --uploader-email bob@example.com",
        "casemesh --as li --role agent decide-case report-cases/… --outcome no_violation \\",
        '    --facts "an ordinary dance video" --unfounded reports/…',
        "",
        "statement.json is a casemesh.v1.DecisionStatement in the proto's JSON form, e.g.",
        '  {"decisionGround": "DECISION_GROUND_INCOMPATIBLE_CONTENT",',
        '   "incompatibleContentGround": "Community guidelines §3.2",',
        '   "incompatibleContentExplanation": "The video glorifies an attack.",',
        '   "contentType": ["CONTENT_TYPE_VIDEO"], "applicationDate": "2026-12-03",',
        '   "decisionFacts": "…", "automatedDecision": "AUTOMATED_DECISION_NOT_AUTOMATED",',
        '   "restrictions": {"visibility": ["DECISION_VISIBILITY_CONTENT_REMOVED"]}}',
    )
    d.add_argument("case", help="report-cases/{id}, or just the id")
    d.add_argument(
        "--outcome",
        required=True,
        choices=["action_taken", "no_violation"],
        help="action_taken: restrict the content (every required statement field); "
        "no_violation: restrict nothing (the statement's facts suffice)",
    )
    d.add_argument(
        "--statement",
        type=Path,
        metavar="FILE",
        help="the statement of reasons, a DecisionStatement as JSON ('-': stdin)",
    )
    d.add_argument("--facts", default="", help="the statement's decisionFacts (over the file's)")
    d.add_argument(
        "--unfounded",
        action="append",
        default=[],
        metavar="REPORT",
        help="no_violation: a reports/… judged manifestly unfounded (repeatable)",
    )
    add_etag_argument(d, "`report-case … --json`")
    add_request_id_argument(d)
    add_uploader_arguments(d)


def _enum(enum: Any, prefix: str, value: int) -> str:
    return str(enum.Name(value)).removeprefix(prefix)


def show_report(r: rpb.Report) -> None:
    target = _enum(rpb.TargetType, "TARGET_TYPE_", r.target.type)
    print(f"{r.name}  [{_enum(rpb.ReportState, 'REPORT_STATE_', r.state)}]  {target} {r.target.id}")
    print(f"  reason: {r.reason.category}/{r.reason.subcategory}   case: {r.report_case}")
    if r.explanation:
        print(f"  explanation: {hanging(r.explanation)}")
    if r.evidence:
        print(f"  evidence: {', '.join(e.name for e in r.evidence)}")
    if r.HasField("outcome"):
        o = r.outcome
        restricted = ", ".join(o.restrictions) or "no violation"
        print(f"  outcome: {restricted}  — {hanging(o.decision_facts)}")
        if o.manifestly_unfounded:
            print("  judged manifestly unfounded")
        if o.reversed:
            print("  reversed on appeal")
        print(f"  appeal by {o.appeal_deadline.ToDatetime():%Y-%m-%d}")
        if o.redress:
            print(f"  redress: {hanging(o.redress)}")


def show_case(c: rpb.ReportCase) -> None:
    state = _enum(rpb.ReportCaseState, "REPORT_CASE_STATE_", c.state)
    lane = _enum(rpb.QueueLane, "QUEUE_LANE_", c.lane)
    target = _enum(rpb.TargetType, "TARGET_TYPE_", c.target.type)
    print(
        f"{c.name}  [{state}]  {lane:12} priority={c.priority:<7} {c.category:20} "
        f"{target} {c.target.id}  reporters={c.reporter_count}"
        + ("  trusted flagger" if c.trusted_flagger else "")
    )


def show_case_in_full(case: rpb.ReportCase) -> None:
    show_case(case)
    if case.assignee:
        print(f"  assignee: {case.assignee}")
    for report in case.reports:
        print(f"  {report}")
    if case.HasField("decision"):
        print(f"  decision: {hanging(case.decision.decision_facts)}")
    if case.HasField("affected_uploader"):
        named = case.affected_uploader
        legal_name = f" ({hanging(named.legal_name)})" if named.legal_name else ""
        print(f"  uploader: {named.user_id or '-'}{legal_name}")
    for appeal in case.appeals:
        print(f"  appealed: {appeal}")
    if case.void_reason:
        print(f"  void:     {hanging(case.void_reason)}")


def _report_line(r: rpb.Report) -> None:
    state = _enum(rpb.ReportState, "REPORT_STATE_", r.state)
    reason = f"{r.reason.category}/{r.reason.subcategory}"
    print(f"{r.name}  {state:13} {reason:36} {r.target.id}")


def _reason_line(reason: rpb.ReportReason) -> None:
    key = f"{reason.category}/{reason.subcategory}"
    print(f"{key:40} {reason.label_zh} / {reason.label_en}")


def statement(args: argparse.Namespace) -> rpb.DecisionStatement:
    """The statement of reasons from --statement (the proto's JSON form) and --facts."""
    s = rpb.DecisionStatement()
    if args.statement is not None:
        source = "stdin" if str(args.statement) == "-" else str(args.statement)
        try:
            text = sys.stdin.read() if source == "stdin" else args.statement.read_text()
        except OSError as err:
            raise BadInput(f"cannot read the statement {source}: {err.strerror}") from None
        except UnicodeDecodeError:
            raise BadInput(f"the statement {source} is not UTF-8 text") from None
        try:
            json_format.Parse(text, s)
        except json_format.ParseError as err:
            raise BadInput(f"the statement {source} is not a DecisionStatement: {err}") from None
    if args.facts:
        s.decision_facts = args.facts
    if s == rpb.DecisionStatement():
        raise BadInput("a decision needs a statement of reasons: give --statement FILE or --facts")
    return s


def _filed(args: argparse.Namespace) -> rpb.FileReportRequest:
    category, _, subcategory = args.reason.partition("/")
    report = rpb.Report(
        target=rpb.ReportTarget(
            type=rpb.TargetType.Value(f"TARGET_TYPE_{args.type.upper()}"), id=args.id, url=args.url
        ),
        reason=rpb.ReportReasonRef(category=category, subcategory=subcategory),
        explanation=args.explanation,
        evidence=evidence_refs(args),
        good_faith_statement=args.good_faith,
        contact=filing_contact(args),
        locale=args.locale,
    )
    return rpb.FileReportRequest(report=report, request_id=request_id(args))


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = rpb_grpc.ReportServiceStub(channel)

    def call(method: str, request: Any) -> Any:
        return getattr(stub, method)(request, metadata=metadata, timeout=10)

    c = args.command
    if c == "reasons":
        reasons = call("ListReportReasons", rpb.ListReportReasonsRequest())
        emit(args, reasons, each("reasons", _reason_line))
    elif c == "report":
        emit(args, call("FileReport", _filed(args)), show_report)
    elif c == "reports":
        listed = pages(
            lambda token: call(
                "ListReports",
                rpb.ListReportsRequest(
                    report_case=args.case, page_size=PAGE_SIZE, page_token=token
                ),
            )
        )
        emit_pages(args, listed, "reports", _report_line)
    elif c == "report-show":
        name = resource("reports", args.report)
        emit(args, call("GetReport", rpb.GetReportRequest(name=name)), show_report)
    elif c == "queue":
        lane = rpb.QueueLane.Value(f"QUEUE_LANE_{(args.lane or 'unspecified').upper()}")
        cases = pages(
            lambda token: call(
                "ListReportCases",
                rpb.ListReportCasesRequest(
                    lane=lane, category=args.category, page_size=PAGE_SIZE, page_token=token
                ),
            )
        )
        emit_pages(args, cases, "report_cases", show_case)
    elif c == "report-case":
        name = resource("report-cases", args.case)
        emit(args, call("GetReportCase", rpb.GetReportCaseRequest(name=name)), show_case_in_full)
    else:
        name = resource("report-cases", args.case)
        s = statement(args)
        etag = args.etag or call("GetReportCase", rpb.GetReportCaseRequest(name=name)).etag
        request = rpb.DecideReportCaseRequest(
            name=name,
            outcome=rpb.ReportDecisionOutcome.Value(
                f"REPORT_DECISION_OUTCOME_{args.outcome.upper()}"
            ),
            statement=s,
            affected_uploader=uploader(args),
            manifestly_unfounded_reports=[resource("reports", r) for r in args.unfounded],
            etag=etag,
            request_id=request_id(args),
        )
        emit(args, call("DecideReportCase", request), show_case_in_full)
