"""The public API from a browser's point of view: Connect (JSON and binary,
GET for reads) and gRPC-Web on the gateway's HTTP port, answering as gRPC
does — the same codes, the same field violations — and the evidence upload a
browser can make."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import struct
import threading
import urllib.parse
import uuid
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from casemesh.platform.grpcutil import STATUS_DETAILS_KEY
from casemesh.platform.identity import mint_token
from casemesh.v1 import casequeue_pb2, evidence_pb2, tickets_pb2
from casemesh_devstack.stack import EVIDENCE_DB
from tests.conftest import Stack
from tests.e2e.test_evidence import png
from tests.e2e.test_metrics import scrape
from tests.support import Client, wait_until

TICKETS = "/casemesh.v1.TicketService"
ALLOWED_ORIGIN = "http://localhost:5173"  # in the local stack's CASEMESH_CORS_ORIGINS


def bearer(stack: Stack, subject: str, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(stack.secret, subject, roles)}"}


def connect_json(stack: Stack, method: str, body: Any, subject: str) -> httpx.Response:
    return httpx.post(
        f"{stack.http}{method}",
        content=json.dumps(body) if not isinstance(body, bytes) else body,
        headers={"Content-Type": "application/json", **bearer(stack, subject)},
        timeout=15,
    )


def grpc_web(stack: Stack, method: str, request: Any, subject: str) -> tuple[dict[str, str], bytes]:
    """A unary gRPC-Web call: (its trailers, its message bytes, if any)."""
    body = request.SerializeToString()
    answer = httpx.post(
        f"{stack.http}{method}",
        content=b"\x00" + struct.pack(">I", len(body)) + body,
        headers={
            "Content-Type": "application/grpc-web+proto",
            "X-Grpc-Web": "1",
            **bearer(stack, subject),
        },
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    data, trailers, at = b"", {}, 0
    raw = answer.content
    while at < len(raw):
        flag, size = raw[at], struct.unpack(">I", raw[at + 1 : at + 5])[0]
        frame = raw[at + 5 : at + 5 + size]
        if flag & 0x80:
            for line in frame.decode().strip().split("\r\n"):
                key, _, value = line.partition(":")
                trailers[key.strip().lower()] = value.strip()
        else:
            data = frame
        at += 5 + size
    return trailers, data


def new_ticket(**fields: Any) -> dict[str, Any]:
    ticket = {
        "category": "other.general",
        "subject": "web call",
        "description": "from a page",
        "locale": "en",
        "contact": {"email": "web@example.com", "channels": ["CHANNEL_EMAIL"]},
    }
    return {"ticket": {**ticket, **fields}, "requestId": uuid.uuid4().hex}


def violations_of(details: list[Any]) -> list[tuple[str, str]]:
    found = []
    for detail in details:
        if detail.type_url.endswith("google.rpc.BadRequest"):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def connect_violations(body: dict[str, Any]) -> list[tuple[str, str]]:
    found = []
    for detail in body.get("details", []):
        if detail["type"] == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(
                base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
            )
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def test_a_ticket_over_connect_json_and_read_back_with_a_get(stack: Stack) -> None:
    made = connect_json(stack, f"{TICKETS}/CreateTicket", new_ticket(), "web-alice")
    assert made.status_code == 200, made.text
    name = made.json()["name"]
    assert made.json()["status"] == "TICKET_STATUS_NEW"

    # The curl of the README: POST JSON.
    got = connect_json(stack, f"{TICKETS}/GetTicket", {"name": name}, "web-alice")
    assert got.status_code == 200 and got.json()["name"] == name

    # A read is also a Connect GET (the message in the query).
    fetched = httpx.get(
        f"{stack.http}{TICKETS}/GetTicket",
        params={"encoding": "json", "message": json.dumps({"name": name}), "connect": "v1"},
        headers=bearer(stack, "web-alice"),
        timeout=15,
    )
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["subject"] == "web call"
    # Someone's ticket is kept by no cache (the browser's disk included).
    assert fetched.headers["cache-control"] == "no-store"

    # The binary encoding, too; and someone else is told it does not exist.
    binary = httpx.post(
        f"{stack.http}{TICKETS}/GetTicket",
        content=tickets_pb2.GetTicketRequest(name=name).SerializeToString(),
        headers={"Content-Type": "application/proto", **bearer(stack, "web-alice")},
        timeout=15,
    )
    assert tickets_pb2.Ticket.FromString(binary.content).name == name
    other = connect_json(stack, f"{TICKETS}/GetTicket", {"name": name}, "web-mallory")
    assert other.status_code == 404 and other.json()["code"] == "not_found"


def test_a_bad_field_gets_the_same_answer_over_grpc_connect_and_grpc_web(stack: Stack) -> None:
    bad = new_ticket(category="no.such.category", subject="")
    client = Client(stack.gateway, stack.secret, "web-bob")
    try:
        with pytest.raises(grpc.RpcError) as raised:
            client.CreateTicket(json_format.ParseDict(bad, tickets_pb2.CreateTicketRequest()))
        err: Any = raised.value
    finally:
        client.close()
    sent = dict(err.trailing_metadata())[STATUS_DETAILS_KEY]
    over_grpc = violations_of(list(status_pb2.Status.FromString(sent).details))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {f for f, _ in over_grpc} >= {"ticket.category", "ticket.subject"}

    answer = connect_json(stack, f"{TICKETS}/CreateTicket", bad, "web-bob")
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_argument"
    assert connect_violations(answer.json()) == over_grpc
    assert answer.json()["message"] == err.details()

    trailers, _ = grpc_web(
        stack,
        f"{TICKETS}/CreateTicket",
        json_format.ParseDict(bad, tickets_pb2.CreateTicketRequest()),
        "web-bob",
    )
    assert trailers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    detail = base64.b64decode(trailers["grpc-status-details-bin"] + "==")
    assert violations_of(list(status_pb2.Status.FromString(detail).details)) == over_grpc


def test_an_enum_value_by_a_name_it_lacks_is_refused_naming_the_field(stack: Stack) -> None:
    """Proto JSON parsers that ignore unknown fields drop such a value without
    a word: a misspelt channel would have left SMS alone, a misspelt status
    filter listed every ticket. Numbers, names and unknown fields still pass."""
    bad = new_ticket()
    bad["ticket"]["contact"]["channels"] = ["CHANNEL_EMAIL", "CHANNEL_SMSS"]
    answer = connect_json(stack, f"{TICKETS}/CreateTicket", bad, "web-erin")
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "invalid_argument"
    assert [f for f, _ in connect_violations(answer.json())] == ["ticket.contact.channels[1]"]
    listed = connect_json(
        stack, f"{TICKETS}/ListTickets", {"statuses": ["TICKET_STATUS_NEWW"]}, "web-erin"
    )
    assert listed.status_code == 400, listed.text
    assert [f for f, _ in connect_violations(listed.json())] == ["statuses[0]"]
    ok = connect_json(
        stack,
        f"{TICKETS}/ListTickets",
        {"statuses": ["TICKET_STATUS_NEW", "2"], "someFutureField": 1},
        "web-erin",
    )
    assert ok.status_code == 200, ok.text


def test_grpc_web_serves_a_read(stack: Stack) -> None:
    made = connect_json(stack, f"{TICKETS}/CreateTicket", new_ticket(), "web-carol").json()
    trailers, data = grpc_web(
        stack, f"{TICKETS}/GetTicket", tickets_pb2.GetTicketRequest(name=made["name"]), "web-carol"
    )
    assert trailers["grpc-status"] == "0"
    assert tickets_pb2.Ticket.FromString(data).name == made["name"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"ticket": {"subject": ', "application/json", 400, "invalid_argument"),
        (b'{"ticket": {"subject": 7}}', "application/json", 400, "invalid_argument"),
        (b'["ticket"]', "application/json", 400, "invalid_argument"),
        (b'{"requestId": "a", "requestId": "b"}', "application/json", 400, "invalid_argument"),
        (b"\xff\xff\xff", "application/proto", 400, "invalid_argument"),
        (b'{"ticket": {"subject": "\xff\xfe"}}', "application/json", 400, "invalid_argument"),
        (b"subject=hello", "application/x-www-form-urlencoded", 415, "invalid_argument"),
        (b"{}", "text/plain", 415, "invalid_argument"),
        (
            b'{"ticket": {"description": "' + b"x" * (2 * 1024 * 1024) + b'"}}',
            "application/json",
            413,
            "resource_exhausted",
        ),
    ],
    ids=[
        "cut-json",
        "wrong-json-type",
        "not-an-object",
        "repeated-key",
        "bad-proto",
        "not-utf8",
        "form",
        "text",
        "oversized",
    ],
)
def test_what_is_no_request_gets_a_connect_error_not_a_500(
    stack: Stack, body: bytes, content_type: str, status: int, code: str
) -> None:
    answer = httpx.post(
        f"{stack.http}{TICKETS}/CreateTicket",
        content=body,
        headers={"Content-Type": content_type, **bearer(stack, "web-dave")},
        timeout=30,
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["code"] == code and answer.json()["message"]


def test_a_call_without_a_token_is_unauthenticated(stack: Stack) -> None:
    answer = httpx.post(
        f"{stack.http}{TICKETS}/ListTicketCategories",
        content=b"{}",
        headers={"Content-Type": "application/json"},
        timeout=15,
    )
    assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"


def test_cors_admits_the_configured_origins_only(stack: Stack) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{stack.http}{TICKETS}/CreateTicket",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=15,
        )

    allowed = preflight(ALLOWED_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = preflight("https://elsewhere.example")
    assert "access-control-allow-origin" not in refused.headers

    call = connect_json(stack, f"{TICKETS}/ListTicketCategories", {}, "web-erin")
    assert "access-control-allow-origin" not in call.headers  # no Origin, no CORS
    from_page = httpx.post(
        f"{stack.http}{TICKETS}/ListTicketCategories",
        content=b"{}",
        headers={
            "Content-Type": "application/json",
            "Origin": ALLOWED_ORIGIN,
            **bearer(stack, "web-erin"),
        },
        timeout=15,
    )
    assert from_page.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "grpc-status-details-bin" in from_page.headers["access-control-expose-headers"]


def upload(
    stack: Stack,
    data: bytes,
    subject: str,
    content_type: str = "image/png",
    file_name: str = "截图 1.png",
) -> httpx.Response:
    return httpx.post(
        f"{stack.http}/uploads/evidence",
        content=data,
        headers={
            "Content-Type": content_type,
            # As the browser client names it (encodeURIComponent).
            "X-File-Name": urllib.parse.quote(file_name, safe=""),
            **bearer(stack, subject),
        },
        timeout=60,
    )


def test_a_browser_upload_is_sniffed_hashed_and_attachable_by_its_owner_only(
    stack: Stack,
) -> None:
    data = png(extra=600 * 1024)  # several chunks
    stored = upload(stack, data, "web-frank")
    assert stored.status_code == 200, stored.text
    evidence = stored.json()
    assert evidence["sha256"] == hashlib.sha256(data).hexdigest()
    assert int(evidence["sizeBytes"]) == len(data)
    assert evidence["fileName"] == "截图 1.png"

    # Bytes that are no PNG are refused as over gRPC, naming what is wrong.
    refused = upload(stack, b"MZ\x90\x00 not an image at all", "web-frank")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_argument"
    # A name that is not URL-encoded UTF-8 is refused, not stored as "\ufffd.png".
    misnamed = httpx.post(
        f"{stack.http}/uploads/evidence",
        content=data,
        headers={
            "Content-Type": "image/png",
            "X-File-Name": "%E4%B8.png",
            **bearer(stack, "web-frank"),
        },
        timeout=60,
    )
    assert misnamed.status_code == 400, misnamed.text
    assert misnamed.json()["code"] == "invalid_argument" and "file_name" in misnamed.text
    anonymous = httpx.post(
        f"{stack.http}/uploads/evidence",
        content=data,
        timeout=15,
        headers={"Content-Type": "image/png"},
    )
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"

    with_it = new_ticket(evidence=[{"name": evidence["name"]}])
    made = connect_json(stack, f"{TICKETS}/CreateTicket", with_it, "web-frank")
    assert made.status_code == 200, made.text
    assert made.json()["evidence"][0]["sha256"] == evidence["sha256"]
    theirs = connect_json(
        stack,
        f"{TICKETS}/CreateTicket",
        new_ticket(evidence=[{"name": evidence["name"]}]),
        "web-grace",
    )
    assert theirs.status_code == 403 and theirs.json()["code"] == "permission_denied"


def test_an_agent_watches_the_queue_over_a_connect_stream(stack: Stack) -> None:
    seen: list[dict[str, Any]] = []

    def watch() -> None:
        request = json.dumps({}).encode()
        with httpx.stream(
            "POST",
            f"{stack.http}/casemesh.v1.CaseQueueService/WatchQueue",
            content=b"\x00" + struct.pack(">I", len(request)) + request,
            headers={
                "Content-Type": "application/connect+json",
                "Connect-Protocol-Version": "1",
                **bearer(stack, "web-agent", ("agent",)),
            },
            timeout=httpx.Timeout(30, read=120),
        ) as response:
            assert response.status_code == 200
            buffer = b""
            for chunk in response.iter_bytes():
                buffer += chunk
                while len(buffer) >= 5 and len(buffer) >= 5 + struct.unpack(">I", buffer[1:5])[0]:
                    size = struct.unpack(">I", buffer[1:5])[0]
                    flag, frame, buffer = buffer[0], buffer[5 : 5 + size], buffer[5 + size :]
                    if flag & 0x02:
                        return
                    seen.append(json.loads(frame))
                    if wanted and any(c.get("queueCase", {}).get("name") in wanted for c in seen):
                        return

    # The watch says WATCHING first: from then on no change is missed.
    wanted: list[str] = []
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    wait_until(lambda: bool(seen) or not watcher.is_alive(), timeout=30)
    assert seen and seen[0]["change"] == "WATCHING" and "queueCase" not in seen[0], seen[:1]
    made = connect_json(stack, f"{TICKETS}/CreateTicket", new_ticket(), "web-heidi")
    assert made.status_code == 200
    wanted.append(made.json()["name"])
    watcher.join(60)
    assert not watcher.is_alive(), "the new ticket never reached the watch"
    mine = [c for c in seen if c.get("queueCase", {}).get("name") in wanted]
    assert mine, seen[-3:]
    change = json_format.ParseDict(mine[0], casequeue_pb2.QueueChange())
    assert change.change == "ADDED" and change.queue_case.status


def test_probes_answer_on_the_http_port(stack: Stack) -> None:
    assert httpx.get(f"{stack.http}/healthz/ready", timeout=5).status_code == 200
    assert httpx.get(f"{stack.http}/healthz/live", timeout=5).status_code == 200


def test_not_solved_opens_the_ticket_the_user_wrote_with_their_screenshot(stack: Stack) -> None:
    user = f"web-ivan-{uuid.uuid4().hex[:6]}"
    help_centre = "/casemesh.v1.HelpCenterService"
    found = connect_json(
        stack, f"{help_centre}/SearchArticles", {"query": "无法登录", "locale": "zh-CN"}, user
    )
    assert found.status_code == 200, found.text
    session = found.json()["session"]
    shot = upload(stack, png(), user).json()
    not_solved = {
        "session": session,
        "solved": False,
        "locale": "zh-CN",
        "contact": {"email": f"{user}@example.com", "channels": ["CHANNEL_EMAIL"]},
        "category": "account.login",
        "subject": "换了手机号无法登录",
        "description": "收不到验证码",
    }
    # Someone else's screenshot is refused before anything is recorded.
    theirs = upload(stack, png(), "web-judy").json()
    refused = connect_json(
        stack,
        f"{help_centre}/ResolveHelp",
        {**not_solved, "evidence": [{"name": theirs["name"]}]},
        user,
    )
    assert refused.status_code == 403 and refused.json()["code"] == "permission_denied"

    answer = connect_json(
        stack,
        f"{help_centre}/ResolveHelp",
        {**not_solved, "evidence": [{"name": shot["name"]}]},
        user,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["subject"] == "换了手机号无法登录"
    ticket = connect_json(stack, f"{TICKETS}/GetTicket", {"name": answer.json()["ticket"]}, user)
    assert ticket.json()["category"] == "account.login"
    assert ticket.json()["description"] == "收不到验证码"
    assert [e["sha256"] for e in ticket.json()["evidence"]] == [shot["sha256"]]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("GET", f"{TICKETS}/CreateTicket", {}, 405, "unimplemented"),
        (
            "POST",
            f"{TICKETS}/NoSuchMethod",
            {"Content-Type": "application/json"},
            404,
            "unimplemented",
        ),
        ("PUT", f"{TICKETS}/GetTicket", {"Content-Type": "application/json"}, 405, "unimplemented"),
        (
            "POST",
            f"{TICKETS}/GetTicket",
            {"Content-Type": "application/json", "Connect-Timeout-Ms": "soon"},
            400,
            "invalid_argument",
        ),
        ("GET", "/no/such/page", {}, 404, "not_found"),
        ("GET", f"{TICKETS}/GetTicket?message=%7B%7D", {}, 415, "invalid_argument"),
        ("GET", f"{TICKETS}/GetTicket?encoding=xml&message=x", {}, 415, "invalid_argument"),
    ],
    ids=["get-a-write", "no-method", "put", "bad-timeout", "no-page", "get-no-enc", "get-xml"],
)
def test_what_no_method_serves_gets_a_connect_error(
    stack: Stack, method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    answer = httpx.request(
        method,
        f"{stack.http}{path}",
        content=b"{}" if method != "GET" else None,
        headers={**headers, **bearer(stack, "web-kim")},
        timeout=15,
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["message"]


def test_a_grpc_web_caller_refused_early_gets_a_grpc_status(stack: Stack) -> None:
    body = tickets_pb2.GetTicketRequest(name="tickets/x").SerializeToString()
    answer = httpx.post(
        f"{stack.http}{TICKETS}/GetTicket",
        content=b"\x00" + struct.pack(">I", len(body)) + body,
        headers={
            "Content-Type": "application/grpc-web+proto",
            "Grpc-Timeout": "5x",
            **bearer(stack, "web-kim"),
        },
        timeout=15,
    )
    assert answer.status_code == 200
    assert answer.headers["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert "grpc-timeout" in answer.headers["grpc-message"]


def test_an_upload_cut_off_stores_nothing(stack: Stack) -> None:
    """The browser went away mid-upload: nothing is kept, where over gRPC a
    cancelled stream keeps nothing either."""
    user = f"web-cut-{uuid.uuid4().hex[:6]}"
    data = png(extra=200 * 1024)
    host, port = stack.http.removeprefix("http://").split(":")
    head = (
        f"POST /uploads/evidence HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: {bearer(stack, user)['Authorization']}\r\n"
        f"Content-Type: image/png\r\nX-File-Name: cut.png\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(head + data[: len(data) // 3])
    # The whole file, sent after, is stored: the cut one left nothing behind.
    assert upload(stack, data, user).status_code == 200
    with psycopg.connect(stack.infra.pg.dsn(EVIDENCE_DB)) as db:
        rows = db.execute("SELECT size_bytes FROM evidence WHERE owner = %s", (user,)).fetchall()
    assert rows == [(len(data),)]


def watch_calls(stack: Stack, name: str) -> float:
    """How many WatchQueue calls the case queue has started or ended so far."""
    samples, _ = scrape(stack.queue_metrics)
    return sum(v for n, labels, v in samples if n == name and labels["grpc_method"] == "WatchQueue")


def test_a_watch_the_browser_closes_ends_behind_the_gateway_at_once(stack: Stack) -> None:
    """A closed tab must not hold a stream open at the case queue until the
    queue next changes (which on a quiet night may be hours)."""
    started = watch_calls(stack, "grpc_server_started_total")
    ended = watch_calls(stack, "grpc_server_handled_total")
    body = b"\x00" + struct.pack(">I", 2) + b"{}"
    host, port = stack.http.removeprefix("http://").split(":")
    head = (
        "POST /casemesh.v1.CaseQueueService/WatchQueue HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nContent-Type: application/connect+json\r\n"
        f"Connect-Protocol-Version: 1\r\nContent-Length: {len(body)}\r\n"
        f"Authorization: {bearer(stack, 'web-closer', ('agent',))['Authorization']}\r\n\r\n"
    ).encode()
    # The watch answers WATCHING at once: it is open at the case queue. Then the tab closes.
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(head + body)
        answer = b""
        while b"WATCHING" not in answer:
            chunk = conn.recv(4096)
            assert chunk, answer
            answer += chunk
        assert watch_calls(stack, "grpc_server_started_total") > started
    wait_until(lambda: watch_calls(stack, "grpc_server_handled_total") > ended, timeout=20)


def enveloped(*messages: bytes) -> bytes:
    return b"".join(b"\x00" + struct.pack(">I", len(m)) + m for m in messages)


@pytest.mark.parametrize(
    "content_type", ["application/connect+proto", "application/grpc-web+proto"]
)
def test_a_streamed_upload_with_a_broken_message_is_refused_and_stores_nothing(
    stack: Stack, content_type: str
) -> None:
    """A client stream whose second message is no protobuf is a bad request,
    answered as one, and the part before it is not kept as a file."""
    user = f"web-broken-{uuid.uuid4().hex[:6]}"
    metadata = evidence_pb2.UploadEvidenceRequest(
        metadata=evidence_pb2.EvidenceMetadata(file_name="a.png", declared_type="image/png")
    )
    chunk = evidence_pb2.UploadEvidenceRequest(chunk=png())
    answer = httpx.post(
        f"{stack.http}/casemesh.v1.EvidenceService/UploadEvidence",
        content=enveloped(metadata.SerializeToString(), chunk.SerializeToString(), b"\xff\xff"),
        headers={"Content-Type": content_type, **bearer(stack, user)},
        timeout=30,
    )
    if content_type.startswith("application/grpc-web"):
        assert answer.status_code == 200
        status = answer.headers.get("grpc-status")
        if status is None:  # in the trailers frame at the end of the body
            trailer = answer.content[5:].decode("latin-1").lower()
            status = trailer.split("grpc-status:")[1].split("\r\n")[0].strip()
        assert status == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), answer.content
    else:
        end = json.loads(answer.content[5:])  # Connect's end-of-stream message
        assert end["error"]["code"] == "invalid_argument", end
    with psycopg.connect(stack.infra.pg.dsn(EVIDENCE_DB)) as db:
        rows = db.execute("SELECT 1 FROM evidence WHERE owner = %s", (user,)).fetchall()
    assert rows == []
