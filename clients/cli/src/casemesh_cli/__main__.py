"""`casemesh` (or `python -m casemesh_cli`): a small command-line client of the
gateway, for people.

    casemesh --as alice token                        # print a local token
    casemesh --as alice open --category account.login --subject "…" \\
        --description "…" --email a@example.com --phone +8613800138000
    casemesh --as alice list | show ID | history ID | comment ID "…" | cancel ID
    casemesh --as bob --role agent assign ID | request-info ID "…" | solve ID "…"
    casemesh --as alice upload FILE | evidence NAME --out FILE       (see .evidence)
    casemesh --as alice appeals | appeal NAME | decide-appeal NAME …  (see .appeals)
    casemesh --as alice reasons | report … | reports | report-show ID   (see .reports)
    casemesh --as li --role agent cases | next | renew NAME | release NAME   (see .queue)
    casemesh --as alice export --out FILE | erase PERSON (admins)    (see .privacy)

`--json` prints any result as the proto's JSON. Where the token comes from and
how the client connects (plaintext or TLS): :mod:`.connection`. Exit status: 0
done, 1 refused by the server, 2 bad usage or input (a TLS handshake that failed
too: --tls or --ca-file to fix), 3 gateway unreachable or unavailable, or a
download damaged on the way (worth retrying), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from casemesh.platform.grpcutil import field_violations
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from casemesh_cli import appeals, connection, evidence, privacy, queue, reports
from casemesh_cli.output import each, emit, emit_pages, hanging
from casemesh_cli.paging import PAGE_SIZE, pages, reasons
from casemesh_cli.parsing import (
    JSON_HELP,
    USAGE,
    BadInput,
    Parser,
    add_etag_argument,
    add_evidence_argument,
    add_filing_arguments,
    add_limit_argument,
    add_request_id_argument,
    command,
    evidence_refs,
    filing_contact,
    request_id,
    resource,
)

REFUSED, UNREACHABLE, INTERRUPTED = 1, 3, 130
# No answer came: the gateway (or a service behind it) could not be reached in time.
_NO_ANSWER = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# gRPC's words for a call that never left the client: no connection could be
# made (refused, no route, a failed TLS handshake) or the name did not resolve.
_NEVER_SENT = ("failed to connect to all addresses", "errors resolving", "DNS resolution failed")
# What a plaintext client is told by a server that wants TLS: the connection
# closed before a word.
_CLOSED_AT_ONCE = "Socket closed"
# Codes that say a change was refused as it stood, so was not made; any other
# (INTERNAL, UNKNOWN, no answer) leaves it unknown.
_REFUSALS = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNIMPLEMENTED,
)
STATUSES = ("new", "open", "pending", "on_hold", "solved", "closed", "cancelled")
PRIORITIES = ("low", "normal", "high", "urgent")

EPILOG = """\
examples:
  casemesh --as alice categories
  casemesh --as alice open --category account.login --subject "换了手机号无法登录" \\
      --description "旧号码已停用" --email alice@example.com
  casemesh --as alice --json list | python3 -m json.tool
  casemesh --as li --role agent solve tickets/4f0c… "已为您更换绑定手机号"
  casemesh --token-file ~/.casemesh/token --ca-file ca.pem --target gw.example.com:443 list

exit status: 0 done, 1 refused by the server, 2 bad usage or input
(a TLS handshake that failed too: check --tls and --ca-file), 3 gateway
unreachable or unavailable, or a download damaged on the way (worth
retrying), 130 interrupted.
`casemesh COMMAND --help` describes a command and shows an example."""


def _status(value: int) -> str:
    return pb.TicketStatus.Name(value).removeprefix("TICKET_STATUS_")  # type: ignore[arg-type]


def _evidence(refs: Any) -> str:
    return ", ".join(ref.name for ref in refs)


def show_ticket(t: pb.Ticket) -> None:
    channels = ",".join(pb.Channel.Name(c).removeprefix("CHANNEL_") for c in t.contact.channels)
    # Its version: a change that names it is refused once the ticket has changed.
    etag = f"  etag={t.etag}" if t.etag else ""
    priority = queue.priority_name(t.priority)
    print(f"{t.name}  [{_status(t.status)}]  {t.category}  priority={priority}{etag}")
    print(f"  subject:   {t.subject}")
    print(f"  requester: {t.requester}   assignee: {t.assignee or '-'}   locale: {t.locale}")
    print(f"  updates:   {channels}   created: {t.create_time.ToDatetime():%Y-%m-%d %H:%M:%S}")
    print(f"  email:     {t.contact.email or '-'}   phone: {t.contact.phone or '-'}")
    if t.evidence:
        print(f"  evidence:  {_evidence(t.evidence)}")
    if t.description:
        # Its own indented block: it may run to many lines, and none may pass
        # for one of the ticket's own (`  resolution: …`).
        print("  description:")
        print(f"    {hanging(t.description)}".rstrip())
    if t.resolution:
        print(f"  resolution: {hanging(t.resolution)}")
    if t.HasField("rating"):
        print(f"  rating:    {t.rating.score}/5 {hanging(t.rating.comment)}".rstrip())


def _ticket_line(t: pb.Ticket) -> None:
    print(f"{t.name}  {_status(t.status):9} {t.category:26} {t.subject}")


def _event_line(e: pb.TicketEvent) -> None:
    note = " (internal)" if e.internal else ""
    # Before the text, which may run to many lines (each after the first
    # indented, so that none passes for a step of its own).
    assigned = f"  → {e.assignee}" if e.assignee else ""
    rated = f"  {e.score}/5" if e.score else ""
    attached = f"  [{_evidence(e.evidence)}]" if e.evidence else ""
    step = (
        f"{e.sequence:3}  {e.time.ToDatetime():%Y-%m-%d %H:%M:%S}  {e.type:16} "
        f"{_status(e.status):9} {e.actor}{note}{assigned}{rated}{attached}  {hanging(e.text)}"
    )
    print(step.rstrip())  # a step without text (an assignment) ends with who holds it


def _category_line(cat: pb.TicketCategory) -> None:
    print(f"{cat.id:28} {cat.labels.get('zh-CN', '')} / {cat.labels.get('en', '')}")


# Ticket changes that take the ticket and one text: (command, argument, its help, optional).
_TICKET_TEXTS = (
    ("comment", "body", "add a comment the requester sees", False),
    ("note", "body", "agents: add an internal note the requester does not see", False),
    ("request-info", "message", "agents: ask the requester for information", False),
    ("hold", "reason", "agents: put a ticket on hold (waiting on a third party)", True),
    ("solve", "resolution", "agents: solve a ticket, telling the requester how", False),
    ("reopen", "reason", "reopen a solved ticket", True),
    ("cancel", "reason", "cancel a ticket that is no longer needed", True),
)


def _add_change_arguments(p: argparse.ArgumentParser) -> None:
    """What every change to a ticket but a rating takes: an etag and a request id."""
    add_etag_argument(p, "`show` prints it", "none: the change is made whatever changed")
    add_request_id_argument(p)


def _add_ticket_commands(sub: Any) -> None:
    command(sub, "token", "print a token for --as/--role", "casemesh --as li --role agent token")
    command(sub, "categories", "list ticket categories", "casemesh --as alice categories")
    o = command(
        sub,
        "open",
        "open a ticket",
        'casemesh --as alice open --category account.login --subject "换了手机号无法登录" \\',
        '    --description "旧号码已停用" --email alice@example.com --evidence evidence/9b1e…',
    )
    o.add_argument("--category", required=True, help="a category id (see `categories`)")
    o.add_argument("--subject", required=True, help="one line saying what is wrong")
    o.add_argument("--description", required=True, help="what happened, in detail")
    add_filing_arguments(o, "news of the ticket")
    ls = command(sub, "list", "list my tickets (agents: every ticket)", "casemesh --as alice list")
    ls.add_argument(
        "--status", action="append", default=[], choices=STATUSES, help="only these (repeatable)"
    )
    add_limit_argument(ls)
    for name, help in (
        ("show", "show a ticket"),
        ("history", "show every step of a ticket, in order"),
        ("close", "close a solved ticket"),
    ):
        c = command(sub, name, help, f"casemesh --as alice {name} tickets/4f0c…")
        c.add_argument("ticket", help="tickets/{id}, or just the id")
        if name == "close":
            _add_change_arguments(c)
    for name, arg, help, optional in _TICKET_TEXTS:
        c = command(sub, name, help, f'casemesh --as li --role agent {name} tickets/4f0c… "…"')
        c.add_argument("ticket", help="tickets/{id}, or just the id")
        c.add_argument(arg, nargs="?" if optional else None, default="", help=f"the {arg}")
        if name in ("comment", "note"):
            add_evidence_argument(c)
        _add_change_arguments(c)
    a = command(
        sub,
        "assign",
        "agents: take a ticket (or give it to --to)",
        "casemesh --as li --role agent assign tickets/4f0c… --to bob --priority urgent",
    )
    a.add_argument("ticket", help="tickets/{id}, or just the id")
    a.add_argument("--to", default="", help="the agent to give it to (default: yourself)")
    a.add_argument("--priority", choices=PRIORITIES, help="also set its priority (default: kept)")
    _add_change_arguments(a)
    r = command(
        sub, "rate", "rate a solved ticket", 'casemesh --as alice rate tickets/4f0c… 5 "很快"'
    )
    r.add_argument("ticket", help="tickets/{id}, or just the id")
    r.add_argument("score", type=int, choices=range(1, 6), metavar="SCORE", help="1 to 5")
    r.add_argument("comment", nargs="?", default="", help="what you thought of the help")
    add_request_id_argument(r)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="casemesh",
        # `assign --to` is not `--token` shortened: options are spelled out.
        allow_abbrev=False,
        description="Casemesh's command-line client: tickets, evidence, copyright cases, "
        "abuse reports, the agents' queue and people's data, through the gateway.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connection.add_arguments(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_ticket_commands(sub)
    evidence.add_commands(sub)
    appeals.add_commands(sub)
    reports.add_commands(sub)
    queue.add_commands(sub)
    privacy.add_commands(sub)
    for cmd in sub.choices.values():  # `casemesh show ID --token-file …`, as --json
        connection.add_token_arguments(cmd, after_command=True)
    return p


def _ticket_request(args: argparse.Namespace) -> tuple[str, Any]:
    """The TicketService method and request of a change to one ticket."""
    name = resource("tickets", args.ticket)
    c = args.command
    if c == "rate":  # the one change that takes no etag
        return "RateTicket", pb.RateTicketRequest(
            name=name, score=args.score, comment=args.comment, request_id=request_id(args)
        )
    if c in ("comment", "note"):
        return "AddComment", pb.AddCommentRequest(
            name=name,
            body=args.body,
            internal=c == "note",
            evidence=evidence_refs(args),
            etag=args.etag,
            request_id=request_id(args),
        )
    if c == "assign":
        priority = f"PRIORITY_{(args.priority or 'unspecified').upper()}"  # unspecified: kept
        return "AssignTicket", pb.AssignTicketRequest(
            name=name,
            assignee=args.to,
            priority=pb.Priority.Value(priority),
            etag=args.etag,
            request_id=request_id(args),
        )
    # Each: the method, its request, and the request's fields after `name`.
    changes: dict[str, tuple[str, Any, tuple[str, ...]]] = {
        "request-info": ("RequestInfo", pb.RequestInfoRequest, ("message",)),
        "hold": ("HoldTicket", pb.HoldTicketRequest, ("reason",)),
        "solve": ("SolveTicket", pb.SolveTicketRequest, ("resolution",)),
        "reopen": ("ReopenTicket", pb.ReopenTicketRequest, ("reason",)),
        "cancel": ("CancelTicket", pb.CancelTicketRequest, ("reason",)),
        "close": ("CloseTicket", pb.CloseTicketRequest, ()),
    }
    method, request, fields = changes[c]
    return method, request(
        name=name,
        etag=args.etag,
        request_id=request_id(args),
        **{f: getattr(args, f) for f in fields},
    )


def _open(args: argparse.Namespace) -> pb.CreateTicketRequest:
    ticket = pb.Ticket(
        category=args.category,
        subject=args.subject,
        description=args.description,
        locale=args.locale,
        contact=filing_contact(args),
        evidence=evidence_refs(args),
    )
    return pb.CreateTicketRequest(ticket=ticket, request_id=request_id(args))


def run(args: argparse.Namespace) -> None:
    if args.command == "token":
        token = connection.minted(args, ttl_seconds=12 * 3600)
        print(json.dumps({"token": token}) if args.json else token)
        return
    metadata = connection.metadata(args)
    with connection.channel(args) as channel:
        stub = pb_grpc.TicketServiceStub(channel)

        def call(method: str, request: Any) -> Any:
            return getattr(stub, method)(request, metadata=metadata, timeout=10)

        c = args.command
        for module in (evidence, appeals, reports, queue, privacy):
            if c in module.COMMANDS:
                module.run(channel, metadata, args)
                return
        if c == "categories":
            categories = call("ListTicketCategories", pb.ListTicketCategoriesRequest())
            emit(args, categories, each("categories", _category_line))
        elif c == "open":
            emit(args, call("CreateTicket", _open(args)), show_ticket)
        elif c == "list":
            statuses = [pb.TicketStatus.Value(f"TICKET_STATUS_{s.upper()}") for s in args.status]
            listed = pages(
                lambda token: call(
                    "ListTickets",
                    pb.ListTicketsRequest(statuses=statuses, page_size=PAGE_SIZE, page_token=token),
                )
            )
            emit_pages(args, listed, "tickets", _ticket_line)
        elif c == "show":
            name = resource("tickets", args.ticket)
            emit(args, call("GetTicket", pb.GetTicketRequest(name=name)), show_ticket)
        elif c == "history":
            name = resource("tickets", args.ticket)
            events = pages(
                lambda token: call(
                    "ListTicketEvents", pb.ListTicketEventsRequest(name=name, page_token=token)
                )
            )
            emit_pages(args, events, "events", _event_line)
        else:
            emit(args, call(*_ticket_request(args)), show_ticket)


def report_failure(
    err: grpc.RpcError, target: str, change: str = "", token_source: str = "", tls: bool = False
) -> int:
    """Say on stderr what the server (or the connection) said, and which exit
    status it is; for a change (its request id) that may have been made, how
    to retry it without making it twice; for a token refused, where it came
    from; for a connection that failed, whether plaintext or TLS was the
    mistake."""
    code, said = err.code(), err.details() or ""
    # Status details come from the gateway (with every refusal of its own or
    # of a service behind it), never from gRPC failing on this side.
    status = rpc_status.from_call(err)
    no_answer = code in _NO_ANSWER and not _gateway_deadline(code, status)
    handshake = _handshake_failure(said)
    print(f"error: {code.name}: {said}", file=sys.stderr)
    if code == grpc.StatusCode.UNAUTHENTICATED and token_source:
        print(f"  the token sent: {token_source}", file=sys.stderr)
    if handshake:
        print(f"  the TLS handshake with {target} failed: {handshake}", file=sys.stderr)
    elif no_answer and code == grpc.StatusCode.UNAVAILABLE and status is not None:
        print(
            f"  the gateway at {target} answered: it, or a service behind it, is"
            " unavailable for now; try again shortly",
            file=sys.stderr,
        )
    elif no_answer and code == grpc.StatusCode.UNAVAILABLE:
        print(
            f"  no answer from the gateway at {target}; is it running? (--target)", file=sys.stderr
        )
        if not tls and _CLOSED_AT_ONCE in said:
            print("  if it serves TLS, give --tls or --ca-file", file=sys.stderr)
    elif no_answer:
        print(f"  no answer in time from the gateway at {target}", file=sys.stderr)
    never_sent = any(words in said for words in _NEVER_SENT)
    if change and _maybe_made(code, status) and not never_sent:
        print(
            "  the change may have been made; to retry it safely, run the same command"
            f" with --request-id {change}",
            file=sys.stderr,
        )
    _print_details(status)
    if handshake:
        return USAGE
    return UNREACHABLE if no_answer else REFUSED


def _gateway_deadline(code: grpc.StatusCode, status: Any) -> bool:
    """A deadline the gateway keeps itself (an upload that paused or came too
    slowly: UPLOAD_PAUSED, UPLOAD_TOO_SLOW) comes with its reason: an answer,
    the server's refusal, not silence worth retrying as it was."""
    return code == grpc.StatusCode.DEADLINE_EXCEEDED and bool(reasons(status))


def _maybe_made(code: grpc.StatusCode, status: Any) -> bool:
    """Whether a change that failed with `code` may still have been made:
    unless it was refused as it stood, it may (a service that crashed after
    committing answers INTERNAL or UNKNOWN; a lost answer is no answer)."""
    return code not in _REFUSALS and not _gateway_deadline(code, status)


def _handshake_failure(said: str) -> str:
    """What to check when gRPC's words say the TLS handshake failed, else ''."""
    if "handshake failed" not in said.lower():
        return ""
    if "WRONG_VERSION_NUMBER" in said:
        return "it does not answer in TLS; without --tls and --ca-file the client uses plaintext"
    if "CERTIFICATE_VERIFY_FAILED" in said:
        return (
            "its certificate is signed by no CA the client trusts; give that CA with"
            " --ca-file (--tls trusts the system's roots only)"
        )
    return "check --tls and --ca-file, and the gateway's certificate"


def _print_details(status: Any) -> None:
    """The field violations, reasons and retry delay a status carries."""
    if status is None:
        return
    for field, description in field_violations(status):
        print(f"  {field}: {description}", file=sys.stderr)
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            extra = " ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
            print(f"  reason: {info.reason} {extra}".rstrip(), file=sys.stderr)
        retry = error_details_pb2.RetryInfo()
        if detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
            wait = retry.retry_delay.ToTimedelta().total_seconds()
            print(f"  try again in {wait:g} s", file=sys.stderr)


def check_text(args: argparse.Namespace) -> None:
    """Every text argument is text the gateway takes: a byte the terminal
    could not decode (a file in another encoding, given with `$(cat …)`) is
    named, not a traceback."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode()
                except UnicodeEncodeError:
                    flag = name.replace("_", "-")
                    raise BadInput(f"{flag}: not UTF-8 text (is it in another encoding?)") from None


def main(argv: list[str] | None = None) -> None:
    # Piped into `head` and the like: stop quietly when the reader goes away.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_text(args)
        run(args)
    except KeyboardInterrupt:
        change = getattr(args, "request_id", "") if "args" in locals() else ""
        if change:
            print(
                "\ninterrupted: the change may have been made; to retry it safely, run the"
                f" same command with --request-id {change}",
                file=sys.stderr,
            )
        sys.exit(INTERRUPTED)
    except BadInput as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        sys.exit(USAGE)
    except evidence.Damaged as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(UNREACHABLE)
    except grpc.RpcError as err:
        change, source = getattr(args, "request_id", ""), getattr(args, "token_source", "")
        tls = bool(args.tls or args.ca_file)
        sys.exit(report_failure(err, args.target, change, source, tls=tls))


if __name__ == "__main__":
    main()
