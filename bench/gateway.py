"""CreateTicket through the gateway, the whole stack running on the same
cores (tickets, its relay, the notifier sending e-mail, the queue consuming,
and the rest idle), against a do-nothing chain: a gRPC proxy process that
forwards each call's bytes to a backend process that answers at once. Both
are driven by the same load generator, 8 and 32 calls in flight. And
GetTicket through the gateway over Connect (JSON, as a browser sends it)
against the same call over gRPC."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import psycopg
from connectrpc.client import ConnectClient
from connectrpc.method import IdempotencyLevel, MethodInfo

from bench.notifier import serve_sink
from bench.report import Goal, interleaved, row
from casemesh.platform.identity import mint_token
from casemesh.v1 import tickets_pb2 as pb
from casemesh_devstack.kafka import LocalKafka
from casemesh_devstack.ports import free_port
from casemesh_devstack.postgres import LocalPostgres
from casemesh_devstack.stack import (
    NOTIFIER_DB,
    IdentityKeys,
    create_databases,
    service_specs,
)
from casemesh_devstack.supervisor import Supervisor

SPAN_S = 6.0
METHOD = "/casemesh.v1.TicketService/CreateTicket"


class Arrivals:
    """When each recipient's first e-mail reached the relay. The relay runs in
    a process of its own, as a real one would (offering PIPELINING, as real
    ones do): in this process it would answer the notifier only when the
    load generator let it."""

    def __init__(self, received: Any) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self._received = received
        threading.Thread(target=self._collect, daemon=True, name="arrivals").start()

    def _collect(self) -> None:
        while True:
            recipient, at = self._received.get()
            self.count += 1
            self.arrived.setdefault(recipient, at)

    def settle(self, quiet_s: float = 3.0) -> None:
        """Waits until no message has arrived for `quiet_s` (the notifier has
        sent what the runs before queued)."""
        while True:
            seen = self.count
            time.sleep(quiet_s)
            if self.count == seen:
                return


def _identity(b: bytes) -> bytes:
    return b


async def _serve_create(port: int, create: Callable[[bytes, Any], Awaitable[bytes]]) -> None:
    """A gRPC server whose `CreateTicket` is `create`, on raw bytes."""
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(create, _identity, _identity)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "casemesh.v1.TicketService", {"CreateTicket": handler}
            )
        ]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _serve_backend(port: int, answer: bytes) -> None:
    async def create(request: bytes, context: Any) -> bytes:
        return answer

    await _serve_create(port, create)


async def _serve_proxy(port: int, backend: int) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{backend}")
    forward = channel.unary_unary(METHOD, _identity, _identity)

    async def create(request: bytes, context: Any) -> bytes:
        return bytes(await forward(request, timeout=10))

    await _serve_create(port, create)


def _backend_main(port: int, answer: bytes) -> None:
    asyncio.run(_serve_backend(port, answer))


def _proxy_main(port: int, backend: int) -> None:
    asyncio.run(_serve_proxy(port, backend))


def request(n: int, email: str = "") -> pb.CreateTicketRequest:
    return pb.CreateTicketRequest(
        ticket=pb.Ticket(
            category="content.upload_failed",
            subject="上传失败",
            description="视频上传到 99% 失败",
            locale="zh-CN",
            contact=pb.Contact(
                email=email or f"bench-{n % 1000}@example.com", channels=[pb.CHANNEL_EMAIL]
            ),
        ),
        request_id=f"bench-{uuid.uuid4().hex}",
    )


async def load(
    target: str, in_flight: int, metadata: Callable[[int], Sequence[tuple[str, str]]]
) -> float:
    """CreateTicket calls per second with `in_flight` calls at a time, each
    call carrying `metadata(caller)` (the caller numbered from 0)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD, pb.CreateTicketRequest.SerializeToString, pb.Ticket.FromString
        )
        done = 0
        deadline = time.perf_counter() + SPAN_S

        async def caller(n: int) -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await call(request(n * 100_000 + done), metadata=metadata(n), timeout=30)
                done += 1

        start = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(in_flight)))
        return done / (time.perf_counter() - start)


# What a call answers when the stack cannot keep up (anything else is a bug).
OVERLOADED = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE})


class Unsustained(Exception):
    """Calls of a paced run failed for want of capacity."""


async def paced(
    target: str, rate: float, seconds: float, metadata: list[tuple[str, str]], sink: Arrivals
) -> dict[str, float]:
    """Opens tickets at `rate` a second for `seconds`, each with an address of
    its own, and waits for their e-mails; returns when each call was made
    (epoch seconds), by address."""
    run = uuid.uuid4().hex[:6]
    sent: dict[str, float] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD, pb.CreateTicketRequest.SerializeToString, pb.Ticket.FromString
        )

        failed: Counter[str] = Counter()

        async def one(i: int) -> None:
            email = f"lat-{run}-{i}@example.com"
            sent[email] = time.time()  # the relay's clock: the same host's wall clock
            try:
                await call(request(i, email), metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as err:
                if err.code() not in OVERLOADED:
                    raise
                failed[err.code().name] += 1
                del sent[email]

        start = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    if failed:
        raise Unsustained(
            f"{sum(failed.values())} of {len(tasks)} calls failed ({dict(failed)}):"
            f" {rate:.0f}/s is more than the stack sustains here"
        )
    deadline = time.perf_counter() + 120
    while not sent.keys() <= sink.arrived.keys() and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    missing = sent.keys() - sink.arrived.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} e-mails never arrived")
    return sent


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far (user and system), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_use(supervisor: Supervisor) -> Callable[[], str]:
    """Starts counting each supervised process's CPU; the returned function
    says how much of a core each used since, busiest first."""
    pids = {n: pid for n in supervisor.names if (pid := supervisor.pid(n)) is not None}
    before = {n: cpu_seconds(pid) for n, pid in pids.items()}
    start = time.perf_counter()

    def since() -> str:
        span = time.perf_counter() - start
        used = {n: (cpu_seconds(pid) - before[n]) / span for n, pid in pids.items()}
        busiest = sorted(used.items(), key=lambda u: -u[1])
        return ", ".join(f"{n} {u:.0%}" for n, u in busiest if u >= 0.01)

    return since


def stages(notifier_dsn: str, sent: dict[str, float]) -> list[str]:
    """Where a paced run's time went, from the notifier's jobs: the call to
    its job planned (gateway, tickets, relay, Kafka, the notifier's
    consuming), then planned to sent (the senders)."""
    with psycopg.connect(notifier_dsn) as conn:
        rows = conn.execute(
            "SELECT recipient, extract(epoch FROM created_at), extract(epoch FROM sent_at)"
            " FROM notification_jobs WHERE recipient = ANY(%s) AND channel = 'EMAIL'",
            (list(sent),),
        ).fetchall()
    planned = [float(made) - sent[to] for to, made, _ in rows]
    sending = [float(done) - float(made) for _, made, done in rows if done is not None]
    return [
        f"    of which call → job planned   p50 {percentile(planned, 50):7.1f} ms,"
        f" p99 {percentile(planned, 99):7.1f} ms",
        f"    of which planned → sent       p50 {percentile(sending, 50):7.1f} ms,"
        f" p99 {percentile(sending, 99):7.1f} ms",
    ]


async def round_trips(target: str, seconds: float) -> list[float]:
    """One call at a time through the do-nothing chain: its latency."""
    samples = []
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            METHOD, pb.CreateTicketRequest.SerializeToString, pb.Ticket.FromString
        )
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await call(request(0), timeout=10)
            samples.append(time.perf_counter() - t)
    return samples


GET_TICKET = MethodInfo(
    name="GetTicket",
    service_name="casemesh.v1.TicketService",
    input=pb.GetTicketRequest,
    output=pb.Ticket,
    idempotency_level=IdempotencyLevel.NO_SIDE_EFFECTS,
)


async def reads_grpc(target: str, in_flight: int, token: str, name: str) -> float:
    """GetTicket calls answered per second over gRPC, `in_flight` at a time."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            "/casemesh.v1.TicketService/GetTicket",
            pb.GetTicketRequest.SerializeToString,
            pb.Ticket.FromString,
        )
        metadata = [("authorization", f"Bearer {token}")]

        async def one() -> None:
            await call(pb.GetTicketRequest(name=name), metadata=metadata, timeout=30)

        return await _rate(one, in_flight)


async def reads_connect(url: str, in_flight: int, token: str, name: str) -> float:
    """The same over Connect with JSON, one keep-alive connection per call in
    flight (as browsers open them over HTTP/1.1)."""
    clients = [ConnectClient(url, proto_json=True, send_compression=None) for _ in range(in_flight)]
    headers = {"authorization": f"Bearer {token}"}
    free = asyncio.Queue[ConnectClient]()
    for client in clients:
        free.put_nowait(client)

    async def one() -> None:
        client = await free.get()
        try:
            await client.execute_unary(
                request=pb.GetTicketRequest(name=name),
                method=GET_TICKET,
                headers=headers,
                use_get=True,  # as the generated client sends a read
            )
        finally:
            free.put_nowait(client)

    try:
        return await _rate(one, in_flight)
    finally:
        for client in clients:
            await client.close()


async def _rate(one: Callable[[], Awaitable[None]], in_flight: int) -> float:
    done = 0
    end = time.perf_counter() + SPAN_S

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await one()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done / (time.perf_counter() - start)


def percentile(samples: list[float], p: int) -> float:
    """The `p`th percentile of `samples` (seconds), in milliseconds."""
    return statistics.quantiles(samples, n=100)[p - 1] * 1000


def measure(target: str, in_flight: int, metadata: list[tuple[str, str]]) -> Callable[[], float]:
    return lambda: asyncio.run(load(target, in_flight, lambda _: metadata))


def run(root: Path, pg: LocalPostgres, kafka: LocalKafka) -> None:
    create_databases(pg)
    secret = secrets.token_urlsafe(32)
    ctx = multiprocessing.get_context("spawn")
    relay_port, relay_ready, received = free_port(), ctx.Event(), ctx.Queue()
    relay = ctx.Process(target=serve_sink, args=(relay_port, relay_ready, received), daemon=True)
    relay.start()
    if not relay_ready.wait(30):
        raise RuntimeError("the SMTP relay did not start in 30 s")
    sink = Arrivals(received)
    gateway = f"127.0.0.1:{free_port()}"
    gateway_http = f"127.0.0.1:{free_port()}"
    supervisor = Supervisor(root / "logs")
    # One user per call in flight would hit the per-user limit; a load test lifts it.
    overrides = {"CASEMESH_RATE_LIMIT_PER_MINUTE": "1000000", "CASEMESH_RATE_LIMIT_BURST": "100000"}
    backend_port, proxy_port = free_port(), free_port()
    answer = pb.Ticket(name=f"tickets/{uuid.uuid4()}", etag="1").SerializeToString()
    chain = [
        ctx.Process(target=_backend_main, args=(backend_port, answer), daemon=True),
        ctx.Process(target=_proxy_main, args=(proxy_port, backend_port), daemon=True),
    ]
    try:
        for spec in service_specs(
            pg,
            kafka,
            ("127.0.0.1", relay_port),
            "http://127.0.0.1:9/sms",
            secret,
            identity_keys=IdentityKeys.new(),
            tickets_addr=f"127.0.0.1:{free_port()}",
            evidence_addr=f"127.0.0.1:{free_port()}",
            appeals_addr=f"127.0.0.1:{free_port()}",
            reports_addr=f"127.0.0.1:{free_port()}",
            queue_addr=f"127.0.0.1:{free_port()}",
            help_addr=f"127.0.0.1:{free_port()}",
            privacy_addr=f"127.0.0.1:{free_port()}",
            notifier_addr=f"127.0.0.1:{free_port()}",
            gateway_addr=gateway,
            gateway_http_addr=gateway_http,
            evidence_dir=root / "evidence",
            metrics_addr=lambda name: f"127.0.0.1:{free_port()}",
        ):
            supervisor.start(spec.name, spec.argv, {**os.environ, **spec.env, **overrides})
        for p in chain:
            p.start()
        token = mint_token(secret, "bench-user", ("user",))
        metadata = [("authorization", f"Bearer {token}")]
        ready(gateway, metadata)
        ready(f"127.0.0.1:{proxy_port}", [])
        lines = []
        with grpc.insecure_channel(gateway) as channel:
            made = channel.unary_unary(
                METHOD, pb.CreateTicketRequest.SerializeToString, pb.Ticket.FromString
            )(request(0), metadata=metadata, timeout=30)
        over_connect, over_grpc = interleaved(
            lambda: asyncio.run(reads_connect(f"http://{gateway_http}", 8, token, made.name)),
            lambda: asyncio.run(reads_grpc(gateway, 8, token, made.name)),
        )
        goal = Goal("GetTicket over Connect (JSON), 8 in flight", "/s", 0.7)
        lines.append(row(goal, over_connect, over_grpc, "the same over gRPC"))
        most = 0.0
        for in_flight in (8, 32):
            ours, bare = interleaved(
                measure(gateway, in_flight, metadata),
                measure(f"127.0.0.1:{proxy_port}", in_flight, []),
            )
            goal = Goal(f"CreateTicket via the gateway, {in_flight} in flight", "/s", 0.5)
            lines.append(row(goal, ours, bare, "do-nothing proxy → backend"))
            most = max(most, ours)
        # Half the most it managed (the goal's load), then an eighth and a
        # quarter of it (where the latency bends), each paced once the
        # backlog is sent; the chain's own latency as reference.
        sink.settle()  # the reference measured with the backlog sent, as the paced runs are
        bare_rtt = asyncio.run(round_trips(f"127.0.0.1:{proxy_port}", 3.0))
        for share in (2, 8, 4):
            lines += paced_latency(gateway, most / share, metadata, sink, supervisor, bare_rtt, pg)
    finally:
        supervisor.stop_all(timeout=10)
        for p in (*chain, relay):
            p.kill()
    print(f"\nThrough the gateway (whole stack on the same cores; {SPAN_S:g} s a run, A-B-A-B)")
    print("\n".join(lines))


def paced_latency(
    gateway: str,
    rate: float,
    metadata: list[tuple[str, str]],
    sink: Arrivals,
    supervisor: Supervisor,
    bare_rtt: list[float],
    pg: LocalPostgres,
) -> list[str]:
    """Command → e-mail at `rate` tickets a second: its rows, the CPU each
    service used and where the time went."""
    sink.settle()
    used = cpu_use(supervisor)
    try:
        sent = asyncio.run(paced(gateway, rate, 10.0, metadata, sink))
    except Unsustained as exc:
        return [f"  command → e-mail at {rate:.0f} tickets/s: not measured: {exc}"]
    latencies = [sink.arrived[to] - at for to, at in sent.items()]
    if len(latencies) < 2:
        return [f"  command → e-mail at {rate:.0f} tickets/s: too few e-mails to measure"]
    lines = [
        row(
            Goal(f"command → e-mail p{pct}, {rate:.0f} tickets/s", "ms", None, limit),
            percentile(latencies, pct),
            percentile(bare_rtt, pct),
            "do-nothing chain, one call",
        )
        for pct, limit in ((50, 25.0), (99, 100.0))
    ]
    lines.append(f"    CPU, share of a core, call to last e-mail: {used()}")
    return lines + stages(pg.dsn(NOTIFIER_DB), sent)


def ready(target: str, metadata: Sequence[tuple[str, str]], timeout: float = 90.0) -> None:
    """Waits until one call goes through (the stack has just started)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with grpc.insecure_channel(target) as channel:
                call = channel.unary_unary(
                    METHOD, pb.CreateTicketRequest.SerializeToString, pb.Ticket.FromString
                )
                call(request(0), metadata=metadata, timeout=10)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
