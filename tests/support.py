"""Test-owned mail and SMS endpoints (not Casemesh's own sinks: they record
every delivery attempt as received, with no de-duplication of their own), and a
small gateway client."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from typing import Any

import grpc
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.util import calc_crc32c
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from casemesh import topics
from casemesh.events.v1 import notifications_pb2 as nev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.grpcutil import DomainErrorInterceptor, field_violations
from casemesh.platform.identity import mint_token
from casemesh.platform.personal import AsyncSealer, DataKeys, MasterKeys, MemoryKeyStore, Sealer
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc


class MailEndpoint:
    """An SMTP server on loopback that keeps every message it accepts."""

    def __init__(self, port: int) -> None:
        self.messages: list[EmailMessage] = []
        # By recipient, so a test polling for thousands of addresses holds the
        # lock briefly: a relay kept waiting for it answers late, and a
        # notifier that waited out its timeout would rightly send again.
        self._by_to: dict[str, list[EmailMessage]] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = message_from_bytes(
                    envelope.original_content or envelope.content, policy=policy.default
                )
                to = str(msg["To"])
                with endpoint._lock:
                    endpoint.messages.append(msg)
                    endpoint._by_to.setdefault(to, []).append(msg)
                return "250 OK"

        self._controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.address = ("127.0.0.1", port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return list(self._by_to.get(address, ()))

    def distinct_to(self, address: str) -> list[EmailMessage]:
        """The messages to `address`, a repeat of one Message-ID counted once
        (as a mail client shows them)."""
        return list({m["Message-ID"]: m for m in self.to(address)}.values())


# When the events the tests hand the notifier and other consumers happened.
NOON_IN_SHANGHAI = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)


def case_event(
    service: str, name: str, version: int, message: Any, at: datetime = NOON_IN_SHANGHAI
) -> CloudEvent:
    """`message`, the `version`th event of `service` about `name`
    (`<collection>/<id>`), as the service's relay publishes it."""
    ident = name.rpartition("/")[2]
    return CloudEvent(
        id=f"{ident}:{version}",
        source=f"casemesh/{service}",
        type=f"casemesh.{service}.{message.DESCRIPTOR.name}.v1",
        subject=name,
        time=at,
        data=message.SerializeToString(),
        key=ident,
    )


def plain_text(message: EmailMessage) -> str:
    """What an e-mail says in its text part (beside the HTML alternative)."""
    part = message.get_body(("plain",))
    assert part is not None, "an e-mail without a text part"
    text: str = part.get_content()
    return text


class SmsEndpoint:
    """An HTTP SMS API on loopback that records every POST it accepts."""

    def __init__(self, port: int) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_remaining = 0
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with endpoint._lock:
                    if endpoint.fail_remaining > 0:
                        endpoint.fail_remaining -= 1
                        self.send_response(503)
                        self.end_headers()
                        return
                    endpoint.requests.append(
                        {**body, "idempotency_key": self.headers.get("Idempotency-Key", "")}
                    )
                    n = len(endpoint.requests)
                payload = json.dumps({"id": f"sms-{n}", "status": "accepted"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/v1/messages"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()

    def to(self, number: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r["to"] == number]

    def distinct_to(self, number: str) -> list[dict[str, Any]]:
        """The texts to `number`, a repeat of one idempotency key counted once
        (as a provider that honours the key delivers them)."""
        return list({r["idempotency_key"]: r for r in self.to(number)}.values())


# The notifier's consumer group, and the case topics it plans from.
NOTIFIER_GROUP = "casemesh-notifier"
CASE_TOPICS = (topics.TICKETS, topics.APPEALS, topics.REPORTS)


def settled(notifier_dsn: str, recipients: list[str]) -> bool:
    """Every notification job for `recipients` has its final outcome: nothing
    is left to send, or to send again."""
    with psycopg.connect(notifier_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM notification_jobs"
            " WHERE recipient = ANY(%s) AND status IN ('pending', 'sending')",
            (recipients,),
        ).fetchone()
    return row == (0,)


async def group_lag(bootstrap: str, group: str, topic_names: list[str]) -> int:
    """How many records of `topic_names` the consumer group `group` has not
    committed yet (a partition it never committed counts from 0)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        parts = [
            TopicPartition(t, p)
            for t in topic_names
            for p in consumer.partitions_for_topic(t) or ()
        ]
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in parts)


def told_everything(bootstrap: str, notifier_dsn: str, recipients: list[str]) -> bool:
    """The notifier has planned from every case event on the topics now
    (its group's offsets are at their ends: it commits after planning), and
    every job for `recipients` has its final outcome: a message planned twice
    would have been sent by now."""
    lag = asyncio.run(group_lag(bootstrap, NOTIFIER_GROUP, list(CASE_TOPICS)))
    return lag == 0 and settled(notifier_dsn, recipients)


def possible_repeats(notifier_dsn: str) -> set[str]:
    """Jobs the notifier sent again after a kill, marked as possible repeats."""
    with psycopg.connect(notifier_dsn) as conn:
        rows = conn.execute(
            "SELECT payload FROM notification_outbox"
            " WHERE ce_type = 'casemesh.notifications.NotificationDelivered.v1'"
        ).fetchall()
    delivered = [nev.NotificationDelivered.FromString(bytes(p)) for (p,) in rows]
    return {d.job.job_id for d in delivered if d.possible_repeat}


def wait_while_progressing(
    done: Callable[[], int], want: int, stall: float = 60.0, interval: float = 0.2
) -> float:
    """Waits until `done()` reaches `want`, for as long as it keeps growing: a
    backlog drained late passes, work that stopped fails after `stall` seconds
    without progress. Returns the seconds it took."""
    start = last_change = time.monotonic()
    seen = done()
    while seen < want:
        time.sleep(interval)
        now, count = time.monotonic(), done()
        if count != seen:
            seen, last_change = count, now
        elif now - last_change > stall:
            raise AssertionError(
                f"{seen} of {want} after {now - start:.0f} s, none more for {stall:.0f} s"
            )
    return time.monotonic() - start


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


async def eventually(predicate: Any, within: float = 30.0) -> Any:
    """`wait_until` from a coroutine: it polls off the event loop, which goes
    on running what it waits for."""
    return await asyncio.to_thread(wait_until, predicate, within)


async def column(dsn: str, query: str, *params: object) -> list[Any]:
    """The first column of each row `query` gives (none for a statement that
    gives no rows), run on a connection of its own to `dsn`."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        cur = await conn.execute(query, params or None)
        return [row[0] for row in await cur.fetchall()] if cur.description else []


class Client:
    """The gateway as one person sees it."""

    def __init__(self, target: str, secret: str, subject: str, roles: tuple[str, ...] = ("user",)):
        self._channel = grpc.insecure_channel(target)
        self.stub = pb_grpc.TicketServiceStub(self._channel)
        self.subject = subject
        self.metadata = [("authorization", f"Bearer {mint_token(secret, subject, roles)}")]

    def __getattr__(self, method: str) -> Any:
        rpc = getattr(self.stub, method)

        def call(request: Any) -> Any:
            return rpc(request, metadata=self.metadata, timeout=15)

        return call

    def close(self) -> None:
        self._channel.close()


@dataclass
class Hearing:
    """The settings an erasure follower reads (`casemesh.platform.forgetting`)."""

    service_name: str
    kafka_bootstrap: str


def open_ticket(
    client: Client, subject: str, description: str, email: str, phone: str = ""
) -> pb.Ticket:
    """A sign-in ticket of `client`'s, to be told about by e-mail (and SMS,
    given a phone)."""
    channels = [pb.CHANNEL_EMAIL, *([pb.CHANNEL_SMS] if phone else [])]
    ticket: pb.Ticket = client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject=subject,
                description=description,
                locale="en",
                contact=pb.Contact(email=email, phone=phone, channels=channels),
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    return ticket


@asynccontextmanager
async def from_the_start(
    bootstrap: str, topic: str, partitions: int
) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer of every partition of `topic`, at offset 0 (no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        yield consumer, parts
    finally:
        await consumer.stop()


async def read_topic(
    bootstrap: str, topic: str, partitions: int, want: set[str], wait_s: float
) -> list[tuple[str, dict[str, str]]]:
    """Every record of `topic` from offset 0, as (key, headers), read until the
    records with the `want` ce_ids were all seen or `wait_s` passed."""
    async with from_the_start(bootstrap, topic, partitions) as (consumer, _):
        records: list[tuple[str, dict[str, str]]] = []
        seen: set[str] = set()
        deadline = time.monotonic() + wait_s
        while not want <= seen and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for tp_records in batch.values():
                for r in tp_records:
                    headers = {k: v.decode() for k, v in r.headers}
                    records.append((r.key.decode(), headers))
                    seen.add(headers.get("ce_id", ""))
        return records


async def records_keyed(bootstrap: str, topic: str, key: str, partitions: int = 3) -> list[Any]:
    """Every record of `topic` keyed `key`, from offset 0 to the end as it
    stands now (aiokafka ConsumerRecords)."""
    async with from_the_start(bootstrap, topic, partitions) as (consumer, parts):
        ends = await consumer.end_offsets(parts)
        found: list[Any] = []
        while [p for p in parts if await consumer.position(p) < ends[p]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [r for r in batch if r.key is not None and r.key.decode() == key]
        return found


def self_signed() -> tuple[bytes, bytes]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "casemesh test CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def memory_sealer(store: MemoryKeyStore | None = None) -> AsyncSealer:
    """A sealer whose keys live in memory (in `store`, one that may stand in
    for a key database that is away or slow), for a consumer under test
    (events it was not given sealed reveal to themselves)."""
    return AsyncSealer(
        Sealer(DataKeys(store or MemoryKeyStore(), MasterKeys.parse(f"t:{new_master_key()}")))
    )


def personal_env() -> dict[str, str]:
    """The key database settings a service that seals or reveals refuses to
    start without (a fresh master key; the database is not reached)."""
    return {
        "CASEMESH_MASTER_KEYS": f"t:{new_master_key()}",
        "CASEMESH_KEYS_DATABASE_URL": "postgresql://x@h/casemesh_keys",
    }


def personal_settings() -> dict[str, Any]:
    """`personal_env` as a settings class's keyword arguments."""
    return {k.removeprefix("CASEMESH_").lower(): v for k, v in personal_env().items()}


def rejected(call: Callable[..., object]) -> grpc.RpcError:
    """The error a call that must be refused raised; the test fails if it
    did not raise one."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def violated_fields(err: grpc.RpcError) -> list[str]:
    """The fields a refused call's google.rpc.BadRequest names, in order; the
    test fails if it carried no status details."""
    status = rpc_status.from_call(err)
    assert status is not None, "INVALID_ARGUMENT must carry google.rpc.BadRequest details"
    return [f for f, _ in field_violations(status)]


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo (reason, metadata) a refused call carried; the test
    fails if it carried none."""
    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert any(d.Unpack(info) for d in status.details)
    return info


async def asgi_post(
    app: Any, path: str, body: bytes, headers: dict[str, str], peer: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """One POST of `body` to an ASGI `app`, from `peer`, as a server would
    hand it over: the answer's HTTP status and body."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": (peer, 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    said: list[Any] = []

    async def send(message: Any) -> None:
        said.append(message)

    await app(scope, receive, send)
    answer = b"".join(m.get("body", b"") for m in said if m["type"] == "http.response.body")
    return said[0]["status"], answer


KafkaRecord = tuple[bytes, bytes, Sequence[tuple[str, bytes]]]


def record_batch(records: Sequence[KafkaRecord], *, base: int = 0, unreadable: str = "") -> bytes:
    """A Kafka record batch of `records` (key, value, headers) from offset
    `base`. The first header named `unreadable` (which must start with "?")
    gets a name that is not UTF-8 text: Kafka keeps such a record and any
    other producer can write it, but aiokafka can neither write nor read it.
    The batch's checksum (CRC-32C of all after it) is made again, so that
    header is all that is wrong with it."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=None, key=key, value=value, headers=list(headers))
    data = builder.build()
    struct.pack_into(">q", data, 0, base)
    if unreadable:
        assert unreadable.startswith("?")
        data[data.index(unreadable.encode())] = 0xFF
    struct.pack_into(">I", data, 17, calc_crc32c(bytes(data[21:])))
    return bytes(data)


async def served_alone(
    handler: grpc.RpcMethodHandler, call: Callable[[grpc.aio.Channel], Any]
) -> Any:
    """What `call` gets from a server (with the services' interceptor) whose
    one method, /t.Service/Method, is `handler`."""
    server = grpc.aio.server(interceptors=[DomainErrorInterceptor()])
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("t.Service", {"Method": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            return await call(channel)
    finally:
        await server.stop(None)


@asynccontextmanager
async def served_smtp(sessions: Callable[[], asyncio.BaseProtocol]) -> AsyncIterator[int]:
    """An SMTP server on a free loopback port, each connection's session made
    by `sessions` (the inbound service's, `casemesh_inbound.smtp.sessions`):
    its port, the server closed after."""
    server = await asyncio.get_running_loop().create_server(sessions, host="127.0.0.1", port=0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def rpc_failure(call: Any) -> grpc.aio.AioRpcError:
    """The error a call fails with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def unary_failure(behaviour: Callable[[bytes, Any], Any]) -> grpc.aio.AioRpcError:
    """The error a caller gets from a unary method doing `behaviour` (it must
    fail), served as `served_alone` serves it."""
    return await served_alone(
        grpc.unary_unary_rpc_method_handler(behaviour),
        lambda channel: rpc_failure(channel.unary_unary("/t.Service/Method")(b"", timeout=10)),
    )


async def stream_failure(
    behaviour: Callable[[bytes, Any], AsyncIterator[bytes]],
) -> tuple[list[bytes], grpc.aio.AioRpcError]:
    """What a caller reads from a server-streaming method doing `behaviour`
    before it fails, and the error it fails with, served as `served_alone`
    serves it."""

    async def read_all(channel: grpc.aio.Channel) -> tuple[list[bytes], grpc.aio.AioRpcError]:
        got: list[bytes] = []

        async def each() -> None:
            async for item in channel.unary_stream("/t.Service/Method")(b"", timeout=10):
                got.append(item)

        return got, await rpc_failure(each())

    result: tuple[list[bytes], grpc.aio.AioRpcError] = await served_alone(
        grpc.unary_stream_rpc_method_handler(behaviour), read_all
    )
    return result
