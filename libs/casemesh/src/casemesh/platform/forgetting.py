"""A case service hearing of erasures (casemesh.privacy.v1, `PersonErased`).

Its event store needs nothing: the erased person's fields there are sealed
with keys that are gone. Two things of the service's own still hold them in
the clear, and `CaseApplication.forget_person` mends both:

- the unwrapped keys this process keeps in memory (`DataKeys.forget`);
- its case index, which keeps the text agents search: the rows of the
  person's cases are rendered again, now with their fields erased.

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
from typing import Any

from faststream.kafka import KafkaBroker, KafkaRouter

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.caseindex import CaseRow
from casemesh.platform.consuming import Place, consumer_broker, start_broker, subscribe
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger

log = get_logger(__name__)


class ErasureFollower:
    """A worker (`serve_servicer`'s) that makes `app` forget each erased
    person, its case index rows rendered again by `to_row`."""

    def __init__(
        self, app: Any, to_row: Callable[[Any], CaseRow], *, bootstrap: str, group_id: str
    ) -> None:
        self._app, self._to_row = app, to_row
        self._bootstrap, self._group_id = bootstrap, group_id
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name=f"{app.name}-erasures", daemon=True)

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
            consumer=f"{self._app.name}-erasures",
            group_id=self._group_id,
            handle=self._handle,
        )
        return consumer_broker(self._bootstrap, f"casemesh-{self._app.name}-erasures", router)

    async def _handle(self, event: CloudEvent, place: Place) -> None:
        message = event.message_if(PersonErased)
        if not isinstance(message, PersonErased):
            return
        cases = await asyncio.to_thread(self._app.forget_person, message.person, self._to_row)
        log.info("person.forgotten", person=message.person, cases=cases)
