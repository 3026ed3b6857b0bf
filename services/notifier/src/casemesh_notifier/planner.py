"""From case events to notification jobs, exactly once in effect.

For each consumed event, in ONE transaction: record the event id as consumed
(a redelivered event stops here and changes nothing), update what we know of
the case's parties (contact preferences as carried by the events, last
status), and create the jobs (unique per event id × party × channel × recipient). The
Kafka offset is committed only after this transaction.

A ticket has one party, its requester; a copyright case has its filer and,
once a decision or counter-notice names them, the uploader. Each party hears
what concerns them, in their language.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from google.protobuf.message import Message
from psycopg.types.json import Jsonb

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_notifier.labels import local_date, restriction_lines, statement_text, target_word
from casemesh_notifier.templates import render

log = get_logger(__name__)

JOB_NAMESPACE = uuid.UUID("0b7f3c1e-3c1d-4a56-a1f4-6f1f3f0c2a90")
JOBS_CHANNEL = "notification_jobs"

MESSAGES: dict[str, type[Message]] = {
    f"casemesh.{topic}.{cls.DESCRIPTOR.name}.v1": cls
    for topic, classes in (
        (
            "tickets",
            (
                ev.TicketCreated,
                ev.TicketAssigned,
                ev.CommentAdded,
                ev.InfoRequested,
                ev.TicketPutOnHold,
                ev.TicketSolved,
                ev.TicketReopened,
                ev.TicketClosed,
                ev.TicketCancelled,
                ev.TicketRated,
            ),
        ),
        (
            "appeals",
            (
                aev.AppealFiled,
                aev.AppealAssigned,
                aev.AppealInfoRequested,
                aev.AppealInfoAdded,
                aev.AppealDecided,
                aev.CounterNoticeFiled,
                aev.CourtActionRecorded,
                aev.ContentRestored,
                aev.AppealWithdrawn,
                aev.AppealAbandoned,
            ),
        ),
        (
            "reports",
            (
                rev.ReportFiled,
                rev.ReportResolved,
                rev.ReportVoided,
                rev.ReportDecisionReversed,
                rev.ReportCaseDecided,
                rev.ReportCaseDecisionReversed,
                rev.ReporterWarned,
                rev.ReporterSuspended,
                rev.ReporterSuspensionLifted,
            ),
        ),
        ("helpcenter", (hev.VerificationCodeIssued,)),
    )
    for cls in classes
}


@dataclass(frozen=True)
class Party:
    role: str
    locale: str
    email: str
    phone: str
    channels: list[str]
    subject: str
    status: str


@dataclass(frozen=True)
class Step:
    """Something a party should hear about: a template and its parameters."""

    template: str
    text: str = ""
    due: datetime | None = None


def job_id(event_id: str, party: str, channel: str, recipient: str) -> uuid.UUID:
    return uuid.uuid5(JOB_NAMESPACE, f"{event_id}|{party}|{channel}|{recipient}")


def status_name(status: int) -> str:
    return ev.TicketStatus.Name(status).removeprefix("TICKET_STATUS_")  # type: ignore[arg-type]


def channel_names(contact: ev.ContactPreferences) -> list[str]:
    return [ev.ContactChannel.Name(c).removeprefix("CONTACT_CHANNEL_") for c in contact.channels]


def ticket_step(message: Message, previous_status: str) -> Step | None:
    """Which step of a ticket's journey (if any) this event tells the requester about."""
    match message:
        case ev.TicketCreated():
            return Step("ticket.received")
        case ev.InfoRequested():
            return Step("ticket.info_requested", message.message)
        case ev.CommentAdded() if not message.internal and not message.by_requester:
            return Step("ticket.agent_reply", message.body)
        case ev.CommentAdded() if message.by_requester and previous_status == "SOLVED":
            # The requester's reply reopened a solved ticket: confirm it is open again.
            return Step("ticket.reopened")
        case ev.TicketSolved():
            return Step("ticket.solved", message.resolution)
        case ev.TicketReopened():
            return Step("ticket.reopened")
        case ev.TicketClosed():
            return Step("ticket.closed")
    return None


def appeal_steps(message: Any) -> dict[str, Step]:
    """What each party of a copyright case hears about this event."""
    due = (
        message.header.next_step_due.ToDatetime().replace(tzinfo=ZoneInfo("UTC"))
        if (message.header.HasField("next_step_due"))
        else None
    )
    match message:
        case aev.AppealFiled() if message.missing_elements:
            return {
                "filer": Step(
                    "appeal.info_requested",
                    "\n".join(f"- {m}" for m in message.missing_elements),
                    due,
                )
            }
        case aev.AppealFiled():
            return {"filer": Step("appeal.received", due=due)}
        case aev.AppealInfoRequested():
            return {"filer": Step("appeal.info_requested", message.message, due)}
        case aev.AppealDecided():
            reasons = (
                f"{message.reasons.ground}\n{message.reasons.facts}\n{message.reasons.redress}"
            )
            template = "appeal.upheld" if message.outcome == "UPHOLD" else "appeal.rejected"
            steps = {"filer": Step(template, reasons, due)}
            if message.HasField("affected_uploader"):
                steps["uploader"] = Step("appeal.content_removed", reasons, due)
            return steps
        case aev.CounterNoticeFiled():
            return {
                "filer": Step("appeal.counter_notice_received", message.reason, due),
                "uploader": Step("appeal.counter_notice_forwarded", due=due),
            }
        case aev.ContentRestored():
            return {"filer": Step("appeal.restored"), "uploader": Step("appeal.restored")}
        case aev.CourtActionRecorded():
            return {"filer": Step("appeal.held"), "uploader": Step("appeal.held")}
        case aev.AppealAbandoned():
            return {"filer": Step("appeal.abandoned")}
    return {}


def _utc(ts: Any) -> datetime:
    return ts.ToDatetime().replace(tzinfo=ZoneInfo("UTC"))  # type: ignore[no-any-return]


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
            text = message.decision_facts
            if message.restrictions:
                text += "\n\n" + "\n".join(
                    "- " + r.replace("DECISION_", "").replace("_", " ").lower()
                    for r in message.restrictions
                )
            return {
                "reporter": Step(
                    template, f"{text}\n\n{message.redress}", _utc(message.appeal_deadline)
                )
            }
        case rev.ReportVoided():
            return {"reporter": Step("report.void", message.reason)}
        case rev.ReportDecisionReversed():
            return {"reporter": Step("report.reversed")}
        case rev.ReportCaseDecided() if (
            message.HasField("affected_uploader") and message.outcome != "ACTION_TAKEN"
        ):
            # A new decision after an appeal: what the earlier one imposed is lifted.
            lifted = restriction_lines(message.restrictions_lifted)
            return {"uploader": Step("report.restriction_lifted", lifted)} if lifted else {}
        case rev.ReportCaseDecided() if message.HasField("affected_uploader"):
            return {
                "uploader": Step(
                    "report.statement",
                    statement_text(message.statement, message.affected_uploader.contact.locale),
                    _utc(message.statement.appeal_deadline),
                )
            }
        case rev.ReportCaseDecisionReversed() if message.restrictions_lifted:
            return {
                "uploader": Step(
                    "report.restriction_lifted", restriction_lines(message.restrictions_lifted)
                )
            }
        case rev.ReporterWarned():
            return {"reporter": Step("report.misuse_warning")}
        case rev.ReporterSuspended():
            return {"reporter": Step("report.reporting_suspended", due=_utc(message.until))}
        case rev.ReporterSuspensionLifted():
            return {"reporter": Step("report.suspension_lifted")}
    return {}


REPORT_APPEAL_TEMPLATES = frozenset(
    {
        "appeal.received",
        "appeal.info_requested",
        "appeal.upheld",
        "appeal.rejected",
        "appeal.abandoned",
    }
)


def for_report_appeal(steps: dict[str, Step], parties: dict[str, Party]) -> dict[str, Step]:
    """An appeal of a report decision is told in its own words (the filer's
    case subject is the appealed `report-cases/…`)."""
    filer = parties.get("filer")
    if filer is None or not filer.subject.startswith("report-cases/"):
        return steps
    return {
        role: replace(step, template="report_" + step.template)
        if step.template in REPORT_APPEAL_TEMPLATES
        else step
        for role, step in steps.items()
    }


class Planner:
    def __init__(self, consumer: str = "notifier") -> None:
        self._consumer = consumer

    async def consume(
        self,
        conn: psycopg.AsyncConnection[Any],
        event: CloudEvent,
        *,
        topic: str,
        partition: int,
        offset: int,
        now: datetime,
    ) -> list[uuid.UUID]:
        """Plans the jobs for one event; returns the new job ids (none for a
        redelivered or uninteresting event)."""
        async with conn.transaction():
            inserted = await conn.execute(
                "INSERT INTO consumed_events (consumer, event_id, topic, kafka_partition,"
                " kafka_offset) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (self._consumer, event.id, topic, partition, offset),
            )
            if inserted.rowcount == 0:
                log.info("event.duplicate", event_id=event.id, type=event.type)
                return []
            cls = MESSAGES.get(event.type)
            if cls is None:
                log.info("event.ignored", event_id=event.id, type=event.type)
                return []
            message = cls.FromString(event.data)
            if event.type.startswith("casemesh.appeals."):
                return await self._plan_appeal(conn, event, message, now)
            if event.type.startswith("casemesh.reports."):
                return await self._plan_report(conn, event, message, now)
            if isinstance(message, hev.VerificationCodeIssued):
                return await self._plan_code(conn, event, message, now)
            return await self._plan_ticket(conn, event, message, now)

    async def _plan_ticket(
        self, conn: psycopg.AsyncConnection[Any], event: CloudEvent, message: Any, now: datetime
    ) -> list[uuid.UUID]:
        header = message.header
        name = f"tickets/{header.ticket_id}"
        status = status_name(header.status)
        if isinstance(message, ev.TicketCreated):
            c = message.contact
            await self._meet(
                conn,
                name,
                "requester",
                message.requester,
                c,
                message.subject,
                status,
                header.version,
            )
        parties = await self._parties(conn, name)
        requester = parties.get("requester")
        if requester is None:
            log.warning("event.unknown_case", event_id=event.id, case=name)
            return []
        await self._moved(conn, name, status, header.version)
        step = ticket_step(message, requester.status)
        if step is None:
            return []
        return await self._jobs(
            conn, event, name, header.ticket_id, {"requester": step}, parties, now
        )

    async def _plan_appeal(
        self, conn: psycopg.AsyncConnection[Any], event: CloudEvent, message: Any, now: datetime
    ) -> list[uuid.UUID]:
        header = message.header
        name = f"appeals/{header.appeal_id}"
        subject = ""
        if isinstance(message, aev.AppealFiled):
            subject = message.work_title or message.removed_item or message.appeal_of
            f = message.filer
            await self._meet(
                conn, name, "filer", f.user_id, f.contact, subject, header.state, header.version
            )
        if isinstance(message, aev.AppealInfoAdded) and message.HasField("filer"):
            f = message.filer
            await self._meet(
                conn,
                name,
                "filer",
                f.user_id,
                f.contact,
                "",
                header.state,
                header.version,
                replace=True,
            )
        uploader = None
        if isinstance(message, aev.AppealDecided) and message.HasField("affected_uploader"):
            uploader = message.affected_uploader
        if isinstance(message, aev.CounterNoticeFiled):
            uploader = message.uploader
        if uploader is not None:
            parties = await self._parties(conn, name)
            title = parties["filer"].subject if "filer" in parties else ""
            await self._meet(
                conn,
                name,
                "uploader",
                uploader.user_id,
                uploader.contact,
                title,
                header.state,
                header.version,
                replace=True,
            )
        parties = await self._parties(conn, name)
        if "filer" not in parties:
            log.warning("event.unknown_case", event_id=event.id, case=name)
            return []
        await self._moved(conn, name, header.state, header.version)
        return await self._jobs(
            conn,
            event,
            name,
            header.appeal_id,
            for_report_appeal(appeal_steps(message), parties),
            parties,
            now,
        )

    async def _plan_code(
        self,
        conn: psycopg.AsyncConnection[Any],
        event: CloudEvent,
        message: hev.VerificationCodeIssued,
        now: datetime,
    ) -> list[uuid.UUID]:
        """A one-time code, by SMS to the number it proves (nobody else's party)."""
        holder = Party(
            role="holder",
            locale=message.locale or "zh-CN",
            email="",
            phone=message.phone,
            channels=["SMS"],
            subject="",
            status="",
        )
        step = Step("verification.code", message.code, _utc(message.expire_time))
        return await self._jobs(
            conn, event, event.subject, event.subject.rpartition("/")[2], {"holder": step},
            {"holder": holder}, now,
        )  # fmt: skip

    async def _plan_report(
        self, conn: psycopg.AsyncConnection[Any], event: CloudEvent, message: Any, now: datetime
    ) -> list[uuid.UUID]:
        """Reports (`reports/…`) have their reporter, cases (`report-cases/…`)
        the uploader a decision names, standings (`reporters/…`) the reporter."""
        header = message.header
        name = event.subject
        party: tuple[str, str, Any, str] | None = None
        match message:
            case rev.ReportFiled():
                word = target_word(message.target.type, message.contact.locale)
                party = (
                    "reporter",
                    message.reporter,
                    message.contact,
                    f"{word} {message.target.id}",
                )
            case rev.ReportCaseDecided() if message.HasField("affected_uploader"):
                u = message.affected_uploader
                party = ("uploader", u.user_id, u.contact, message.statement.puid)
            case rev.ReporterWarned() | rev.ReporterSuspended() | rev.ReporterSuspensionLifted():
                party = ("reporter", message.reporter, message.contact, "")
        if party is not None:
            role, user_id, contact, subject = party
            await self._meet(
                conn,
                name,
                role,
                user_id,
                contact,
                subject,
                header.state,
                header.version,
                replace=True,
            )
        steps = report_steps(message)
        if not steps:
            return []
        parties = await self._parties(conn, name)
        if not parties:
            log.warning("event.unknown_case", event_id=event.id, case=name)
            return []
        await self._moved(conn, name, header.state, header.version)
        return await self._jobs(conn, event, name, header.aggregate_id, steps, parties, now)

    async def _meet(
        self,
        conn: psycopg.AsyncConnection[Any],
        name: str,
        role: str,
        user_id: str,
        contact: ev.ContactPreferences,
        subject: str,
        status: str,
        version: int,
        replace: bool = False,
    ) -> None:
        """Records a party of a case as the events describe them."""
        on_conflict = (
            "DO UPDATE SET user_id = EXCLUDED.user_id, locale = EXCLUDED.locale,"
            " email = EXCLUDED.email, phone = EXCLUDED.phone, channels = EXCLUDED.channels"
            if replace
            else "DO NOTHING"
        )
        await conn.execute(
            "INSERT INTO case_parties (case_name, party, user_id, locale, email, phone, channels,"
            " subject, status, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (case_name, party) {on_conflict}",
            (
                name,
                role,
                user_id,
                contact.locale or "en",
                contact.email,
                contact.phone,
                channel_names(contact),
                subject,
                status,
                version,
            ),
        )

    @staticmethod
    async def _moved(
        conn: psycopg.AsyncConnection[Any], name: str, status: str, version: int
    ) -> None:
        await conn.execute(
            "UPDATE case_parties SET status = %s, version = %s"
            " WHERE case_name = %s AND version < %s",
            (status, version, name, version),
        )

    async def _jobs(
        self,
        conn: psycopg.AsyncConnection[Any],
        event: CloudEvent,
        name: str,
        ident: str,
        steps: dict[str, Step],
        parties: dict[str, Party],
        now: datetime,
    ) -> list[uuid.UUID]:
        created: list[uuid.UUID] = []
        ref = ident[:8].upper()
        for role, step in steps.items():
            party = parties.get(role)
            if party is None:
                continue
            rendered = render(
                step.template,
                party.locale,
                ref=ref,
                subject=party.subject,
                text=step.text,
                due=local_date(step.due, party.locale),
            )
            for channel in party.channels:
                recipient = party.email if channel == "EMAIL" else party.phone
                if not recipient:
                    continue
                jid = job_id(event.id, role, channel, recipient)
                result = await conn.execute(
                    "INSERT INTO notification_jobs (id, cause_event_id, party, case_name,"
                    " channel, recipient, template, locale, subject, body, params,"
                    " next_attempt_at, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (cause_event_id, party, channel, recipient) DO NOTHING",
                    (
                        jid,
                        event.id,
                        role,
                        name,
                        channel,
                        recipient,
                        step.template,
                        party.locale,
                        rendered.subject if channel == "EMAIL" else "",
                        rendered.body if channel == "EMAIL" else rendered.sms,
                        Jsonb({"ref": ref, "text": step.text, "party": role}),
                        now,
                        now,
                    ),
                )
                if result.rowcount:
                    created.append(jid)
        if created:
            await conn.execute("NOTIFY notification_jobs")
            log.info(
                "jobs.planned",
                event_id=event.id,
                steps=sorted(s.template for s in steps.values()),
                count=len(created),
            )
        return created

    @staticmethod
    async def _parties(conn: psycopg.AsyncConnection[Any], name: str) -> dict[str, Party]:
        cur = await conn.execute(
            "SELECT party, locale, email, phone, channels, subject, status"
            " FROM case_parties WHERE case_name = %s ORDER BY party FOR UPDATE",
            (name,),
        )
        return {row[0]: Party(*row) for row in await cur.fetchall()}
