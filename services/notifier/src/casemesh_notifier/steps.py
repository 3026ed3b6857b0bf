"""What each party of a case hears about an event: a step, that is a template
with its text and due date, per party role. Pure functions of the event.

The roles: a ticket's `requester`; a copyright case's `filer` and, once a
decision or counter-notice names them, its `uploader`; a report's
`reporter`; a report case's `uploader`; a reporter's standing, the
`reporter`; a one-time code's `holder`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from google.protobuf.message import Message

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev


@dataclass(frozen=True)
class Step:
    """Something a party should hear about: a template, the values its e-mail
    shows (`values`: what people wrote among them), when the next step is due,
    and the values its SMS may show besides the case number and that date
    (`sms`: never anything a person wrote). A message worth nothing after
    some time (a one-time code) `expires` then: it is never sent later.
    `words_of`: the person whose words its e-mail shows, when they are not
    the party's own (an agent's reply, sealed under the agent's key): their
    erasure reaches the copy (`erasures.forget_people`)."""

    template: str
    values: Mapping[str, Any] = field(default_factory=dict)
    due: datetime | None = None
    sms: Mapping[str, str] = field(default_factory=dict)
    expires: datetime | None = None
    words_of: str = ""


def restriction(r: Any) -> dict[str, Any]:
    """A restriction as the templates read it: its code, the words of an
    `_OTHER` one, and when it ends (None: permanent)."""
    return {
        "type": r.type,
        "other": r.other,
        "until": r.end_time.ToDatetime(UTC) if r.HasField("end_time") else None,
    }


# The ticket steps after which it takes no reply (closed is final; a reply
# by e-mail would bounce): their e-mails neither invite one nor set Reply-To.
NO_REPLY_STEPS = frozenset({"ticket.closed"})
# The states of a notice whose counter-noticed items a court holds (held for
# its action, or kept down by it): an appeal upheld meanwhile brings back
# only the others.
COURT_HOLDS = frozenset({"HELD", "UPHELD_BY_COURT"})


def ticket_step(message: Message, previous_status: str) -> Step | None:
    """Which step of a ticket's journey (if any) this event tells the requester about."""
    match message:
        case ev.TicketCreated():
            return Step("ticket.received")
        case ev.InfoRequested():
            return Step("ticket.info_requested", {"text": message.message})
        case ev.CommentAdded() if not message.internal and not message.by_requester:
            # The body is the agent's words (sealed under their key, `author`).
            author = message.author or message.header.actor
            return Step("ticket.agent_reply", {"text": message.body}, words_of=author)
        case ev.CommentAdded() if message.by_requester and previous_status == "SOLVED":
            # The requester's reply reopened a solved ticket: confirm it is open again.
            return Step("ticket.reopened")
        case ev.TicketSolved():
            # Until when a reply reopens it; unknown for a ticket solved
            # before the event said (its message then says "after a while").
            closes = (
                message.auto_close_time.ToDatetime(UTC)
                if message.HasField("auto_close_time")
                else None
            )
            return Step("ticket.solved", {"text": message.resolution}, closes)
        case ev.TicketReopened():
            return Step("ticket.reopened")
        case ev.TicketClosed():
            return Step("ticket.closed")
    return None


def appeal_steps(
    message: Any, before: str = "", *, taken_down: Sequence[str] = ()
) -> dict[str, Step]:
    """What each party of a copyright case hears about this event (`before`:
    the case's state until it; `taken_down`: the items the notice names, as
    kept since its filing, () not known)."""
    due = (
        message.header.next_step_due.ToDatetime(UTC)
        if (message.header.HasField("next_step_due"))
        else None
    )
    match message:
        case aev.AppealFiled() if message.missing_elements:
            return {
                "filer": Step(
                    "appeal.info_requested",
                    {"text": "", "missing": list(message.missing_elements)},
                    due,
                )
            }
        case aev.AppealFiled():
            return {"filer": Step("appeal.received", due=due)}
        case aev.AppealInfoAdded() if (
            before == "INFO_REQUESTED" and not message.missing_elements and due is not None
        ):
            # The filer's answer completed the case: a receipt, and when it is reviewed.
            return {"filer": Step("appeal.complete", due=due)}
        case aev.AppealWithdrawn() if before in ("UPHELD", "FORWARDED_TO_CLAIMANT"):
            # What the notice kept down comes back with it: its claimant
            # hears of both at once (`appeal.restored_on_withdrawal`), not
            # twice, the first saying it will be worked on no further.
            return {}
        case aev.AppealWithdrawn():
            return {"filer": Step("appeal.withdrawn")}
        case aev.AppealInfoRequested():
            missing = list(message.missing_elements)
            return {
                "filer": Step(
                    "appeal.info_requested", {"text": message.message, "missing": missing}, due
                )
            }
        case aev.AppealDecided():
            r = message.reasons
            reasons = {
                "reasons": {
                    "ground": r.ground,
                    "facts": r.facts,
                    # Whether automated means were used (DSA Art. 17(3)(c)).
                    "automated_detection": r.automated_detection,
                    "automated_decision": r.automated_decision,
                    "redress": r.redress,
                }
            }
            upheld = message.outcome == "UPHOLD"
            template = "appeal.upheld" if upheld else "appeal.rejected"
            steps = {}
            # Only the party a decision went against may appeal it. The filer
            # of an upheld case won: the window is the uploader's (or no
            # one's), and so is the redress that speaks of it, in their
            # language; a final decision's redress (no window) is the filer's.
            # A notice upheld on the claimant's appeal: the claimant hears it
            # from their appeal's decision.
            if not message.outcome_of:
                own = reasons
                if upheld and due is not None:
                    own = {"reasons": {**reasons["reasons"], "redress": ""}}
                steps["filer"] = Step(template, own, None if upheld else due)
            if message.HasField("affected_uploader"):
                # Which items came down: their counter-notice must name them.
                removed = {**reasons, "removed_items": list(taken_down)}
                steps["uploader"] = Step("appeal.content_removed", removed, due)
            return steps
        case aev.CounterNoticeFiled():
            # The claimant's copy of the counter-notice, with the uploader's
            # name, contact and postal address (so that they can take court
            # action: a US counter-notice gives the address at which the
            # uploader accepts service of process). The copy is the
            # uploader's: erasing them scrubs it whole (`store.COPIES`).
            u = message.uploader
            copy = {
                "text": message.reason,
                "removed_items": list(message.removed_items) or [message.removed_item],
                "uploader": {
                    "name": u.legal_name,
                    "email": u.contact.email,
                    "phone": u.contact.phone,
                    # "" when not given, and in events published before it was carried.
                    "address": u.postal_address,
                },
            }
            return {
                "filer": Step("appeal.counter_notice_received", copy, due),
                "uploader": forwarded(message, due),
            }
        case aev.ContentRestored():
            # After the counter-notice's window, an upheld appeal, or the
            # claimant's withdrawal of the notice: what came back, which may
            # be part of what the notice took down, and what another notice
            # keeps down still.
            if message.outcome_of:
                told = "appeal.restored_on_appeal"
            elif message.header.state == "WITHDRAWN":
                told = "appeal.restored_on_withdrawal"
            else:
                told = "appeal.restored"
            items, sms = _restored(message)
            # Only what the counter-notice did not name came back: a court
            # holds the rest (a held case, or one it kept down). Said once,
            # among the SMS's values, in their text form: the e-mail reads
            # them too (`rendering.email_values`).
            sms["court_holds"] = "yes" if message.header.state in COURT_HOLDS else ""
            if told == "appeal.restored_on_withdrawal":
                # The claimant withdrew it: they read that as their own doing.
                return {
                    "filer": Step(told, items, sms={**sms, "by_you": "yes"}),
                    "uploader": Step(told, items, sms={**sms, "by_you": ""}),
                }
            return {
                "filer": Step(told, items, sms=sms),
                "uploader": Step(told, items, sms=sms),
            }
        case aev.CourtActionRecorded():
            return {"filer": Step("appeal.held"), "uploader": Step("appeal.held")}
        case aev.CourtOutcomeRecorded():
            if message.outcome == "CONTENT_RESTORED":
                items, sms = _restored(message)
                return {
                    "filer": Step("appeal.court_restored", items, sms=sms),
                    "uploader": Step("appeal.court_restored", items, sms=sms),
                }
            return {"filer": Step("appeal.court_upheld"), "uploader": Step("appeal.court_upheld")}
        case aev.AppealAbandoned():
            return {"filer": Step("appeal.abandoned")}
    return {}


def forwarded(message: aev.CounterNoticeFiled, deadline: datetime | None) -> Step:
    """The uploader's step of their forwarded counter-notice: when their
    content comes back (`restores_at`: the claimant's deadline and the grace
    after it, business days on some cases), unless the claimant tells of
    court action by their `deadline`. An event published before it carried
    that moment tells the deadline alone (`restores` unset)."""
    if deadline is None and message.HasField("restore_time"):
        deadline = message.restore_time.ToDatetime(UTC)
    if deadline is None or not message.HasField("restores_at"):
        return Step("appeal.counter_notice_forwarded", due=deadline, sms={"restores": ""})
    return Step(
        "appeal.counter_notice_forwarded",
        {"court_due": deadline},
        message.restores_at.ToDatetime(UTC),
        sms={"restores": "yes"},
    )


def _restored(message: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """What an event that restores content tells: the items it restored, and
    those another notice keeps down still, each with the case numbers of
    the notices that do (`held_items`), for the e-mail; and, among the SMS's
    values, whether those are some of what the case let go of or all of it
    (`held_elsewhere`: "some", "all", "" none), so that neither says the
    content came back when it did not. An event published before it listed
    its items names its one item, or none; one published before items held
    elsewhere were looked for names none held: the message then speaks of
    the content as restored, as it did."""
    items = list(message.restored_items) or [i for i in (message.removed_item,) if i]
    held = [
        {"item": h.item, "cases": [case_number(name) for name in h.held_by]}
        for h in message.held_elsewhere
    ]
    elsewhere = ("some" if items else "all") if held else ""
    return {"restored_items": items, "held_items": held}, {"held_elsewhere": elsewhere}


def case_number(name: str) -> str:
    """A case's number as its parties read it, from its name (`appeals/{id}`)
    or its id: the id's first eight characters, in capitals."""
    return name.rpartition("/")[2][:8].upper()


REPORT_APPEAL_TEMPLATES = frozenset(
    {
        "appeal.received",
        "appeal.info_requested",
        "appeal.upheld",
        "appeal.rejected",
        "appeal.abandoned",
        "appeal.complete",
        "appeal.withdrawn",
    }
)


def for_report_appeal(steps: dict[str, Step], filer_subject: str) -> dict[str, Step]:
    """An appeal of a report decision is told in its own words (the filer's
    case subject is the appealed `report-cases/…`)."""
    if not filer_subject.startswith("report-cases/"):
        return steps
    return {
        role: replace(step, template="report_" + step.template)
        if step.template in REPORT_APPEAL_TEMPLATES
        else step
        for role, step in steps.items()
    }


def statement(s: Any) -> dict[str, Any]:
    """A statement of reasons as the affected uploader reads it (DSA Art. 17)."""
    return {
        "ground": s.decision_ground,
        "legal_ground": s.illegal_content_legal_ground,
        "illegal_explanation": s.illegal_content_explanation,
        "terms_ground": s.incompatible_content_ground,
        "terms_explanation": s.incompatible_content_explanation,
        "facts": s.decision_facts,
        "category": s.category,
        "applies": date.fromisoformat(s.application_date) if s.application_date else None,
        # The countries the decision applies in (Art. 17(3)(a)); none named: everywhere.
        "scope": list(s.territorial_scope),
        "source": s.source_type,
        "automated_detection": s.automated_detection,
        "automated_decision": s.automated_decision,
        "restrictions": [restriction(r) for r in s.restrictions],
        "redress": s.redress,
    }


def report_steps(message: Any) -> dict[str, Step]:
    """What each party of a report, its case or a reporter's standing hears."""
    match message:
        case rev.ReportFiled():
            return {"reporter": Step("report.received")}
        case rev.ReportResolved():
            template = {
                "ACTION_TAKEN": "report.action_taken",
                "NO_VIOLATION": "report.unfounded"
                if message.manifestly_unfounded
                else "report.no_violation",
            }[message.outcome]
            outcome = {
                "facts": message.decision_facts,
                # With their ends; a decision recorded before they were kept, without.
                "restrictions": [restriction(r) for r in message.restriction_terms]
                or [{"type": code, "other": "", "until": None} for code in message.restrictions],
                # Whether automated means were used (DSA Art. 16(6)); None: not stated.
                "automated_detection": message.automated_detection
                if message.HasField("automated_detection")
                else None,
                "automated_decision": message.automated_decision,
                "redress": message.redress,
            }
            return {"reporter": Step(template, outcome, message.appeal_deadline.ToDatetime(UTC))}
        case rev.ReportVoided():
            return {"reporter": Step("report.void")}
        case rev.ReportDecisionReversed():
            # Reviewed again (the report back in review), or not (what it
            # imposed lifted; or reported again since, or past its time).
            reversal = {
                "reviewed": message.header.state == "SUBMITTED",
                "lifted": bool(message.restrictions_lifted),
            }
            return {"reporter": Step("report.reversed", reversal)}
        case rev.ReportCaseDecided() if (
            message.HasField("affected_uploader") and message.outcome != "ACTION_TAKEN"
        ):
            # A new decision after an appeal: what the earlier one imposed is lifted.
            lifted = [restriction(r) for r in message.restrictions_lifted]
            return (
                {"uploader": Step("report.restriction_lifted", {"restrictions": lifted})}
                if lifted
                else {}
            )
        case rev.ReportCaseDecided() if message.HasField("affected_uploader"):
            return {
                "uploader": Step(
                    "report.statement",
                    {"statement": statement(message.statement)},
                    message.statement.appeal_deadline.ToDatetime(UTC),
                )
            }
        case rev.ReportCaseDecisionReversed() if message.restrictions_lifted:
            return {
                "uploader": Step(
                    "report.restriction_lifted",
                    {"restrictions": [restriction(r) for r in message.restrictions_lifted]},
                )
            }
        case rev.ReporterWarned():
            return {"reporter": Step("report.misuse_warning")}
        case rev.ReporterSuspended():
            return {
                "reporter": Step("report.reporting_suspended", due=message.until.ToDatetime(UTC))
            }
        case rev.ReporterSuspensionLifted():
            return {"reporter": Step("report.suspension_lifted")}
    return {}


def code_step(message: hev.VerificationCodeIssued) -> Step:
    """A one-time code tells its holder the code and until when it holds."""
    expiry = message.expire_time.ToDatetime(UTC)
    return Step(
        "verification.code",
        due=expiry,
        sms={"code": message.code, "purpose": message.purpose},
        expires=expiry,
    )
