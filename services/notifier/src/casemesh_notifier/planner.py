"""From case events to notification jobs, exactly once in effect.

For each consumed event, in ONE transaction (shared by the batch of events
the consumer received together): record the event id as consumed
(a redelivered event stops here and changes nothing), then let the plan of
the event's kind of case (`registry.py`, `cases.py`) update what we know of
the case's parties (contact preferences as carried by the events, last
status) and create the jobs (unique per event id × party × channel ×
recipient, `store.py`). The Kafka offsets are committed only after this
transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh_notifier import store
from casemesh_notifier.cases import Planning
from casemesh_notifier.registry import MESSAGES, PLANS

log = get_logger(__name__)


class Planner:
    def __init__(
        self, consumer: str = "notifier", time_zone: str = "Asia/Shanghai", replies: bool = False
    ) -> None:
        """`replies`: whether ticket e-mails can be answered by e-mail (their
        signature says so, or that replies are not read)."""
        self._consumer = consumer
        self._zone = ZoneInfo(time_zone)
        self._replies = replies

    async def plan(
        self,
        conn: psycopg.AsyncConnection[Any],
        event: CloudEvent,
        *,
        topic: str,
        partition: int,
        offset: int,
        now: datetime,
    ) -> list[uuid.UUID]:
        """Plans the jobs for one event in the caller's transaction (the
        consumer's, shared by a batch of events); returns the new job ids
        (none for a redelivered or uninteresting event). The caller wakes the
        senders (`store.wake_senders`), once for the transaction."""
        first = await store.record_consumed(
            conn, self._consumer, event.id, topic=topic, partition=partition, offset=offset
        )
        if not first:
            log.info("event.duplicate", event_id=event.id, type=event.type)
            return []
        cls = MESSAGES.get(event.type)
        if cls is None:
            log.info("event.ignored", event_id=event.id, type=event.type)
            return []
        plan = PLANS[cls]
        at = Planning(now, self._zone, self._replies)
        return await plan(conn, event, cls.FromString(event.data), at)
