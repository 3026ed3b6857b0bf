"""Notifier drain rate: a backlog of e-mail jobs (one per ticket created) sent
to an SMTP relay on loopback and recorded, against the raw ceiling of one
SMTP session sending the same number of messages back to back."""

from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import psycopg
from aiosmtpd.controller import Controller

from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import configure_logging
from casemesh.platform.pools import async_pool
from casemesh_devstack.ports import free_port
from casemesh_notifier.channels import SmtpChannel
from casemesh_notifier.delivery import Delivery
from casemesh_notifier.planner import Planner
from casemesh_notifier.schema import create_schema
from casemesh_notifier.settings import NotifierSettings


class Sink:
    """Accepts every message and counts it."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def created(n: int) -> CloudEvent:
    ticket = str(uuid.uuid4())
    msg = ev.TicketCreated(
        header=ev.TicketEventHeader(ticket_id=ticket, version=1, status=ev.TICKET_STATUS_NEW),
        requester=f"bench-{n}",
        category="content.upload_failed",
        subject="上传失败",
        contact=ev.ContactPreferences(
            email=f"bench-{n}@example.com", channels=[ev.CONTACT_CHANNEL_EMAIL], locale="zh-CN"
        ),
    )
    return CloudEvent(
        id=f"{ticket}:1",
        source="casemesh/tickets",
        type="casemesh.tickets.TicketCreated.v1",
        subject=f"tickets/{ticket}",
        time=datetime.now(UTC),
        data=msg.SerializeToString(),
        key=ticket,
    )


def raw_smtp(port: int, n: int) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "s@casemesh.local", f"r{i}@example.com", "x"
            msg.set_content("您好，我们已收到您的工单。")
            smtp.send_message(msg)
    return n / (time.perf_counter() - start)


async def drain(dsn: str, port: int, sink: Sink, n: int, concurrency: int) -> float:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("TRUNCATE notification_jobs, notification_outbox, consumed_events")
        planner = Planner()
        for i in range(n):
            await planner.consume(
                conn, created(i), topic="bench", partition=0, offset=i, now=datetime.now(UTC)
            )
    cfg = NotifierSettings(
        database_url=dsn,
        smtp_host="127.0.0.1",
        smtp_port=port,
        sms_url="http://127.0.0.1:9",
        send_concurrency=concurrency,
    )
    pool = async_pool(dsn, min_size=1, max_size=concurrency + 4)
    await pool.open()
    email = SmtpChannel(host="127.0.0.1", port=port, sender=cfg.mail_from)
    delivery = Delivery(pool=pool, conninfo=dsn, channels={"EMAIL": email}, cfg=cfg)
    stop = asyncio.Event()
    before = sink.count
    start = time.perf_counter()
    task = asyncio.create_task(delivery.run(stop))
    while sink.count - before < n:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    await email.aclose()
    await pool.close()
    return n / elapsed


def run(dsn: str, n: int = 1000) -> None:
    configure_logging("bench", "warning", "console")
    asyncio.run(create_schema(dsn))
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        raw = raw_smtp(port, n)
        rates = {c: asyncio.run(drain(dsn, port, sink, n, c)) for c in (1, 4, 8)}
    finally:
        controller.stop()
    print(f"\nNotifier drain ({n} e-mail jobs, SMTP relay on loopback)")
    print(f"  raw smtplib, one session         {raw:10.0f} /s")
    for c, rate in rates.items():
        print(f"  notifier, {c} sender(s)           {rate:10.0f} /s   ratio {rate / raw:.2f}")
