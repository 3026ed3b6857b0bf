"""`casemesh` (or `python -m casemesh_cli`): a small command-line client of the
gateway, for people.

    casemesh --as alice token                        # print a local token
    casemesh --as alice open --category account.login --subject "…" \\
        --description "…" --email a@example.com --phone +8613800138000
    casemesh --as alice list | show ID | history ID | comment ID "…" | cancel ID
    casemesh --as bob --role agent assign ID | request-info ID "…" | solve ID "…"
    casemesh --as alice reasons | report … | reports | report-show ID   (see .reports)
    casemesh --as li --role agent cases | next | release NAME          (see .queue)

The token comes from --token, else $CASEMESH_TOKEN, else it is minted for
--as/--role with the local secret ($CASEMESH_JWT_SECRET or .run/jwt-secret).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from casemesh.platform.grpcutil import field_violations
from casemesh.platform.identity import mint_token
from casemesh.v1 import appeals_pb2, appeals_pb2_grpc, evidence_pb2, evidence_pb2_grpc
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_cli import queue, reports


def _secret() -> str:
    secret = os.environ.get("CASEMESH_JWT_SECRET", "")
    if secret:
        return secret
    for folder in [Path.cwd(), *Path.cwd().parents]:
        candidate = folder / ".run" / "jwt-secret"
        if candidate.exists():
            return candidate.read_text().strip()
    sys.exit("no JWT secret: set CASEMESH_JWT_SECRET or run `./dev up` first (.run/jwt-secret)")


def _name(ticket: str) -> str:
    return ticket if ticket.startswith("tickets/") else f"tickets/{ticket}"


def _status(value: int) -> str:
    return pb.TicketStatus.Name(value).removeprefix("TICKET_STATUS_")  # type: ignore[arg-type]


def show_ticket(t: pb.Ticket) -> None:
    channels = ",".join(pb.Channel.Name(c).removeprefix("CHANNEL_") for c in t.contact.channels)
    print(f"{t.name}  [{_status(t.status)}]  {t.category}  priority={t.priority}")
    print(f"  subject:   {t.subject}")
    print(f"  requester: {t.requester}   assignee: {t.assignee or '-'}   locale: {t.locale}")
    print(f"  updates:   {channels}   created: {t.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}")
    if t.resolution:
        print(f"  resolution: {t.resolution}")
    if t.HasField("rating"):
        print(f"  rating:    {t.rating.score}/5 {t.rating.comment}")


def upload(channel: grpc.Channel, metadata: list[tuple[str, str]], path: Path) -> Any:
    def messages() -> Any:
        yield evidence_pb2.UploadEvidenceRequest(
            metadata=evidence_pb2.EvidenceMetadata(file_name=path.name)
        )
        with path.open("rb") as f:
            while chunk := f.read(512 * 1024):
                yield evidence_pb2.UploadEvidenceRequest(chunk=chunk)

    stub = evidence_pb2_grpc.EvidenceServiceStub(channel)
    return stub.UploadEvidence(messages(), metadata=metadata, timeout=900)


def show_appeals(
    channel: grpc.Channel, metadata: list[tuple[str, str]], command: str, appeal: str
) -> None:
    stub = appeals_pb2_grpc.AppealServiceStub(channel)
    name = appeal if appeal.startswith("appeals/") else f"appeals/{appeal}"

    def state(value: int) -> str:
        return appeals_pb2.AppealState.Name(value).removeprefix("APPEAL_STATE_")  # type: ignore[arg-type]

    def due(a: Any) -> str:
        return f"{a.ToDatetime():%Y-%m-%d}" if a.seconds else "-"

    if command == "appeals":
        for a in stub.ListAppeals(
            appeals_pb2.ListAppealsRequest(), metadata=metadata, timeout=10
        ).appeals:
            kind = appeals_pb2.AppealKind.Name(a.kind).removeprefix("APPEAL_KIND_")
            print(
                f"{a.name}  {state(a.state):22} {kind:16} next: {a.next_step or '-'} "
                f"by {due(a.next_step_due)}"
            )
    elif command == "appeal":
        a = stub.GetAppeal(appeals_pb2.GetAppealRequest(name=name), metadata=metadata, timeout=10)
        print(f"{a.name}  [{state(a.state)}]  {a.jurisdiction}  filed by {a.filer.user_id}")
        print(f"  next step: {a.next_step or '-'} by {due(a.next_step_due)}")
        if a.missing_elements:
            print(f"  missing:   {', '.join(a.missing_elements)}")
        if a.HasField("decision_reasons"):
            print(f"  reasons:   {a.decision_reasons.ground} — {a.decision_reasons.facts}")
    else:
        events = stub.ListAppealEvents(
            appeals_pb2.ListAppealEventsRequest(name=name), metadata=metadata, timeout=10
        ).events
        for e in events:
            print(
                f"{e.sequence:3}  {e.time.ToDatetime():%Y-%m-%d %H:%M:%S}  {e.type:20} "
                f"{state(e.state):22} {e.actor}  {e.text}"
            )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="casemesh", description="Casemesh command-line client")
    p.add_argument("--target", default=os.environ.get("CASEMESH_GATEWAY", "127.0.0.1:50051"))
    p.add_argument("--token", default=os.environ.get("CASEMESH_TOKEN", ""))
    p.add_argument("--as", dest="actor", default="alice", help="user id to act as")
    p.add_argument("--role", action="append", choices=["user", "agent", "admin"])
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("token", help="print a token for --as/--role")
    sub.add_parser("categories", help="list ticket categories")
    o = sub.add_parser("open", help="open a ticket")
    o.add_argument("--category", required=True)
    o.add_argument("--subject", required=True)
    o.add_argument("--description", required=True)
    o.add_argument("--locale", default="zh-CN", choices=["zh-CN", "en"])
    o.add_argument("--email", default="")
    o.add_argument("--phone", default="")
    o.add_argument("--request-id", default="")
    o.add_argument("--evidence", action="append", default=[], help="evidence/… (repeatable)")
    up = sub.add_parser("upload", help="upload a file as evidence and print its name")
    up.add_argument("path", type=Path)
    ls = sub.add_parser("list", help="list tickets")
    ls.add_argument("--status", action="append", default=[])
    for cmd in ("show", "history", "close"):
        sub.add_parser(cmd).add_argument("ticket")
    sub.add_parser("appeals", help="list copyright cases")
    for cmd in ("appeal", "appeal-history"):
        sub.add_parser(cmd, help="show a copyright case" if cmd == "appeal" else None).add_argument(
            "appeal"
        )
    for cmd, arg in (
        ("comment", "body"),
        ("note", "body"),
        ("request-info", "message"),
        ("hold", "reason"),
        ("solve", "resolution"),
        ("reopen", "reason"),
        ("cancel", "reason"),
    ):
        c = sub.add_parser(cmd)
        c.add_argument("ticket")
        c.add_argument(arg, nargs="?" if cmd in ("hold", "reopen", "cancel") else None, default="")
    a = sub.add_parser("assign", help="take a ticket (or give it to --to)")
    a.add_argument("ticket")
    a.add_argument("--to", default="")
    r = sub.add_parser("rate")
    r.add_argument("ticket")
    r.add_argument("score", type=int)
    r.add_argument("comment", nargs="?", default="")
    reports.add_commands(sub)
    queue.add_commands(sub)
    return p


def run(args: argparse.Namespace) -> None:
    roles = args.role or ["user"]
    if args.command == "token":
        print(mint_token(_secret(), args.actor, roles, ttl_seconds=12 * 3600))
        return
    token = args.token or mint_token(_secret(), args.actor, roles)
    metadata = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.TicketServiceStub(channel)

        def call(method: str, request: Any) -> Any:
            return getattr(stub, method)(request, metadata=metadata, timeout=10)

        c = args.command
        if c == "upload":
            evidence = upload(channel, metadata, args.path)
            print(f"{evidence.name}  {evidence.media_type}  {evidence.size_bytes} bytes")
            print(f"  sha256: {evidence.sha256}")
        elif c == "categories":
            for cat in call("ListTicketCategories", pb.ListTicketCategoriesRequest()).categories:
                print(f"{cat.id:28} {cat.labels.get('zh-CN', '')} / {cat.labels.get('en', '')}")
        elif c == "open":
            channels = ([pb.CHANNEL_EMAIL] if args.email else []) + (
                [pb.CHANNEL_SMS] if args.phone else []
            )
            ticket = pb.Ticket(
                category=args.category,
                subject=args.subject,
                description=args.description,
                locale=args.locale,
                contact=pb.Contact(email=args.email, phone=args.phone, channels=channels),
                evidence=[evidence_pb2.EvidenceRef(name=n) for n in args.evidence],
            )
            show_ticket(
                call(
                    "CreateTicket",
                    pb.CreateTicketRequest(
                        ticket=ticket, request_id=args.request_id or uuid.uuid4().hex
                    ),
                )
            )
        elif c == "list":
            statuses = [pb.TicketStatus.Value(f"TICKET_STATUS_{s.upper()}") for s in args.status]
            token_ = ""
            while True:
                page = call(
                    "ListTickets", pb.ListTicketsRequest(statuses=statuses, page_token=token_)
                )
                for t in page.tickets:
                    print(f"{t.name}  {_status(t.status):9} {t.category:26} {t.subject}")
                token_ = page.next_page_token
                if not token_:
                    break
        elif c in reports.COMMANDS:
            reports.run(channel, metadata, args)
        elif c in queue.COMMANDS:
            queue.run(channel, metadata, args)
        elif c in ("appeals", "appeal", "appeal-history"):
            show_appeals(channel, metadata, c, getattr(args, "appeal", ""))
        elif c == "show":
            show_ticket(call("GetTicket", pb.GetTicketRequest(name=_name(args.ticket))))
        elif c == "history":
            for e in call(
                "ListTicketEvents", pb.ListTicketEventsRequest(name=_name(args.ticket))
            ).events:
                note = " (internal)" if e.internal else ""
                print(
                    f"{e.sequence:3}  {e.time.ToDatetime():%Y-%m-%d %H:%M:%S}  {e.type:16} "
                    f"{_status(e.status):9} {e.actor}{note}  {e.text}"
                )
        else:
            name = _name(args.ticket)
            requests: dict[str, tuple[str, Any]] = {
                "comment": ("AddComment", lambda: pb.AddCommentRequest(name=name, body=args.body)),
                "note": (
                    "AddComment",
                    lambda: pb.AddCommentRequest(name=name, body=args.body, internal=True),
                ),
                "request-info": (
                    "RequestInfo",
                    lambda: pb.RequestInfoRequest(name=name, message=args.message),
                ),
                "hold": ("HoldTicket", lambda: pb.HoldTicketRequest(name=name, reason=args.reason)),
                "solve": (
                    "SolveTicket",
                    lambda: pb.SolveTicketRequest(name=name, resolution=args.resolution),
                ),
                "reopen": (
                    "ReopenTicket",
                    lambda: pb.ReopenTicketRequest(name=name, reason=args.reason),
                ),
                "close": ("CloseTicket", lambda: pb.CloseTicketRequest(name=name)),
                "cancel": (
                    "CancelTicket",
                    lambda: pb.CancelTicketRequest(name=name, reason=args.reason),
                ),
                "assign": (
                    "AssignTicket",
                    lambda: pb.AssignTicketRequest(name=name, assignee=args.to),
                ),
                "rate": (
                    "RateTicket",
                    lambda: pb.RateTicketRequest(name=name, score=args.score, comment=args.comment),
                ),
            }
            method, make = requests[c]
            show_ticket(call(method, make()))


def main() -> None:
    # Piped into `head` and the like: stop quietly when the reader goes away.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = build_parser().parse_args()
    try:
        run(args)
    except grpc.RpcError as err:
        code = err.code()
        print(f"error: {code.name}: {err.details()}", file=sys.stderr)
        status = rpc_status.from_call(err)
        if status is not None:
            for field, description in field_violations(status):
                print(f"  {field}: {description}", file=sys.stderr)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    extra = " ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
                    print(f"  {info.reason} {extra}".rstrip(), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
