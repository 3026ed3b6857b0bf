"""The `casemesh` client's queue commands (agents):

casemesh --as li --role agent cases [--queue account] [--sla breached]
casemesh --as li --role agent next [--queue account] [--lease 600]
casemesh --as li --role agent release tickets/…
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc

from casemesh.v1 import casequeue_pb2 as qpb
from casemesh.v1 import casequeue_pb2_grpc as qpb_grpc
from casemesh.v1 import tickets_pb2 as pb

COMMANDS = ("cases", "next", "release")
STATES = ("on_track", "warning", "breached", "paused", "met")


def add_commands(sub: Any) -> None:
    c = sub.add_parser("cases", help="agents: the case queue, most urgent first")
    c.add_argument("--queue", action="append", default=[])
    c.add_argument("--sla", action="append", default=[], choices=STATES)
    n = sub.add_parser("next", help="agents: claim the most urgent case")
    n.add_argument("--queue", action="append", default=[])
    n.add_argument("--lease", type=int, default=600, help="seconds")
    sub.add_parser("release", help="agents: give a claimed case back").add_argument("case")


def show(c: qpb.QueueCase) -> None:
    due = next((k.due_time for k in c.sla if k.due_time.seconds), None)
    sla = qpb.SlaState.Name(c.sla_state).removeprefix("SLA_STATE_")
    priority = pb.Priority.Name(c.priority).removeprefix("PRIORITY_")
    clock = f"due {due.ToDatetime():%Y-%m-%d %H:%M} UTC" if due else "no clock running"
    held = f"  held by {c.holder}" if c.holder else ""
    print(f"{c.name}  {priority:7} {sla:9} {c.queue:14} {c.status:15} {clock}{held}")


def run(channel: grpc.Channel, metadata: list[tuple[str, str]], args: argparse.Namespace) -> None:
    stub = qpb_grpc.CaseQueueServiceStub(channel)
    if args.command == "cases":
        states = [qpb.SlaState.Value(f"SLA_STATE_{s.upper()}") for s in args.sla]
        token = ""
        while True:
            page = stub.ListQueueCases(
                qpb.ListQueueCasesRequest(
                    queues=args.queue, sla_states=states, page_size=500, page_token=token
                ),
                metadata=metadata,
                timeout=10,
            )
            for c in page.queue_cases:
                show(c)
            token = page.next_page_token
            if not token:
                break
    elif args.command == "next":
        show(
            stub.ClaimNextCase(
                qpb.ClaimNextCaseRequest(queues=args.queue, lease_seconds=args.lease),
                metadata=metadata,
                timeout=10,
            )
        )
    else:
        show(
            stub.ReleaseClaim(
                qpb.ReleaseClaimRequest(name=args.case), metadata=metadata, timeout=10
            )
        )
