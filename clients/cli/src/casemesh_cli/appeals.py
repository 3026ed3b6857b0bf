"""The `casemesh` client's copyright-case commands:

    casemesh --as alice appeals | appeal appeals/… | appeal-history appeals/…
    casemesh --as li --role agent decide-appeal appeals/… --outcome uphold \\
        --ground "…" --facts "…" --uploader bob --uploader-email bob@example.com
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh_cli.output import emit, emit_pages, hanging
from casemesh_cli.paging import PAGE_SIZE, pages
from casemesh_cli.parsing import (
    add_etag_argument,
    add_limit_argument,
    add_request_id_argument,
    command,
    contact,
    request_id,
    resource,
)

COMMANDS = ("appeals", "appeal", "appeal-history", "decide-appeal")


def add_uploader_arguments(p: argparse.ArgumentParser) -> None:
    """The affected uploader a decision names (they are sent the statement)."""
    p.add_argument("--uploader", default="", metavar="USER_ID", help="the uploader's user id")
    p.add_argument("--uploader-name", default="", help="the uploader's legal name")
    p.add_argument("--uploader-email", default="", help="where the uploader is sent the statement")
    p.add_argument("--uploader-phone", default="", help="the uploader's phone, for an SMS")
    p.add_argument(
        "--uploader-locale",
        choices=["zh-CN", "en"],
        help="the language the uploader is written to in (default: zh-CN)",
    )


def uploader(args: argparse.Namespace) -> apb.Party | None:
    """The uploader named by any --uploader… option (none given: no uploader)."""
    given = (args.uploader, args.uploader_name, args.uploader_email, args.uploader_phone)
    if not any(given) and args.uploader_locale is None:  # its default is no uploader's
        return None
    return apb.Party(
        user_id=args.uploader,
        legal_name=args.uploader_name,
        locale=args.uploader_locale or "zh-CN",
        contact=contact(args.uploader_email, args.uploader_phone),
    )


def add_commands(sub: Any) -> None:
    add_limit_argument(
        command(
            sub,
            "appeals",
            "list copyright cases (agents: every case)",
            "casemesh --as alice appeals",
        )
    )
    for name, help in (
        ("appeal", "show a copyright case: state, missing elements, next step, reasons"),
        ("appeal-history", "show every step of a copyright case, in order"),
    ):
        command(sub, name, help, f"casemesh --as alice {name} appeals/6d2a…").add_argument(
            "appeal", help="appeals/{id}, or just the id"
        )
    d = command(
        sub,
        "decide-appeal",
        "agents: decide a copyright case (SUBMITTED or UNDER_REVIEW) with a statement of reasons",
        "casemesh --as li --role agent decide-appeal appeals/6d2a… --outcome uphold \\",
        '    --ground "《信息网络传播权保护条例》第十四条" --facts "画面与原创视频一致" \\',
        "    --uploader bob --uploader-email bob@example.com",
        "casemesh --as li --role agent decide-appeal appeals/6d2a… --outcome reject \\",
        '    --ground "Terms §4.2" --facts "the work was not shown to be the claimant\'s"',
    )
    d.add_argument("appeal", help="appeals/{id}, or just the id")
    d.add_argument(
        "--outcome",
        required=True,
        choices=["uphold", "reject"],
        help="uphold: grant the request (for a notice: action the content); reject: refuse it",
    )
    d.add_argument("--ground", required=True, help="the legal or contractual ground (≤ 500)")
    d.add_argument("--facts", required=True, help="the facts and circumstances relied on (≤ 5000)")
    d.add_argument(
        "--automated-detection", action="store_true", help="automated means found the content"
    )
    d.add_argument(
        "--automated-decision", action="store_true", help="automated means took the decision"
    )
    add_etag_argument(d, "`appeal … --json`")
    add_request_id_argument(d)
    add_uploader_arguments(d)


def _state(value: int) -> str:
    return apb.AppealState.Name(value).removeprefix("APPEAL_STATE_")  # type: ignore[arg-type]


def _due(a: Any) -> str:
    return f"{a.ToDatetime():%Y-%m-%d}" if a.seconds else "-"


def _kind(value: int) -> str:
    return apb.AppealKind.Name(value).removeprefix("APPEAL_KIND_")  # type: ignore[arg-type]


def show(a: apb.Appeal) -> None:
    print(
        f"{a.name}  [{_state(a.state)}]  {_kind(a.kind)}  {a.jurisdiction}"
        f"  filed by {a.filer.user_id}"
    )
    print(f"  next step: {a.next_step or '-'} by {_due(a.next_step_due)}")
    if a.appeal_of:
        print(f"  appeal of: {a.appeal_of}")
    if a.grounds:
        print(f"  grounds:   {hanging(a.grounds)}")
    if a.HasField("notice"):
        n = a.notice
        print(f"  work:      {hanging(n.work.title)}")
        if n.infringing_items:
            print(f"  items:     {', '.join(n.infringing_items)}")
    if a.HasField("counter_notice"):
        c = a.counter_notice
        items = list(c.removed_items) or [c.removed_item]
        print(f"  countered: {', '.join(i for i in items if i)} — {hanging(c.reason)}")
    if a.assignee:
        print(f"  assignee:  {a.assignee}")
    if a.missing_elements:
        print(f"  missing:   {', '.join(a.missing_elements)}")
    if a.HasField("decision_reasons"):
        reasons = a.decision_reasons
        print(f"  reasons:   {hanging(reasons.ground)} — {hanging(reasons.facts)}")


def _line(a: apb.Appeal) -> None:
    print(
        f"{a.name}  {_state(a.state):22} {_kind(a.kind):16} next: {a.next_step or '-'} "
        f"by {_due(a.next_step_due)}"
    )


def _event(e: apb.AppealEvent) -> None:
    print(
        f"{e.sequence:3}  {e.time.ToDatetime():%Y-%m-%d %H:%M:%S}  {e.type:20} "
        f"{_state(e.state):22} {e.actor}  {hanging(e.text)}"
    )


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = apb_grpc.AppealServiceStub(channel)

    def call(method: str, request: Any) -> Any:
        return getattr(stub, method)(request, metadata=metadata, timeout=10)

    c = args.command
    if c == "appeals":
        listed = pages(
            lambda token: call(
                "ListAppeals", apb.ListAppealsRequest(page_size=PAGE_SIZE, page_token=token)
            )
        )
        emit_pages(args, listed, "appeals", _line)
        return
    name = resource("appeals", args.appeal)
    if c == "appeal":
        emit(args, call("GetAppeal", apb.GetAppealRequest(name=name)), show)
    elif c == "appeal-history":
        # Every page: the service cuts one at 200 steps or 2 MiB of their text.
        events = pages(
            lambda token: call(
                "ListAppealEvents", apb.ListAppealEventsRequest(name=name, page_token=token)
            )
        )
        emit_pages(args, events, "events", _event)
    else:
        etag = args.etag or call("GetAppeal", apb.GetAppealRequest(name=name)).etag
        request = apb.DecideAppealRequest(
            name=name,
            outcome=apb.AppealOutcome.Value(f"APPEAL_OUTCOME_{args.outcome.upper()}"),
            reasons=apb.StatementOfReasons(
                ground=args.ground,
                facts=args.facts,
                automated_detection=args.automated_detection,
                automated_decision=args.automated_decision,
            ),
            affected_uploader=uploader(args),
            etag=etag,
            request_id=request_id(args),
        )
        emit(args, call("DecideAppeal", request), show)
