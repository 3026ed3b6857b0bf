"""Appeals of report decisions, as the appeals service's events tell them.

An appeal filed against `report-cases/{id}` is recorded on the case; an
appeal decided UPHOLD reverses the decision (restrictions lifted, or a
no-violation decision back to review). Both commands are idempotent on the
appeal id, and the Kafka offset is committed only after the command is
saved (NACK_ON_ERROR), so the effect is exactly once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.annotations import KafkaMessage
from google.protobuf.message import DecodeError

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.platform import envelope
from casemesh.platform.logging import get_logger, library_logger
from casemesh_reports.application import Reports

log = get_logger(__name__)

APPEALS_TOPIC = topics.APPEALS
PREFIX = "report-cases/"


def handle(app: Reports, event: envelope.CloudEvent) -> None:
    """Applies one appeals event (synchronously: the event store is)."""
    if event.type == "casemesh.appeals.AppealFiled.v1":
        filed = aev.AppealFiled.FromString(event.data)
        if filed.kind == "DECISION_APPEAL" and filed.appeal_of.startswith(PREFIX):
            appeal = f"appeals/{filed.header.appeal_id}"
            case_id = filed.appeal_of.removeprefix(PREFIX)
            if app.lodge_appeal(case_id, appeal, filed.filer.user_id):
                log.info("report_case.appealed", case_id=case_id, appeal=appeal)
    elif event.type == "casemesh.appeals.AppealDecided.v1":
        decided = aev.AppealDecided.FromString(event.data)
        if decided.appeal_of.startswith(PREFIX) and decided.outcome == "UPHOLD":
            app.reverse(
                decided.appeal_of.removeprefix(PREFIX), f"appeals/{decided.header.appeal_id}"
            )


def build_broker(app: Reports, bootstrap: str, group_id: str) -> KafkaBroker:
    router = KafkaRouter()

    @router.subscriber(
        APPEALS_TOPIC,
        group_id=group_id,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
    async def on_appeal_event(body: bytes, msg: KafkaMessage) -> None:
        record: Any = msg.raw_message
        try:
            event = envelope.parse(record.key, record.value, record.headers)
            await asyncio.to_thread(handle, app, event)
        except (envelope.EnvelopeError, DecodeError, ValueError) as exc:
            # Not ours, or naming no case we keep: retrying cannot help.
            log.error("appeal_event.skipped", offset=record.offset, error=repr(exc))
        except Exception as exc:
            # A lost race or the database away: pause, then the nack rewinds to
            # this record and it is applied again (the commands are idempotent).
            log.error("appeal_event.retry", offset=record.offset, error=repr(exc))
            await asyncio.sleep(1.0)
            raise

    broker = KafkaBroker(
        bootstrap, client_id="casemesh-reports", logger=library_logger("casemesh.faststream")
    )
    broker.include_router(router)
    return broker
