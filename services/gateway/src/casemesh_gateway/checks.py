"""Field rules the gateway applies before a call reaches a service, beyond those
written in the protos (`fieldrules`): rules that need Casemesh's data or tie
fields together, and one the annotations' runtime makes too slow (`statuses`).
Each check names the offending field; the owning service
checks again. A page size over the maximum is not refused but capped (`page`),
in the request forwarded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from casemesh.platform.errors import Violations
from casemesh.platform.grpcutil import MOST_FILTER_VALUES
from casemesh.rules import tickets as rules
from casemesh.v1 import tickets_pb2 as pb

Check = Callable[[Any, Violations], None]


def nothing(request: Any, v: Violations) -> None:
    """For a request whose every rule is in its proto's annotations."""


def contact(c: pb.Contact) -> dict[str, Any]:
    """A contact as `casemesh.rules` checks it: addresses trimmed, channels by name."""
    return {
        "email": c.email.strip(),
        "phone": rules.normal_phone(c.phone),
        "channels": [
            pb.Channel.Name(ch).removeprefix("CHANNEL_") if ch in pb.Channel.values() else "?"
            for ch in c.channels
        ],
    }


def create_ticket(request: pb.CreateTicketRequest, v: Violations) -> None:
    """The ticket's category, and its contact: the channels chosen and the address
    each needs (the same Contact is optional elsewhere, so these stay in code)."""
    if not request.HasField("ticket"):
        return  # named by the annotation
    rules.check_category(v, "ticket.category", request.ticket.category)
    rules.check_contact(v, contact(request.ticket.contact), prefix="ticket.contact.")


def page(limit: int) -> Check:
    """A page_size over `limit`, the service's maximum, is taken as `limit`
    (AIP-158) here already, so that the service gets a size it accepts even while
    an older one still refuses larger sizes. (A negative one is refused by the
    annotation.)"""

    def check(request: Any, v: Violations) -> None:
        if request.page_size > limit:
            request.page_size = limit

    return check


def statuses(request: pb.ListTicketsRequest, v: Violations) -> None:
    """Not an annotation: written when protovalidate ran its rules in Python,
    which took seconds over the thousands of items a hostile client may send.
    (Its native engine would take this as a rule on each item now.) A list
    longer than the service reads is refused here, as the service refuses it,
    without reading it."""
    if len(request.statuses) > MOST_FILTER_VALUES:
        v.add("statuses", f"at most {MOST_FILTER_VALUES} items")
        return
    known = set(pb.TicketStatus.values()) - {pb.TICKET_STATUS_UNSPECIFIED}
    if any(s not in known for s in request.statuses):
        v.add("statuses", "must hold defined ticket states (not UNSPECIFIED)")


def all_of(*checks: Check) -> Check:
    def check(request: Any, v: Violations) -> None:
        for c in checks:
            c(request, v)

    return check
