"""Translation of stored events into the public messages of
`casemesh.reports.v1` (proto/casemesh/events/v1/reports.proto)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import reports_pb2 as ev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.history import carried
from casemesh.platform.relay import EventTranslator, public_name_in
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, TrustedFlagger

TOPIC = topics.REPORTS

# Stored event class → the name of its public message and on the topic.
PUBLIC_NAMES: dict[type[Any], str | dict[type[Any], str]] = {
    AbuseReport.Filed: "ReportFiled",
    AbuseReport.Resolved: "ReportResolved",
    AbuseReport.Voided: "ReportVoided",
    AbuseReport.Reversed: "ReportDecisionReversed",
    ReportCase.Opened: "ReportCaseOpened",
    ReportCase.Succeeded: "ReportCaseSucceeded",
    ReportCase.ReportAdded: "ReportAddedToCase",
    ReportCase.Assigned: "ReportCaseAssigned",
    ReportCase.Decided: "ReportCaseDecided",
    ReportCase.CaseVoided: "ReportCaseVoided",
    ReportCase.Appealed: "ReportCaseAppealed",
    ReportCase.DecisionReversed: "ReportCaseDecisionReversed",
    # Recorded by a case and each of its reports, one class for both.
    ExpiringCase.Expired: {AbuseReport: "ReportExpired", ReportCase: "ReportCaseExpired"},
    Reporter.FirstMisuseCounted: "ReporterMisuseCounted",
    Reporter.MisuseCounted: "ReporterMisuseCounted",
    Reporter.Warned: "ReporterWarned",
    Reporter.Suspended: "ReporterSuspended",
    Reporter.MisuseWithdrawn: "ReporterMisuseWithdrawn",
    Reporter.SuspensionLifted: "ReporterSuspensionLifted",
    Reporter.RecordExpired: "ReporterContactExpired",
    TrustedFlagger.Designated: "TrustedFlaggerSet",
    TrustedFlagger.Changed: "TrustedFlaggerSet",
    TrustedFlagger.Removed: "TrustedFlaggerRemoved",
}

# The most report ids a ReportCaseDecided lists (the case's oldest). Each
# takes 38 bytes: a video's 100,000 reports would take 3.8 MB, nearly the
# largest record a topic takes (`topics.MAX_RECORD_BYTES`, 4 MiB) before the
# rest of the decision is counted; 10,000 take 380 KB. Every report's own
# ReportResolved names its case, however many there are.
PUBLISHED_REPORT_IDS = 10_000

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


def _state(after: Any, at: datetime) -> str:
    if isinstance(after, (AbuseReport, ReportCase)):
        return after.state.value
    if isinstance(after, Reporter):
        return after.standing_at(at)
    return "ACTIVE" if after.active else "REMOVED"


def happened_at(domain_event: Any) -> Any:
    """When what the event records happened: the time the service's clock
    gave the act (`at`, a report's `filed_at`), which the service's
    transparency figures count by too, so that a consumer of the topic
    counts the same; the event's recording time where it names none."""
    a = vars(domain_event)
    return a.get("at") or a.get("filed_at") or domain_event.timestamp


def public_message(domain_event: Any, after: Any) -> Message:
    """The public message of `domain_event`: the header every message of the
    topic carries, and its own fields (`after` is the aggregate right after it)."""
    a = vars(domain_event)
    header = ev.ReportEventHeader(
        aggregate_id=str(domain_event.originator_id),
        version=domain_event.originator_version,
        actor=a.get("actor") or a.get("reporter") or "system",
        time=to_timestamp(happened_at(domain_event)),
        state=_state(after, domain_event.timestamp),
    )
    match domain_event:
        case AbuseReport.Filed():
            return ev.ReportFiled(
                header=header,
                **carried(
                    a, "reporter", "category", "subcategory", "explanation", "source", "case_id"
                ),
                contact=contact(a["contact"]),
                target=_target(a["target"]),
                evidence=[tev.EvidenceAttachment(**e) for e in a["evidence"]],
            )
        case AbuseReport.Resolved():
            o = a["outcome"]
            return ev.ReportResolved(
                header=header,
                **carried(o, "case_id", "outcome", "restrictions", "decision_facts", "redress"),
                manifestly_unfounded=o["manifestly_unfounded"],
                appeal_deadline=to_timestamp(o["appeal_deadline"]),
                # Absent from outcomes recorded before they were kept: unset.
                automated_detection=o.get("automated_detection"),
                automated_decision=o.get("automated_decision", ""),
                restriction_terms=_restrictions(o.get("restriction_terms", [])),
            )
        case AbuseReport.Voided():
            return ev.ReportVoided(header=header, case_id=after.case_id, reason=a["reason"])
        case AbuseReport.Reversed():
            return ev.ReportDecisionReversed(
                header=header,
                case_id=after.case_id,
                appeal=a["appeal"],
                restrictions_lifted=a["lifted"],
            )
        case ReportCase.Opened():
            first = a["first_report"]
            return ev.ReportCaseOpened(
                header=header,
                target=_target(a["target"]),
                category=a["category"],
                lane=a["lane"],
                first_report_id=first["id"],
                first_reporter=first["reporter"],
                trusted_flagger=bool(first.get("trusted")),
                base_priority=a["base_priority"],
            )
        case ReportCase.Succeeded():
            return ev.ReportCaseSucceeded(header=header, next_case_id=a["next_case_id"])
        case ReportCase.ReportAdded():
            report = a["report"]
            return ev.ReportAddedToCase(
                header=header,
                report_id=report["id"],
                reporter=report["reporter"],
                reporter_count=len(after.reporters),
                trusted_flagger=bool(report.get("trusted")),
                base_priority=a["base_priority"],
            )
        case ReportCase.Assigned():
            return ev.ReportCaseAssigned(header=header, assignee=a["assignee"])
        case ReportCase.Decided():
            return ev.ReportCaseDecided(
                header=header,
                outcome=a["outcome"],
                statement=statement_record(a["statement"]),
                affected_uploader=_party(
                    a["uploader"] or (after.uploader if a["lifted"] else None)
                ),
                # The case's reports at its version (decisions stored by an
                # earlier release listed the same; those since list none).
                report_ids=[r["id"] for r in after.reports[:PUBLISHED_REPORT_IDS]],
                report_count=len(after.reports),
                manifestly_unfounded_report_ids=a["unfounded"],
                restrictions_lifted=_restrictions(a["lifted"]),
            )
        case ReportCase.CaseVoided():
            return ev.ReportCaseVoided(header=header, reason=a["reason"])
        case ReportCase.Appealed():
            return ev.ReportCaseAppealed(header=header, appeal=a["appeal"], appellant=a["actor"])
        case ReportCase.DecisionReversed():
            return ev.ReportCaseDecisionReversed(
                header=header,
                appeal=a["appeal"],
                restrictions_lifted=_restrictions(a["lifted"]),
                affected_uploader=_party(after.uploader) if a["lifted"] else None,
            )
        case Reporter.FirstMisuseCounted() | Reporter.MisuseCounted():
            return ev.ReporterMisuseCounted(
                header=header,
                reporter=after.user_id,
                report_id=a["report_id"],
                count=len(after.counting()),
            )
        case Reporter.Warned():
            return ev.ReporterWarned(
                header=header, reporter=after.user_id, contact=contact(a["contact"])
            )
        case Reporter.Suspended():
            return ev.ReporterSuspended(
                header=header,
                reporter=after.user_id,
                contact=contact(a["contact"]),
                until=to_timestamp(a["until"]),
            )
        case Reporter.MisuseWithdrawn():
            return ev.ReporterMisuseWithdrawn(
                header=header, reporter=after.user_id, report_id=a["report_id"]
            )
        case Reporter.SuspensionLifted():
            return ev.ReporterSuspensionLifted(
                header=header, reporter=after.user_id, contact=contact(a["contact"])
            )
        case Reporter.RecordExpired():
            return ev.ReporterContactExpired(header=header, reporter=after.user_id)
        case TrustedFlagger.Designated() | TrustedFlagger.Changed():
            return ev.TrustedFlaggerSet(
                header=header,
                user_id=after.user_id,
                display_name=a["display_name"],
                areas=a["areas"],
            )
        case TrustedFlagger.Removed():
            return ev.TrustedFlaggerRemoved(header=header, user_id=after.user_id)
        case ExpiringCase.Expired() if isinstance(after, AbuseReport):
            return ev.ReportExpired(header=header, case_id=after.case_id)
        case ExpiringCase.Expired():
            return ev.ReportCaseExpired(header=header)
    raise ValueError(f"no public event for {type(domain_event).__name__}")


def Translator(after: Any) -> EventTranslator:
    """The relay's translation; `after(event)` is the aggregate right after it."""
    return EventTranslator(
        "reports",
        lambda aggregate: COLLECTIONS[type(aggregate)],
        PUBLIC_NAMES,
        public_message,
        after,
    )


def public_name(domain_event: Any, aggregate: Any) -> str:
    """The public name of `domain_event`, recorded by `aggregate` (an event
    with none: its class's name)."""
    if type(domain_event) not in PUBLIC_NAMES:
        return type(domain_event).__name__
    return public_name_in(PUBLIC_NAMES, domain_event, aggregate)
