"""Translation of stored events into the public messages of
`casemesh.reports.v1` (proto/casemesh/events/v1/reports.proto)."""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import reports_pb2 as ev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.fields import items_of
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.relay import EventTranslator
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, TrustedFlagger

TOPIC = topics.REPORTS

PUBLIC_NAMES = {
    "Filed": "ReportFiled",
    "Resolved": "ReportResolved",
    "Voided": "ReportVoided",
    "Reversed": "ReportDecisionReversed",
    "Opened": "ReportCaseOpened",
    "ReportAdded": "ReportAddedToCase",
    "Assigned": "ReportCaseAssigned",
    "Decided": "ReportCaseDecided",
    "CaseVoided": "ReportCaseVoided",
    "Appealed": "ReportCaseAppealed",
    "DecisionReversed": "ReportCaseDecisionReversed",
    "FirstMisuseCounted": "ReporterMisuseCounted",
    "MisuseCounted": "ReporterMisuseCounted",
    "Warned": "ReporterWarned",
    "Suspended": "ReporterSuspended",
    "MisuseWithdrawn": "ReporterMisuseWithdrawn",
    "SuspensionLifted": "ReporterSuspensionLifted",
    "Designated": "TrustedFlaggerSet",
    "Changed": "TrustedFlaggerSet",
    "Removed": "TrustedFlaggerRemoved",
}

# What the messages of a filing and of its outcome carry as the events keep it.
FILED_AS_IS = ("reporter", "category", "subcategory", "explanation", "source", "case_id")
RESOLVED_AS_IS = (
    "case_id",
    "outcome",
    "restrictions",
    "decision_facts",
    "manifestly_unfounded",
    "redress",
)

COLLECTIONS: dict[type[Any], str] = {
    AbuseReport: "reports",
    ReportCase: "report-cases",
    Reporter: "reporters",
    TrustedFlagger: "trusted-flaggers",
}


def contact(c: dict[str, Any] | None, locale: str = "") -> tev.ContactPreferences:
    c = c or {}
    return tev.ContactPreferences(
        email=c.get("email", ""),
        phone=c.get("phone", ""),
        channels=[tev.ContactChannel.Value(f"CONTACT_CHANNEL_{x}") for x in c.get("channels", [])],
        locale=c.get("locale") or locale,
    )


def _party(d: dict[str, Any] | None) -> ev.ReportParty | None:
    if not d:
        return None
    return ev.ReportParty(
        user_id=d.get("user_id", ""),
        legal_name=d.get("legal_name", ""),
        contact=contact(d.get("contact"), d.get("locale", "")),
    )


def _target(t: dict[str, str]) -> ev.ReportTargetRef:
    return ev.ReportTargetRef(type=t["type"], id=t["id"], url=t.get("url", ""))


def _restrictions(items: list[dict[str, Any]]) -> list[ev.Restriction]:
    return [
        ev.Restriction(
            type=r["type"], other=r.get("other", ""), end_time=to_timestamp(r.get("end_time"))
        )
        for r in items
    ]


def statement_record(s: dict[str, Any]) -> ev.StatementOfReasonsRecord:
    plain = {
        k: v
        for k, v in s.items()
        if k not in ("restrictions", "appeal_deadline") and v not in ("", None, [])
    }
    return ev.StatementOfReasonsRecord(
        **plain,
        restrictions=_restrictions(s.get("restrictions", [])),
        appeal_deadline=to_timestamp(s.get("appeal_deadline")),
    )


def _state(after: Any) -> str:
    if isinstance(after, (AbuseReport, ReportCase)):
        return after.state.value
    if isinstance(after, Reporter):
        return after.standing
    return "ACTIVE" if after.active else "REMOVED"


def _header(domain_event: Any, after: Any) -> ev.ReportEventHeader:
    a = vars(domain_event)
    return ev.ReportEventHeader(
        aggregate_id=str(domain_event.originator_id),
        version=domain_event.originator_version,
        actor=a.get("actor") or a.get("reporter") or "system",
        time=to_timestamp(domain_event.timestamp),
        state=_state(after),
    )


def public_message(domain_event: Any, after: Any) -> Message:
    """The public message of `domain_event`: its own fields and the header
    every message of the topic carries."""
    header = _header(domain_event, after)
    message = _fields(type(domain_event).__name__, vars(domain_event), after)
    message.header.CopyFrom(header)
    return cast(Message, message)


def _fields(kind: str, a: dict[str, Any], after: Any) -> Any:
    """The message for an event of this `kind` with payload `a`, but its header."""
    match kind:
        case "Filed":
            return ev.ReportFiled(
                contact=contact(a["contact"]),
                target=_target(a["target"]),
                evidence=[tev.EvidenceAttachment(**e) for e in a["evidence"]],
                **items_of(a, *FILED_AS_IS),
            )
        case "Resolved":
            o = a["outcome"]
            return ev.ReportResolved(
                appeal_deadline=to_timestamp(o["appeal_deadline"]),
                **items_of(o, *RESOLVED_AS_IS),
            )
        case "Voided":
            return ev.ReportVoided(case_id=after.case_id, reason=a["reason"])
        case "Reversed":
            return ev.ReportDecisionReversed(
                case_id=after.case_id,
                appeal=a["appeal"],
                restrictions_lifted=a["lifted"],
            )
        case "Opened":
            first = a["first_report"]
            return ev.ReportCaseOpened(
                target=_target(a["target"]),
                category=a["category"],
                lane=a["lane"],
                first_report_id=first["id"],
                trusted_flagger=bool(first.get("trusted")),
                base_priority=a["base_priority"],
            )
        case "ReportAdded":
            report = a["report"]
            return ev.ReportAddedToCase(
                report_id=report["id"],
                reporter=report["reporter"],
                reporter_count=len(after.reporters),
                trusted_flagger=bool(report.get("trusted")),
                base_priority=a["base_priority"],
            )
        case "Assigned":
            return ev.ReportCaseAssigned(assignee=a["assignee"])
        case "Decided":
            return ev.ReportCaseDecided(
                outcome=a["outcome"],
                statement=statement_record(a["statement"]),
                affected_uploader=_party(
                    a["uploader"] or (after.uploader if a["lifted"] else None)
                ),
                report_ids=a["report_ids"],
                manifestly_unfounded_report_ids=a["unfounded"],
                restrictions_lifted=_restrictions(a["lifted"]),
            )
        case "CaseVoided":
            return ev.ReportCaseVoided(reason=a["reason"])
        case "Appealed":
            return ev.ReportCaseAppealed(appeal=a["appeal"], appellant=a["actor"])
        case "DecisionReversed":
            return ev.ReportCaseDecisionReversed(
                appeal=a["appeal"],
                restrictions_lifted=_restrictions(a["lifted"]),
                affected_uploader=_party(after.uploader) if a["lifted"] else None,
            )
        case "FirstMisuseCounted" | "MisuseCounted":
            return ev.ReporterMisuseCounted(
                reporter=after.user_id,
                report_id=a["report_id"],
                count=len(after.unfounded),
            )
        case "Warned":
            return ev.ReporterWarned(reporter=after.user_id, contact=contact(a["contact"]))
        case "Suspended":
            return ev.ReporterSuspended(
                reporter=after.user_id,
                contact=contact(a["contact"]),
                until=to_timestamp(a["until"]),
            )
        case "MisuseWithdrawn":
            return ev.ReporterMisuseWithdrawn(reporter=after.user_id, report_id=a["report_id"])
        case "SuspensionLifted":
            return ev.ReporterSuspensionLifted(
                reporter=after.user_id, contact=contact(a["contact"])
            )
        case "Designated" | "Changed":
            return ev.TrustedFlaggerSet(
                user_id=after.user_id,
                display_name=a["display_name"],
                areas=a["areas"],
            )
        case "Removed":
            return ev.TrustedFlaggerRemoved(user_id=after.user_id)
    raise ValueError(f"no public event for {kind}")


def _owner(domain_event: Any) -> type[Any]:
    owner = type(domain_event).__qualname__.split(".")[0]
    return next(cls for cls in COLLECTIONS if cls.__name__ == owner)


def Translator(after: Any) -> EventTranslator:
    """The relay's translation; `after(event)` is the aggregate right after it."""
    return EventTranslator(
        service="reports",
        collection=lambda e: COLLECTIONS[_owner(e)],
        public_names=PUBLIC_NAMES,
        render=public_message,
        after=after,
    )
