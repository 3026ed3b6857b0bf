"""Appeals of report decisions, as the appeals service's events tell them.

An appeal filed against `report-cases/{id}` is recorded on the case; an
appeal decided UPHOLD reverses the decision (restrictions lifted, or a
no-violation decision back to review). Both commands are idempotent on the
appeal id, and the Kafka offset is committed only after the command is
saved (`casemesh.platform.consuming`), so the effect is exactly once. A lost
race, the database away, or a case whose personal fields this process cannot
read yet (a master key missing from its secret): the event is read again; an
event that can never apply (naming no case we keep, say) is set aside, logged
and counted.
"""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaBroker, KafkaRouter

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.platform import envelope
from casemesh.platform.consuming import Place, consumer_broker, subscribe
from casemesh.platform.logging import get_logger
from casemesh_reports.application import Reports

log = get_logger(__name__)

APPEALS_TOPIC = topics.APPEALS
PREFIX = "report-cases/"


def handle(app: Reports, event: envelope.CloudEvent) -> None:
    """Applies one appeals event (synchronously: the event store is)."""
    match event.message_if(aev.AppealFiled, aev.AppealDecided):
        case aev.AppealFiled() as filed:
            if filed.kind == "DECISION_APPEAL" and filed.appeal_of.startswith(PREFIX):
                appeal = f"appeals/{filed.header.appeal_id}"
                case_id = filed.appeal_of.removeprefix(PREFIX)
                if app.lodge_appeal(case_id, appeal, filed.filer.user_id, filed_at=event.time):
                    log.info("report_case.appealed", case_id=case_id, appeal=appeal)
        case aev.AppealDecided() as decided:
            if decided.appeal_of.startswith(PREFIX) and decided.outcome == "UPHOLD":
                app.reverse(
                    decided.appeal_of.removeprefix(PREFIX), f"appeals/{decided.header.appeal_id}"
                )


def build_broker(app: Reports, bootstrap: str, group_id: str) -> KafkaBroker:
    async def apply(event: envelope.CloudEvent, place: Place) -> None:
        await asyncio.to_thread(handle, app, event)

    router = KafkaRouter()
    subscribe(router, [APPEALS_TOPIC], consumer="reports", group_id=group_id, handle=apply)
    return consumer_broker(bootstrap, "casemesh-reports", router)
