"""How every `casemesh` subcommand is declared: a one-line help, the same text as
its description, and an example in its epilog (so `casemesh CMD --help` always
shows one); and the mistakes of input found before any call, which exit 2 like
argparse's own."""

from __future__ import annotations

import argparse
import math
import re
import uuid
from typing import Any, NoReturn

from casemesh.rules import leases
from casemesh.v1 import evidence_pb2
from casemesh.v1 import tickets_pb2 as pb

USAGE = 2
JSON_HELP = "print the result as the proto's JSON (camelCase names), for scripts"
# What argparse's errors may quote and must not: the value of --token, and
# anything shaped like a JWT (three base64url parts, the last empty for an
# unsigned one) wherever it was put by mistake (`--tokn eyJ… list`).
_TOKEN_VALUE = re.compile(r"(--token[= ])\S+")
_JWT = re.compile(r"(?<![\w.-])[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![\w.-])")
HIDDEN = "<hidden>"


class BadInput(Exception):
    """Input the client refuses before calling anyone (a file it cannot read, a
    statement that is not the proto's JSON, no secret to mint a token with)."""


def hide_secrets(text: str) -> str:
    """`text` without a token in it: a usage error is printed, and often pasted
    into a chat or a ticket."""
    return _JWT.sub(HIDDEN, _TOKEN_VALUE.sub(rf"\g<1>{HIDDEN}", text))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser (its subcommands' too) whose usage errors never
    show a token: `unrecognized arguments: --token=<hidden>`."""

    def error(self, message: str) -> NoReturn:
        super().error(hide_secrets(message))


def command(sub: Any, name: str, help: str, *examples: str) -> argparse.ArgumentParser:
    shown = "\n".join(f"  {line}".rstrip() for line in examples)
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        allow_abbrev=False,  # an option is spelled out (`--to` is not `--token`)
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=f"example:\n{shown}" if examples else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Also after the command (`casemesh list --json`); unset, it leaves the global one be.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return parser


def resource(collection: str, value: str) -> str:
    """`tickets/4f0c…` from either `tickets/4f0c…` or `4f0c…`."""
    return value if value.startswith(f"{collection}/") else f"{collection}/{value}"


def add_filing_arguments(p: argparse.ArgumentParser, news: str) -> None:
    """What a person filing something (a ticket, a report) also gives: where
    `news` reaches them, evidence, and a request id for safe retries."""
    add_evidence_argument(p)
    p.add_argument(
        "--locale", default="zh-CN", choices=["zh-CN", "en"], help="the language you are sent"
    )
    p.add_argument(
        "--email", default="", help=f"where {news} is e-mailed (this, --phone or both is required)"
    )
    p.add_argument(
        "--phone",
        default="",
        help=f"a mobile number {news} is texted to (this, --email or both is required)",
    )
    add_request_id_argument(p)


def add_limit_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit",
        type=count,
        metavar="N",
        help="print the first N only (default: every one; each page is printed as it comes)",
    )


def count(text: str) -> int:
    """A --limit: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a whole number above 0")
    return value


def add_evidence_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--evidence", action="append", default=[], help="evidence/… you uploaded (repeatable)"
    )


def evidence_refs(args: argparse.Namespace) -> list[evidence_pb2.EvidenceRef]:
    """The --evidence given, as the references a request carries."""
    return [evidence_pb2.EvidenceRef(name=name) for name in args.evidence]


def add_request_id_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--request-id",
        default="",
        help="makes a retry safe: the same id again lands once (default: a new one,"
        " printed if no answer came)",
    )


def request_id(args: argparse.Namespace) -> str:
    """The change's request id: --request-id, or a new one, kept in `args` so
    that a call that got no answer can say how to retry it safely."""
    if not getattr(args, "request_id", ""):
        args.request_id = uuid.uuid4().hex
    return str(args.request_id)


def add_etag_argument(
    p: argparse.ArgumentParser, read: str, unset: str = "the one read just before deciding"
) -> None:
    """--etag: the case as `read` showed it (`appeal … --json`), and what is
    sent when it is not given (`unset`)."""
    p.add_argument(
        "--etag",
        default="",
        help=f"the case's etag as you read it ({read}): a case changed since is refused"
        f" (ABORTED). By default {unset}",
    )


def contact(email: str, phone: str) -> pb.Contact:
    """A contact sent news on every channel it has an address for."""
    channels = ([pb.CHANNEL_EMAIL] if email else []) + ([pb.CHANNEL_SMS] if phone else [])
    return pb.Contact(email=email, phone=phone, channels=channels)


def filing_contact(args: argparse.Namespace) -> pb.Contact:
    """The contact a person filing something gives (`add_filing_arguments`):
    without one, refused here, naming the flags, rather than by the service
    naming `contact.channels`, a field the command line has no flag for."""
    if not args.email and not args.phone:
        raise BadInput(f"{args.command}: give --email or --phone (or both): where news reaches you")
    return contact(args.email, args.phone)


def seconds(text: str) -> float:
    """A --timeout: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def lease_seconds(text: str) -> int:
    """A --lease: whole seconds the queue grants (`casemesh.rules.leases`);
    anything else is refused naming the bounds, before the queue is asked."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not leases.allowed(value):
        raise argparse.ArgumentTypeError(
            f"must be from {leases.SHORTEST} to {leases.LONGEST} seconds (0 means {leases.DEFAULT})"
        )
    return value


def add_timeout_argument(p: argparse.ArgumentParser, default: float, help: str) -> None:
    p.add_argument("--timeout", type=seconds, default=default, metavar="SECONDS", help=help)
