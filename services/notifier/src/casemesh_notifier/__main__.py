"""`python -m casemesh_notifier [run]`: consume case events, deliver e-mail and
SMS, publish delivery outcomes, and serve what was sent to each person
(`NotificationService`, to the gateway). `python -m casemesh_notifier replay [JOB_ID…]`:
put parked jobs back in the queue."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from typing import Any

from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool

from casemesh.platform import settings as settings_mod
from casemesh.platform.clock import SystemClock
from casemesh.platform.consuming import start_broker, watch_lag
from casemesh.platform.entrypoint import exit_on_sigterm
from casemesh.platform.fields import fields_of
from casemesh.platform.forgetting import ErasureFollower
from casemesh.platform.grpcutil import serve
from casemesh.platform.logging import configure_logging, get_logger
from casemesh.platform.metrics import serve_metrics
from casemesh.platform.outbox import OutboxPublisher
from casemesh.platform.personal import AsyncSealer, open_sealer
from casemesh.platform.pools import async_pool, wait_for_database
from casemesh.platform.starting import alive_while_starting
from casemesh.platform.telemetry import configure_tracing
from casemesh.v1 import notifications_pb2, notifications_pb2_grpc
from casemesh_notifier.api import NotificationServicer
from casemesh_notifier.channels import Channel, HttpEmailChannel, HttpSmsChannel, SmtpChannel
from casemesh_notifier.consumers import TOPICS, build_broker, build_router
from casemesh_notifier.delivery import RECORD_MARGIN_S, Delivery, replay_parked
from casemesh_notifier.metrics import JobsCollector
from casemesh_notifier.outbox import NOTIFICATIONS
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import create_schema
from casemesh_notifier.settings import NotifierServiceSettings, NotifierSettings

log = get_logger(__name__)

# The most a stop waits for the consumers to leave their groups (Kafka away:
# the broker forgets them after their session timeout).
STOP_CONSUMING_S = 10.0


def email_channel(cfg: NotifierSettings) -> SmtpChannel | HttpEmailChannel:
    """The provider's HTTP API when configured (it honours idempotency keys), else SMTP."""
    if cfg.email_api_url:
        return HttpEmailChannel(
            url=cfg.email_api_url,
            sender=cfg.mail_from,
            api_key=cfg.email_api_key,
            timeout=cfg.email_api_timeout_seconds,
        )
    return SmtpChannel(
        **fields_of(cfg, "host", "port", "starttls", "username", "password", prefix="smtp_"),
        sender=cfg.mail_from,
        timeout=cfg.smtp_timeout_seconds,
        data_timeout=cfg.smtp_data_timeout_seconds,
    )


async def run(cfg: NotifierServiceSettings) -> None:
    wait_for_database(cfg.database_url, database="notifier")
    await create_schema(cfg.database_url)
    # Ticket events carry their personal fields sealed: the planner reveals
    # them (a key look-up that misses memory runs in a worker thread). Opened
    # before SIGTERM is taken over: a start waiting for the key database
    # ends at once when told to.
    personal = AsyncSealer(open_sealer(cfg))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # Each sender worker holds a connection at most; the consumers and the
    # API need their own.
    pool = async_pool(cfg.database_url, min_size=1, max_size=cfg.send_concurrency + 6)
    await pool.open()
    sms = HttpSmsChannel(url=cfg.sms_url, api_key=cfg.sms_api_key, timeout=cfg.sms_timeout_seconds)
    email = email_channel(cfg)
    channels: dict[str, Channel] = {"EMAIL": email, "SMS": sms}
    clock = SystemClock()
    delivery = Delivery(
        pool=pool, conninfo=cfg.database_url, channels=channels, cfg=cfg, clock=clock
    )
    publisher = OutboxPublisher(
        conninfo=cfg.database_url,
        bootstrap=cfg.kafka_bootstrap,
        outbox=NOTIFICATIONS,
        client_id="notifier-outbox",
    )
    # Delivery needs only the database: it starts whether or not Kafka is up.
    tasks = [
        asyncio.create_task(delivery.run(stop), name="delivery"),
        asyncio.create_task(publisher.run(stop), name="outbox"),
        asyncio.create_task(
            watch_lag(cfg.kafka_bootstrap, cfg.consumer_group, TOPICS, stop), name="lag"
        ),
        asyncio.create_task(serve_notifications(cfg, pool, stop), name="grpc"),
    ]
    # Each process forgets every erased person's keys itself (the shared
    # group hands an erasure to one replica).
    erasures = ErasureFollower(cfg, None, personal.forget)
    erasures.start()
    broker = await start_broker(
        lambda: build_broker(
            cfg.kafka_bootstrap,
            build_router(
                pool=pool,
                group_id=cfg.consumer_group,
                clock=clock,
                planner=Planner(personal, time_zone=cfg.time_zone, replies=cfg.replies_open),
            ),
        ),
        stop,
        "notifier",
    )
    failed = False
    try:
        stopping = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopping}:
            if stop.is_set():
                break  # asked to stop: the loops end with it
            # A loop that ends on its own is a fault: exit, and let the
            # orchestrator restart the process, rather than run half a notifier.
            log.error(
                "notifier.task_ended",
                task=task.get_name(),
                error=repr(task.exception()) if not task.cancelled() else "cancelled",
            )
            failed = True
        stopping.cancel()
    finally:
        log.info("notifier.stopping")
        stop.set()
        # The API drains for its delay and grace while the loops end, and a
        # send under way is finished and recorded: cut off, it would be taken
        # over once its lease lapsed and perhaps reach its person twice. All
        # of it within this long of the stop (the pod's termination grace
        # covers it: deploy/k8s/base/notifier.yaml).
        drain = cfg.shutdown_delay_seconds + cfg.shutdown_grace_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(30.0, drain + 5, cfg.longest_send + RECORD_MARGIN_S)
        with contextlib.suppress(TimeoutError):  # Kafka away: its consumer goes with us
            async with asyncio.timeout(STOP_CONSUMING_S):
                await asyncio.gather(
                    broker.stop() if broker is not None else asyncio.sleep(0),
                    asyncio.to_thread(erasures.stop),
                )
        _, unfinished = await asyncio.wait(tasks, timeout=max(1.0, deadline - loop.time()))
        for task in unfinished:
            log.error("notifier.task_not_stopped", task=task.get_name())
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for task in tasks:
            if task not in unfinished and not task.cancelled() and task.exception() is not None:
                log.error(
                    "notifier.task_failed", task=task.get_name(), error=repr(task.exception())
                )
        await sms.aclose()
        await email.aclose()
        await pool.close()
        await personal.aclose()
    if failed:
        raise SystemExit(1)


async def serve_notifications(
    cfg: NotifierServiceSettings, pool: AsyncConnectionPool[Any], stop: asyncio.Event
) -> None:
    """Serves `NotificationService` until `stop`, then drains it."""
    service = notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"]
    await serve(
        cfg,
        register=lambda server: notifications_pb2_grpc.add_NotificationServiceServicer_to_server(
            NotificationServicer(pool), server
        ),
        service_names=[service.full_name],
        stop=stop,
    )


USAGE = "usage: python -m casemesh_notifier [run | replay [JOB_ID ...]]"


def job_ids(given: list[str]) -> list[str]:
    """The jobs `replay` was given: a job's id, or the key a provider saw
    for it (`<job id>.N` once it was given a new address) read as its job.
    One that is neither stops the command, naming it, before anything is
    queued again."""
    ids = []
    for text in given:
        head, _, tail = text.partition(".")
        try:
            ids.append(str(uuid.UUID(head)))
            if tail and not tail.isdigit():
                raise ValueError(tail)
        except ValueError:
            print(f"not a job id: {text!r} (a UUID, or <job id>.N)", file=sys.stderr)
            print(USAGE, file=sys.stderr)
            raise SystemExit(2) from None
    return ids


def main() -> None:
    exit_on_sigterm()
    args = sys.argv[1:] or ["run"]
    if args[0] not in ("run", "replay"):
        print(USAGE, file=sys.stderr)
        raise SystemExit(0 if args[0] in ("-h", "--help") else 2)
    chosen = job_ids(args[1:]) if args[0] == "replay" else []
    # Replaying parked jobs serves no API: it needs no key of the gateway's.
    cfg = settings_mod.load(NotifierServiceSettings if args[0] == "run" else NotifierSettings)
    configure_logging(cfg.service_name, cfg.log_level, cfg.log_format)
    if isinstance(cfg, NotifierServiceSettings):
        configure_tracing(cfg.service_name)
        REGISTRY.register(JobsCollector(cfg.database_url))
        serve_metrics(cfg.metrics_addr)
        with alive_while_starting(cfg.grpc_addr):
            asyncio.run(run(cfg))
    else:
        count = asyncio.run(replay_parked(cfg.database_url, chosen or None, SystemClock().now()))
        print(f"{count} parked job(s) queued again")


if __name__ == "__main__":
    main()
