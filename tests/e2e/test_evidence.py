"""Evidence through the gateway: uploads are checked by their real type and
size, stored once by content, and only their owner (and agents) can read or
attach them."""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg

from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import evidence_pb2_grpc as epb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.support import Client, rejected, violated_fields

MiB = 1024 * 1024


def png(extra: int = 0) -> bytes:
    """A real 1×1 PNG, made unique (and as large as asked) by a text chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    text = b"casemesh\x00" + os.urandom(16).hex().encode() + b"x" * extra
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"tEXt", text)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00"))
        + chunk(b"IEND", b"")
    )


def messages(
    data: bytes, file_name: str, declared: str = ""
) -> Iterator[epb.UploadEvidenceRequest]:
    yield epb.UploadEvidenceRequest(
        metadata=epb.EvidenceMetadata(file_name=file_name, declared_type=declared)
    )
    for i in range(0, len(data), 512 * 1024):
        yield epb.UploadEvidenceRequest(chunk=data[i : i + 512 * 1024])


class EvidenceClient:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.stub = epb_grpc.EvidenceServiceStub(client._channel)

    def upload(self, data: bytes, file_name: str = "proof.png", declared: str = "") -> epb.Evidence:
        result: epb.Evidence = self.stub.UploadEvidence(
            messages(data, file_name, declared), metadata=self.client.metadata, timeout=60
        )
        return result

    def get(self, name: str) -> epb.Evidence:
        result: epb.Evidence = self.stub.GetEvidence(
            epb.GetEvidenceRequest(name=name), metadata=self.client.metadata, timeout=15
        )
        return result

    def read(self, name: str) -> bytes:
        responses = self.stub.ReadEvidence(
            epb.ReadEvidenceRequest(name=name), metadata=self.client.metadata, timeout=15
        )
        return b"".join(r.chunk for r in responses)


def person(stack: Stack, prefix: str, *roles: str) -> EvidenceClient:
    return EvidenceClient(
        Client(stack.gateway, stack.secret, f"{prefix}-{uuid.uuid4().hex[:6]}", roles or ("user",))
    )


def stored_objects(root: Path) -> set[str]:
    return {p.name for p in root.rglob("*") if p.is_file() and "incoming" not in p.parts}


def tickets_events(stack: Stack) -> int:
    with psycopg.connect(stack.tickets_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM tickets_events").fetchone()
    assert row is not None
    return int(row[0])


def test_an_upload_is_described_by_its_real_type_and_hash_and_reads_back(stack: Stack) -> None:
    owner = person(stack, "creator")
    data = png(extra=1500 * 1024)  # several chunks
    evidence = owner.upload(data, file_name="C:\\Users\\me\\原创证明.png", declared="image/png")
    assert evidence.name.startswith("evidence/")
    assert evidence.sha256 == hashlib.sha256(data).hexdigest()
    assert (evidence.size_bytes, evidence.media_type) == (len(data), "image/png")
    assert evidence.file_name == "原创证明.png"
    assert owner.get(evidence.name) == evidence
    assert owner.read(evidence.name) == data
    agent = person(stack, "agent", "agent")
    assert agent.read(evidence.name) == data


def test_the_same_bytes_twice_are_stored_once(stack: Stack) -> None:
    owner = person(stack, "twice")
    data = png()
    first = owner.upload(data, "a.png")
    before = stored_objects(stack.evidence_dir)
    again = owner.upload(data, "b.png")
    assert again.name == first.name
    assert stored_objects(stack.evidence_dir) <= before  # nothing new (others' may go)
    assert first.sha256 in before
    # Another user's upload of the same bytes is their own evidence, same stored object.
    other = person(stack, "other").upload(data, "c.png")
    assert other.name != first.name and other.sha256 == first.sha256
    assert stored_objects(stack.evidence_dir) <= before  # nothing new (others' may go)


def test_an_executable_named_png_is_refused_and_not_stored(stack: Stack) -> None:
    owner = person(stack, "sneaky")
    before = stored_objects(stack.evidence_dir)
    exe = b"MZ\x90\x00\x03\x00\x00\x00" + os.urandom(4096)
    err = rejected(lambda: owner.upload(exe, "cute-cat.png", "image/png"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk" in violated_fields(err)
    assert "executable" in err.details()
    assert stored_objects(stack.evidence_dir) <= before  # nothing new (others' may go)


def test_an_upload_over_the_limit_is_refused_and_not_stored(stack: Stack) -> None:
    owner = person(stack, "big")
    before = stored_objects(stack.evidence_dir)
    err = rejected(lambda: owner.upload(png(extra=3 * MiB), "huge.png"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "chunk" in violated_fields(err)
    assert "at most 2 MiB" in err.details()
    assert stored_objects(stack.evidence_dir) <= before  # nothing new (others' may go)


def test_other_bad_uploads_name_the_problem(stack: Stack) -> None:
    owner = person(stack, "careless")
    err = rejected(lambda: owner.upload(png(), "photo.jpg", "image/jpeg"))
    assert "metadata.declared_type" in violated_fields(err)
    err = rejected(lambda: owner.upload(b"", "empty.png"))
    assert "chunk" in violated_fields(err)
    err = rejected(lambda: owner.upload(png(), "   "))
    assert "metadata.file_name" in violated_fields(err)
    no_metadata = iter([epb.UploadEvidenceRequest(chunk=png())])
    err = rejected(
        lambda: owner.stub.UploadEvidence(no_metadata, metadata=owner.client.metadata, timeout=15)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata" in violated_fields(err)
    err = rejected(lambda: owner.get("evidence/not-a-uuid"))
    assert "name" in violated_fields(err)


def test_another_users_evidence_is_as_if_it_did_not_exist(stack: Stack) -> None:
    """Reading someone else's evidence is answered as for evidence that does
    not exist, and attaching either is refused alike: nothing tells a caller
    that it exists."""
    owner = person(stack, "owner")
    thief = person(stack, "thief")
    evidence = owner.upload(png(), "mine.png")
    unknown = f"evidence/{uuid.uuid4()}"
    for name in (evidence.name, unknown):
        for call in (lambda n=name: thief.get(n), lambda n=name: thief.read(n)):
            err = rejected(call)
            assert err.code() == grpc.StatusCode.NOT_FOUND, name
            assert err.details() == f"{name} not found"
    # An agent working the owner's case reads it.
    assert person(stack, "agent", "agent").get(evidence.name).sha256 == evidence.sha256

    before = tickets_events(stack)
    for i, name in enumerate((evidence.name, unknown)):
        ticket = pb.Ticket(
            category="content.copyright",
            subject="我的视频被盗",
            description="见证据",
            locale="zh-CN",
            contact=pb.Contact(email="t@example.com", channels=[pb.CHANNEL_EMAIL]),
            evidence=[epb.EvidenceRef(name=name)],
        )
        err = rejected(
            lambda t=ticket, n=i: thief.client.CreateTicket(
                pb.CreateTicketRequest(ticket=t, request_id=f"steal-{n}")
            )
        )
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, name
        assert err.details() == "ticket.evidence[0] is not evidence you uploaded"
    assert tickets_events(stack) == before


def test_a_ticket_and_a_reply_carry_the_owners_evidence_by_name_and_hash(stack: Stack) -> None:
    owner = person(stack, "victim")
    proof, screenshot = owner.upload(png(), "proof.png"), owner.upload(png(), "later.png")
    ticket = owner.client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="content.copyright",
                subject="视频被搬运",
                description="原创证明见附件",
                locale="zh-CN",
                contact=pb.Contact(email="v@example.com", channels=[pb.CHANNEL_EMAIL]),
                # A client-sent hash is ignored: the gateway fills in the stored one.
                evidence=[epb.EvidenceRef(name=proof.name, sha256="0" * 64)],
            ),
            request_id="with-proof",
        )
    )
    assert [(e.name, e.sha256) for e in ticket.evidence] == [(proof.name, proof.sha256)]
    owner.client.AddComment(
        pb.AddCommentRequest(
            name=ticket.name, body="补充截图", evidence=[epb.EvidenceRef(name=screenshot.name)]
        )
    )
    history = owner.client.ListTicketEvents(pb.ListTicketEventsRequest(name=ticket.name)).events
    assert [[e.sha256 for e in step.evidence] for step in history] == [
        [proof.sha256],
        [screenshot.sha256],
    ]


def test_the_same_bytes_uploaded_at_once_are_one_evidence_and_one_object(stack: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    owner = person(stack, "eager")
    data = png()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: owner.upload(data, f"copy-{i}.png"), range(16)))
    assert len({r.name for r in results}) == 1
    sha = results[0].sha256
    objects = [p for p in stack.evidence_dir.rglob(sha) if p.is_file()]
    assert len(objects) == 1 and hashlib.sha256(objects[0].read_bytes()).hexdigest() == sha
    assert not [p for p in stack.evidence_dir.rglob(".staging-*")]


def test_an_iso_media_file_of_another_brand_is_refused(stack: Stack) -> None:
    owner = person(stack, "brand")
    junk = b"\x00\x00\x00\x18ftypJUNK" + b"MZ" + os.urandom(2048)
    err = rejected(lambda: owner.upload(junk, "clip.mp4"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_user_lists_their_own_uploads_newest_first_page_by_page(stack: Stack) -> None:
    mine, theirs = person(stack, "lister"), person(stack, "other")
    agent = person(stack, "agent", "agent")
    uploads = [mine.upload(png(), f"shot-{i}.png") for i in range(3)]
    theirs.upload(png(), "not-yours.png")
    agents_own = agent.upload(png(), "agent.png")

    def listed(client: EvidenceClient, size: int, token: str = "") -> epb.ListEvidenceResponse:
        response: epb.ListEvidenceResponse = client.stub.ListEvidence(
            epb.ListEvidenceRequest(page_size=size, page_token=token),
            metadata=client.client.metadata,
            timeout=15,
        )
        return response

    first = listed(mine, 2)
    assert [e.file_name for e in first.evidence] == ["shot-2.png", "shot-1.png"]
    rest = listed(mine, 2, first.next_page_token)
    assert [e.name for e in rest.evidence] == [uploads[0].name] and not rest.next_page_token
    # An agent lists only their own; a token this API did not give is refused.
    assert [e.name for e in listed(agent, 0).evidence] == [agents_own.name]
    err = rejected(lambda: listed(mine, 2, "not-a-token"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(err) == ["page_token"]
