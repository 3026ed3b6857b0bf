"""From case events to notification jobs, exactly once in effect.

For each consumed event, in ONE transaction: record the event id as consumed
(a redelivered event stops here and changes nothing), update what we know of
the case (contact preferences as carried by the events, last status), and
create the jobs (unique per event id × channel × recipient). The Kafka offset
is committed only after this transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from google.protobuf.message import Message
from psycopg.types.json import Jsonb

from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_notifier.templates import render

log = get_logger(__name__)

JOB_NAMESPACE = uuid.UUID("0b7f3c1e-3c1d-4a56-a1f4-6f1f3f0c2a90")
JOBS_CHANNEL = "notification_jobs"

TICKET_MESSAGES: dict[str, type[Message]] = {
    f"casemesh.tickets.{cls.DESCRIPTOR.name}.v1": cls
    for cls in (
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
    )
}


@dataclass(frozen=True)
class Case:
    name: str
    requester: str
    locale: str
    email: str
    phone: str
    channels: list[str]
    subject: str
    status: str
    version: int


@dataclass(frozen=True)
class Step:
    """Something the requester should hear about."""

    template: str
    text: str = ""


def job_id(event_id: str, channel: str, recipient: str) -> uuid.UUID:
    return uuid.uuid5(JOB_NAMESPACE, f"{event_id}|{channel}|{recipient}")


def status_name(status: int) -> str:
    return ev.TicketStatus.Name(status).removeprefix("TICKET_STATUS_")  # type: ignore[arg-type]


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
            cls = TICKET_MESSAGES.get(event.type)
            if cls is None:
                log.info("event.ignored", event_id=event.id, type=event.type)
                return []
            message = cls.FromString(event.data)
            return await self._plan_ticket(conn, event, message, now)

    async def _plan_ticket(
        self, conn: psycopg.AsyncConnection[Any], event: CloudEvent, message: Any, now: datetime
    ) -> list[uuid.UUID]:
        header = message.header
        name = f"tickets/{header.ticket_id}"
        status = status_name(header.status)
        if isinstance(message, ev.TicketCreated):
            c = message.contact
            await conn.execute(
                "INSERT INTO case_contacts (case_name, requester, locale, email, phone, channels,"
                " subject, status, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (case_name) DO NOTHING",
                (
                    name,
                    message.requester,
                    c.locale,
                    c.email,
                    c.phone,
                    [
                        ev.ContactChannel.Name(ch).removeprefix("CONTACT_CHANNEL_")
                        for ch in c.channels
                    ],
                    message.subject,
                    status,
                    header.version,
                ),
            )
        case = await self._case(conn, name)
        if case is None:
            log.warning("event.unknown_case", event_id=event.id, case=name)
            return []
        await conn.execute(
            "UPDATE case_contacts SET status = %s, version = %s"
            " WHERE case_name = %s AND version < %s",
            (status, header.version, name, header.version),
        )
        step = ticket_step(message, case.status)
        if step is None:
            return []
        rendered = render(
            step.template,
            case.locale,
            ref=header.ticket_id[:8].upper(),
            subject=case.subject,
            text=step.text,
        )
        created: list[uuid.UUID] = []
        for channel in case.channels:
            recipient = case.email if channel == "EMAIL" else case.phone
            if not recipient:
                continue
            jid = job_id(event.id, channel, recipient)
            result = await conn.execute(
                "INSERT INTO notification_jobs (id, cause_event_id, case_name, channel, recipient,"
                " template, locale, subject, body, params, next_attempt_at, created_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (cause_event_id, channel, recipient) DO NOTHING",
                (
                    jid,
                    event.id,
                    name,
                    channel,
                    recipient,
                    step.template,
                    case.locale,
                    rendered.subject if channel == "EMAIL" else "",
                    rendered.body if channel == "EMAIL" else rendered.sms,
                    Jsonb({"ref": header.ticket_id[:8].upper(), "text": step.text}),
                    now,
                    now,
                ),
            )
            if result.rowcount:
                created.append(jid)
        if created:
            await conn.execute("NOTIFY notification_jobs")
            log.info("jobs.planned", event_id=event.id, template=step.template, count=len(created))
        return created

    @staticmethod
    async def _case(conn: psycopg.AsyncConnection[Any], name: str) -> Case | None:
        cur = await conn.execute(
            "SELECT case_name, requester, locale, email, phone, channels, subject, status, version"
            " FROM case_contacts WHERE case_name = %s FOR UPDATE",
            (name,),
        )
        row = await cur.fetchone()
        return Case(*row) if row else None
