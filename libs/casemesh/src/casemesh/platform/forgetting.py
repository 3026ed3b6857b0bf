"""A case service hearing of erasures (casemesh.privacy.v1, `PersonErased`).

Its event store needs nothing: the erased person's fields there are sealed
with keys that are gone. Two things of the service's own still hold them in
the clear, and its `forget_person` mends both (`CaseApplication`'s, the
reports application's):

- the unwrapped keys this process keeps in memory (`DataKeys.forget`);
- its read model, which keeps the text agents list and search: the rows of
  the person's cases are rendered again, now with their fields erased.

`ErasureFollower` runs that for each erasure, beside the service's API, in
one consumer group per service (each erasure is handled once, and again
after a crash before its offset was committed: forgetting twice is
harmless). Other replicas of the service stop using the person's keys within
their `key_cache_seconds`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Protocol

from faststream.kafka import KafkaBroker, KafkaRouter

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.consuming import Place, consumer_broker, start_broker, subscribe
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger

log = get_logger(__name__)


def erasure_group(service: str) -> str:
    """The consumer group in which `service` hears erasures."""
    return f"casemesh-{service}-erasures"


class Hearing(Protocol):
    """The settings of a process that hears erasures."""

    service_name: str
    kafka_bootstrap: str


class ErasureFollower:
    """A worker (`serve_servicer`'s) that calls `forget(person)` (in a worker
    thread) for each erased person; the service's name (`cfg.service_name`)
    names it in logs and its consumer group."""

    def __init__(self, cfg: Hearing, forget: Callable[[str], int]) -> None:
        self._service, self._forget, self._bootstrap = cfg.service_name, forget, cfg.kafka_bootstrap
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{self._service}-erasures", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        self._loop.run_until_complete(self._follow())
        self._loop.close()

    async def _follow(self) -> None:
        broker = await start_broker(self._broker, self._stop, "erasures")
        try:
            await self._stop.wait()
        finally:
            if broker is not None:
                await broker.stop()

    def _broker(self) -> KafkaBroker:
        router = KafkaRouter()
        subscribe(
            router,
            [topics.PRIVACY],
            consumer=f"{self._service}-erasures",
            group_id=erasure_group(self._service),
            handle=self._handle,
        )
        return consumer_broker(self._bootstrap, f"casemesh-{self._service}-erasures", router)

    async def _handle(self, event: CloudEvent, place: Place) -> None:
        message = event.message_if(PersonErased)
        if not isinstance(message, PersonErased):
            return
        cases = await asyncio.to_thread(self._forget, message.person)
        log.info("person.forgotten", person=message.person, cases=cases)
