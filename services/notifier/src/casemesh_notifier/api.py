"""The notifier's gRPC service (`casemesh.v1.NotificationService`): what it
told a person about their cases, from its jobs table, for that person alone
(the gateway vouches for who calls; the person's exports read it too).

A person's messages are the jobs planned for them: each job records its
party's user id when it is planned, so a later event naming someone else
in the same part of a case (a decision correcting who the uploader is)
hands none of the earlier person's messages to the next. One-time codes
belong to no case: they are not listed (their holder's user id is kept
for an erasure to find them). An erased person's jobs, or those of a case past its retention
period, keep their name, case, channel, state and times only (the erasure
blanked the rest), so that is what they show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import grpc
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from casemesh.platform.callers import vouched
from casemesh.platform.cases import page_after
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.paging import fitting, older_than, page_of, page_size_of
from casemesh.v1 import notifications_pb2 as pb
from casemesh.v1 import notifications_pb2_grpc as pb_grpc
from casemesh.v1 import tickets_pb2

Ctx: TypeAlias = grpc.aio.ServicerContext

# Messages a page holds at most. An e-mail's text can be long (an agent's
# whole reply; an appeal's list of removed items: hundreds of kilobytes, and
# a megabyte for a notice filed before items were limited), so a page is
# also cut short by size (`paging.fitting`), to stay under gRPC's 4 MiB.
MOST = 50

# A job's status as the person is shown it (`sending` is still to be sent:
# its answer may not come, and then it is tried again).
STATES = {
    "pending": pb.NOTIFICATION_STATE_PENDING,
    "sending": pb.NOTIFICATION_STATE_PENDING,
    "sent": pb.NOTIFICATION_STATE_SENT,
    "parked": pb.NOTIFICATION_STATE_FAILED,
    "cancelled": pb.NOTIFICATION_STATE_CANCELLED,
}


@dataclass(frozen=True, slots=True)
class Sent:
    """One job as the person sees it."""

    id: uuid.UUID
    case_name: str
    channel: str
    recipient: str
    subject: str
    body: str
    status: str
    created_at: datetime
    sent_at: datetime | None


async def notifications_of(
    pool: AsyncConnectionPool[Any],
    person: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Sent]:
    """Up to `limit` of the person's jobs, newest first, from after `after`
    (a job's creation time and id)."""
    # (`user_id <> ''` lets a generic plan use the partial index.)
    theirs = "user_id = %s AND user_id <> '' AND party <> 'holder'"  # no one-time codes
    where, args = older_than(theirs, [person], after)
    async with pool.connection() as conn, conn.cursor(row_factory=class_row(Sent)) as cur:
        await cur.execute(
            "SELECT id, case_name, channel, recipient, subject, body, status, created_at, sent_at"
            f" FROM notification_jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
            (*args, limit),
        )
        found: list[Sent] = await cur.fetchall()
        return found


def notification_message(n: Sent) -> pb.Notification:
    return pb.Notification(
        name=f"notifications/{n.id}",
        case=n.case_name,
        channel=tickets_pb2.Channel.Value(f"CHANNEL_{n.channel}"),
        recipient=n.recipient,
        subject=n.subject,
        body=n.body,
        state=STATES.get(n.status, pb.NOTIFICATION_STATE_UNSPECIFIED),
        create_time=to_timestamp(n.created_at),
        send_time=to_timestamp(n.sent_at if n.status == "sent" else None),
    )


async def list_notifications(
    pool: AsyncConnectionPool[Any], person: str, page_size: int, page_token: str
) -> pb.ListMyNotificationsResponse:
    """A page of the person's notifications, newest first, and the next page's
    token: fewer than asked for when their messages would not fit
    `paging.PAGE_BYTES`, the token then leading on from the last one held."""
    limit = page_size_of(page_size, most=MOST)
    after = page_after(page_token)
    rows = await notifications_of(pool, person, after, limit + 1)
    messages = [notification_message(n) for n in rows]
    kept = fitting((m.ByteSize() for m in messages), limit)
    page, token = page_of(rows[: kept + 1], kept, lambda n: (n.created_at, str(n.id)))
    return pb.ListMyNotificationsResponse(
        notifications=messages[: len(page)], next_page_token=token
    )


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def ListMyNotifications(
        self, request: pb.ListMyNotificationsRequest, context: Ctx
    ) -> pb.ListMyNotificationsResponse:
        caller = vouched().identity.subject
        return await list_notifications(self.pool, caller, request.page_size, request.page_token)
