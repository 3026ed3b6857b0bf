"""Steady writes through the gateway while a fault happens, and the ledger
that says afterwards what became of each one.

Every write opens a case (a ticket, or now and then a copyright notice) for
a person of its own, with e-mail and SMS updates, so each acknowledged write
must end as a stored case and one e-mail and one SMS to that person. A write
that fails retryably (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED) is tried again
with the same `request_id`, as a client would; only an OK answer counts as
acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from casemesh.platform.identity import mint_token
from casemesh.v1 import appeals_pb2, appeals_pb2_grpc, tickets_pb2, tickets_pb2_grpc

RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}
# A write is tried again for this long before it is given up (unacknowledged).
RETRY_FOR_S = 20.0
USERS = 20
APPEAL_EVERY = 10  # one write in ten is a copyright notice


@dataclass
class Write:
    index: int
    email: str
    phone: str
    kind: str  # "ticket" or "appeal"
    name: str = ""  # the resource name, once acknowledged
    codes: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    """What one fault did to the people using the system."""

    fault: str
    attempted: int
    acknowledged: int
    lost: int
    missing: int
    repeats_in_flight: int
    repeats_other: int
    told_after_s: float | None  # from the part being back until every acknowledged write was told
    serving_after_s: float | None  # from the restart until the restarted part served
    restarted: list[str]  # processes that stopped without being told to
    codes: dict[str, int]
    # Marked repeats allowed: the sends in flight when a notifier is killed.
    in_flight_allowed: int = 0

    @property
    def failed(self) -> list[str]:
        why = []
        if self.lost:
            why.append(f"{self.lost} acknowledged writes lost")
        if self.missing:
            why.append(f"{self.missing} acknowledged writes never told")
        if self.repeats_other:
            why.append(f"{self.repeats_other} messages repeated that were not in flight")
        if self.repeats_in_flight > self.in_flight_allowed:
            why.append(
                f"{self.repeats_in_flight} marked repeats; at most {self.in_flight_allowed}"
                " sends can be in flight at this fault"
            )
        if self.restarted:
            why.append(f"processes stopped on their own: {self.restarted}")
        wrong = {c: n for c, n in self.codes.items() if c in ("UNKNOWN", "INTERNAL")}
        if wrong:
            why.append(f"answers a client cannot act on: {wrong}")
        if self.acknowledged == 0:
            why.append("no write was acknowledged")
        return why

    @staticmethod
    def table(rows: list[Outcome]) -> list[str]:
        head = (
            f"{'fault':<26} {'writes':>6} {'acked':>6} {'lost':>4} {'missing':>7}"
            f" {'rep(in-flight)':>14} {'rep(other)':>10} {'told after':>10}"
            f" {'serving':>8}  answers"
        )
        lines = [head, "-" * len(head)]
        for r in rows:
            told = "-" if r.told_after_s is None else f"{r.told_after_s:.1f} s"
            serving = "-" if r.serving_after_s is None else f"{r.serving_after_s:.1f} s"
            codes = " ".join(f"{c}={n}" for c, n in sorted(r.codes.items()))
            lines.append(
                f"{r.fault:<26} {r.attempted:>6} {r.acknowledged:>6} {r.lost:>4} {r.missing:>7}"
                f" {r.repeats_in_flight:>14} {r.repeats_other:>10} {told:>10} {serving:>8}  {codes}"
            )
        return lines


REPORT: list[Outcome] = []


class Load:
    """`RATE` writes a second through the gateway, from `USERS` people."""

    def __init__(self, gateway: str, secret: str, run: str) -> None:
        self._gateway = gateway
        self._run = run
        self._tokens = [
            [("authorization", f"Bearer {mint_token(secret, f'fault-{run}-{u}', ('user',))}")]
            for u in range(USERS)
        ]
        self.writes: list[Write] = []
        self.codes: Counter[str] = Counter()

    async def drive(self, *, rate: float, count: int, at: int, fault: Callable[[], None]) -> None:
        """Sends `count` writes at `rate` a second; as write `at` goes out, runs
        `fault` (in a thread: it kills, waits out the outage and restores)."""
        async with grpc.aio.insecure_channel(self._gateway) as channel:
            tickets = tickets_pb2_grpc.TicketServiceStub(channel)
            appeals = appeals_pb2_grpc.AppealServiceStub(channel)
            loop = asyncio.get_running_loop()
            start = loop.time()
            pending: list[asyncio.Task[None]] = []
            drill: asyncio.Future[None] | None = None
            for i in range(count):
                if i == at:
                    drill = asyncio.ensure_future(asyncio.to_thread(fault))
                write = self._new_write(i)
                self.writes.append(write)
                pending.append(asyncio.create_task(self._send(write, tickets, appeals)))
                # Pacing the load, not waiting for anything.
                await asyncio.sleep(max(0.0, start + (i + 1) / rate - loop.time()))
            await asyncio.gather(*pending)
            if drill is not None:
                await drill

    def _new_write(self, i: int) -> Write:
        kind = "appeal" if i % APPEAL_EVERY == APPEAL_EVERY - 1 else "ticket"
        # A valid Chinese mobile (130-139 followed by any eight digits), one per
        # write, the run's numbers starting at a place drawn from its id among
        # a billion: two runs share none unless their starts fall within a
        # run's length of each other.
        phone = f"+8613{(int(self._run, 16) + i) % 10**9:09d}"
        return Write(i, f"fault-{self._run}-{i}@example.com", phone, kind)

    async def _send(
        self,
        write: Write,
        tickets: tickets_pb2_grpc.TicketServiceStub,
        appeals: appeals_pb2_grpc.AppealServiceStub,
    ) -> None:
        metadata = self._tokens[write.index % USERS]
        request_id = f"fault-{self._run}-{write.index}"
        give_up = time.monotonic() + RETRY_FOR_S
        pause = 0.25
        while True:
            try:
                if write.kind == "ticket":
                    ticket = await tickets.CreateTicket(
                        self._ticket(write, request_id), metadata=metadata, timeout=5
                    )
                    write.name = ticket.name
                else:
                    appeal = await appeals.FileAppeal(
                        self._appeal(write, request_id), metadata=metadata, timeout=5
                    )
                    write.name = appeal.name
                write.codes.append("OK")
                self.codes["OK"] += 1
                return
            except grpc.aio.AioRpcError as err:
                code = err.code()
                write.codes.append(code.name)
                self.codes[code.name] += 1
                if code not in RETRYABLE or time.monotonic() + pause > give_up:
                    return
            await asyncio.sleep(pause)  # a client's backoff before it tries again
            pause = min(pause * 2, 4.0)

    @staticmethod
    def _ticket(write: Write, request_id: str) -> tickets_pb2.CreateTicketRequest:
        return tickets_pb2.CreateTicketRequest(
            request_id=request_id,
            ticket=tickets_pb2.Ticket(
                category="content.upload_failed",
                subject=f"视频上传失败 {write.index}",
                description="上传到一半就失败了",
                locale="zh-CN",
                contact=tickets_pb2.Contact(
                    email=write.email,
                    phone=write.phone,
                    channels=[tickets_pb2.CHANNEL_EMAIL, tickets_pb2.CHANNEL_SMS],
                ),
            ),
        )

    @staticmethod
    def _appeal(write: Write, request_id: str) -> appeals_pb2.FileAppealRequest:
        # A notice that lacks most elements: accepted, and its filer is told what to add.
        return appeals_pb2.FileAppealRequest(
            request_id=request_id,
            appeal=appeals_pb2.Appeal(
                kind=appeals_pb2.APPEAL_KIND_TAKEDOWN_NOTICE,
                filer=appeals_pb2.Party(
                    legal_name=f"Creator {write.index}",
                    locale="zh-CN",
                    contact=tickets_pb2.Contact(
                        email=write.email,
                        phone=write.phone,
                        channels=[tickets_pb2.CHANNEL_EMAIL, tickets_pb2.CHANNEL_SMS],
                    ),
                ),
                notice=appeals_pb2.TakedownNotice(
                    infringing_items=[f"https://video.example/v/{request_id}"]
                ),
            ),
        )

    @property
    def acknowledged(self) -> list[Write]:
        return [w for w in self.writes if w.name]
