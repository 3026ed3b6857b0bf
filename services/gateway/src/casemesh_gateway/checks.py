"""Field rules the gateway applies before a call reaches a service. Each check
names the offending field; the owning service checks again. A page size over
the maximum is not refused but capped (`page`), in the request forwarded."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from casemesh.platform.errors import Violations
from casemesh.rules import tickets as rules
from casemesh.v1 import tickets_pb2 as pb

Check = Callable[[Any, Violations], None]


def name(request: Any, v: Violations) -> None:
    rules.ticket_id_from_name(v, request.name)


def etag(request: Any, v: Violations) -> None:
    rules.check_etag(v, request.etag)


def text(field: str, *, required: bool = True) -> Check:
    limit = rules.LIMITS.get(field, rules.LIMITS["text"])

    def check(request: Any, v: Violations) -> None:
        rules.text(v, field, getattr(request, field), limit=limit, required=required)

    return check


def all_of(*checks: Check) -> Check:
    def check(request: Any, v: Violations) -> None:
        for c in checks:
            c(request, v)

    return check


def request_id(request: Any, v: Violations) -> None:
    if not rules.REQUEST_ID.match(request.request_id):
        v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")


def retry_key(request: Any, v: Violations) -> None:
    """A change's optional request id: when sent, the same rule as a create's."""
    if request.request_id:
        request_id(request, v)


def create_ticket(request: pb.CreateTicketRequest, v: Violations) -> None:
    if not request.HasField("ticket"):
        v.add("ticket", "is required")
        return
    t = request.ticket
    rules.check_new_ticket(
        v,
        request_id=request.request_id,
        category=t.category,
        subject=t.subject,
        description=t.description,
        locale=t.locale,
        contact={
            "email": t.contact.email.strip(),
            "phone": t.contact.phone.strip(),
            "channels": [
                pb.Channel.Name(c).removeprefix("CHANNEL_") if c in pb.Channel.values() else "?"
                for c in t.contact.channels
            ],
        },
    )


def page(limit: int) -> Check:
    """A negative page_size is refused; one over `limit`, the service's maximum, is
    taken as `limit` (AIP-158) here already, so that the service gets a size it
    accepts even while an older one still refuses larger sizes."""

    def check(request: Any, v: Violations) -> None:
        if request.page_size < 0:
            v.add("page_size", "must not be negative (0 for the default)")
        elif request.page_size > limit:
            request.page_size = limit

    return check


def statuses(request: pb.ListTicketsRequest, v: Violations) -> None:
    known = set(pb.TicketStatus.values()) - {pb.TICKET_STATUS_UNSPECIFIED}
    if any(s not in known for s in request.statuses):
        v.add("statuses", "must hold defined ticket states (not UNSPECIFIED)")


def rating(request: pb.RateTicketRequest, v: Violations) -> None:
    if not 1 <= request.score <= 5:
        v.add("score", "must be from 1 to 5")


def assignee(request: pb.AssignTicketRequest, v: Violations) -> None:
    rules.text(v, "assignee", request.assignee, limit=128, required=False)
    if request.priority not in pb.Priority.values():
        v.add("priority", "must be a defined priority (or unspecified to keep it)")


named = all_of(name, etag)


def resource_name(collection: str) -> Check:
    def check(request: Any, v: Violations) -> None:
        prefix, _, ident = request.name.partition("/")
        if prefix != collection or not re.fullmatch(r"[0-9a-f-]{36}", ident):
            v.add("name", f"must be {collection}/{{id}}")

    return check


appeal_named = resource_name("appeals")


def file_appeal(request: Any, v: Violations) -> None:
    if not request.HasField("appeal"):
        v.add("appeal", "is required")
    request_id(request, v)


def decision(request: Any, v: Violations) -> None:
    appeal_named(request, v)
    etag(request, v)
    if request.outcome == 0:
        v.add("outcome", "must be UPHOLD or REJECT")
    for field in ("ground", "facts"):
        if not getattr(request.reasons, field).strip():
            v.add(f"reasons.{field}", "a statement of reasons needs it")


report_named = resource_name("reports")
report_case_named = resource_name("report-cases")


def file_report(request: Any, v: Violations) -> None:
    if not request.HasField("report"):
        v.add("report", "is required")
    request_id(request, v)


def report_decision(request: Any, v: Violations) -> None:
    report_case_named(request, v)
    etag(request, v)
    if request.outcome == 0:
        v.add("outcome", "must be ACTION_TAKEN or NO_VIOLATION")
    if not request.statement.decision_facts.strip():
        v.add("statement.decision_facts", "a statement of reasons needs the facts relied on")


def lease(request: Any, v: Violations) -> None:
    if request.lease_seconds and not 10 <= request.lease_seconds <= 3600:
        v.add("lease_seconds", "must be from 10 to 3600 (0 means 600)")
