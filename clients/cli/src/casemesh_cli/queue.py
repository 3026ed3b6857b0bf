"""The `casemesh` client's queue commands (agents):

casemesh --as li --role agent cases [--queue account] [--sla breached]
casemesh --as li --role agent next [--queue account] [--lease 600]
casemesh --as li --role agent renew tickets/… [--lease 600]
casemesh --as li --role agent release tickets/…
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from casemesh.rules import leases
from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import casequeue_pb2_grpc as qpb_grpc
from casemesh.v1 import tickets_pb2 as pb
from casemesh_cli.output import emit, emit_pages
from casemesh_cli.paging import pages
from casemesh_cli.parsing import (
    add_request_id_argument,
    command,
    lease_seconds,
    request_id,
)

COMMANDS = ("cases", "next", "renew", "release")
STATES = ("on_track", "warning", "breached", "paused", "met")
CASE_HELP = "the claimed case's name, e.g. tickets/…, appeals/…"


def add_commands(sub: Any) -> None:
    queue_help = "only cases of this queue, e.g. account, ads (repeatable)"
    c = command(
        sub,
        "cases",
        "agents: the case queue (tickets, copyright and report cases), most urgent first",
        "casemesh --as li --role agent cases --queue account --sla breached",
    )
    c.add_argument(
        "--sla", action="append", default=[], choices=STATES, help="only cases whose SLA is so"
    )
    n = command(
        sub,
        "next",
        "agents: claim the most urgent case under a lease",
        "casemesh --as li --role agent next --queue account --lease 600",
    )
    for p in (c, n):
        p.add_argument("--queue", action="append", default=[], help=queue_help)
    _add_lease_argument(n)
    add_request_id_argument(n)
    r = command(
        sub,
        "renew",
        "agents: keep a case you hold for longer, before its lease runs out",
        "casemesh --as li --role agent renew tickets/4f0c… --lease 1200",
    )
    r.add_argument("case", help=CASE_HELP)
    _add_lease_argument(r, renewal=True)
    command(
        sub,
        "release",
        "agents: give a claimed case back",
        "casemesh --as li --role agent release tickets/4f0c…",
    ).add_argument("case", help=CASE_HELP)


def _add_lease_argument(p: argparse.ArgumentParser, *, renewal: bool = False) -> None:
    # A renewal never shortens a claim (the service keeps the later end).
    unless = ", unless it already ends later" if renewal else ""
    p.add_argument(
        "--lease",
        type=lease_seconds,
        default=leases.DEFAULT,
        metavar="SECONDS",
        help=f"seconds the claim lasts from now{unless}, {leases.SHORTEST} to {leases.LONGEST}"
        f" (default: {leases.DEFAULT})",
    )


def priority_name(value: int) -> str:
    """A ticket's or queued case's priority as people say it: `HIGH`."""
    return pb.Priority.Name(value).removeprefix("PRIORITY_")  # type: ignore[arg-type]


def show(c: qpb.QueueCase) -> None:
    due = next((k.due_time for k in c.sla if k.due_time.seconds), None)
    sla = qpb.SlaState.Name(c.sla_state).removeprefix("SLA_STATE_")
    priority = priority_name(c.priority)
    clock = f"due {due.ToDatetime():%Y-%m-%d %H:%M} UTC" if due else "no clock running"
    held = f"  held by {c.holder}" if c.holder else ""
    if c.holder and c.HasField("lease_expire_time"):  # when the lease (`renew`) runs out
        held += f" until {c.lease_expire_time.ToDatetime():%Y-%m-%d %H:%M} UTC"
    print(f"{c.name}  {priority:7} {sla:9} {c.queue:14} {c.status:15} {clock}{held}")


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = qpb_grpc.CaseQueueServiceStub(channel)
    if args.command == "cases":
        states = [qpb.SlaState.Value(f"SLA_STATE_{s.upper()}") for s in args.sla]
        listed = pages(
            lambda token: stub.ListQueueCases(
                qpb.ListQueueCasesRequest(
                    queues=args.queue, sla_states=states, page_size=500, page_token=token
                ),
                metadata=metadata,
                timeout=10,
            )
        )
        emit_pages(args, listed, "queue_cases", show)
    elif args.command == "next":
        claimed = stub.ClaimNextCase(
            qpb.ClaimNextCaseRequest(
                queues=args.queue, lease_seconds=args.lease, request_id=request_id(args)
            ),
            metadata=metadata,
            timeout=10,
        )
        emit(args, claimed, show)
    elif args.command == "renew":
        renewed = stub.RenewClaim(
            qpb.RenewClaimRequest(name=args.case, lease_seconds=args.lease),
            metadata=metadata,
            timeout=10,
        )
        emit(args, renewed, show)
    else:
        released = stub.ReleaseClaim(
            qpb.ReleaseClaimRequest(name=args.case), metadata=metadata, timeout=10
        )
        emit(args, released, show)
