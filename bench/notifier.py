"""Notifier drain rate: a backlog of e-mail jobs (one per ticket created) sent
to an SMTP relay on loopback and recorded, against one raw smtplib session
sending the same number of messages back to back to the same relay, measured
alternately (A-B-A-B, `bench.report`).

The relay runs in a process of its own, as a real one would, and offers
PIPELINING as common relays (Postfix, Exim) do; the bench process is then
the notifier alone, so its CPU time over a drain is the notifier's cost per
e-mail (database driver, SMTP client, events), printed against the raw
session's CPU per message."""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import smtplib
import time
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import psycopg

from bench.report import Goal, interleaved, row
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

# Before batching, the notifier drained 17–32 e-mails/s; the goal is ten times 25/s.
BEFORE = 25.0
DRAIN = Goal("notifier drain, e-mails/s", "/s", 1.0)
CPU = Goal("notifier CPU per e-mail", "ms", 4.0, limit=2.0)


def serve_sink(port: int, ready: Any) -> None:
    """The relay: accepts every message, offering PIPELINING."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            return [*responses[:-1], "250-PIPELINING", responses[-1]]

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_smtp(port: int, n: int, cpu: list[float]) -> float:
    """One smtplib session sending n messages; appends its CPU ms per message."""
    start, used = time.perf_counter(), cpu_seconds()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for i in range(n):
            msg = EmailMessage()
            msg["From"], msg["To"], msg["Subject"] = "s@casemesh.local", f"r{i}@example.com", "x"
            msg.set_content("您好，我们已收到您的工单。")
            smtp.send_message(msg)
    elapsed = time.perf_counter() - start
    cpu.append((cpu_seconds() - used) * 1000 / n)
    return n / elapsed


async def drain(dsn: str, port: int, n: int, concurrency: int, cpu: list[float]) -> float:
    """Plans n e-mail jobs, then times the notifier sending and recording
    them all (watched as an operator would: the jobs marked sent); appends
    its CPU ms per e-mail."""
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
        start, used = time.perf_counter(), cpu_seconds()
        task = asyncio.create_task(delivery.run(stop))
        sent = 0
        while sent < n:
            await asyncio.sleep(0.02)
            cur = await conn.execute("SELECT count(*) FROM notification_jobs WHERE status = 'sent'")
            sent = (await cur.fetchone() or (0,))[0]
        elapsed = time.perf_counter() - start
        cpu.append((cpu_seconds() - used) * 1000 / n)
        stop.set()
        await task
        await email.aclose()
        await pool.close()
    return n / elapsed


def run(dsn: str, n: int = 1000, concurrency: int = 4) -> None:
    configure_logging("bench", "warning", "console")
    asyncio.run(create_schema(dsn))
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    sink = spawn.Process(target=serve_sink, args=(port, ready), daemon=True)
    sink.start()
    ours: list[float] = []
    theirs: list[float] = []
    try:
        ready.wait(30)
        rate, raw = interleaved(
            lambda: asyncio.run(drain(dsn, port, n, concurrency, ours)),
            lambda: raw_smtp(port, n, theirs),
        )
    finally:
        sink.terminate()
        sink.join()
    ours.sort()
    theirs.sort()
    print(f"\nNotifier drain ({n} e-mail jobs, {concurrency} senders, SMTP relay on loopback)")
    print(row(DRAIN, rate, raw, "raw smtplib, one session"))
    print(
        f"  {'':<40} absolute: {rate:.0f} /s, goal ≥ {10 * BEFORE:.0f} /s"
        f" (10× the {BEFORE:.0f}/s before): {'met' if rate >= 10 * BEFORE else 'NOT MET'}"
    )
    mid = len(ours) // 2
    print(row(CPU, ours[mid], theirs[mid], "raw smtplib client, per message"))
