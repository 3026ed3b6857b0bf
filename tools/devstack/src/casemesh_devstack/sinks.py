"""Local stand-ins for the e-mail (SMTP) and SMS (HTTP) providers.

Both sinks accept what the notifier sends, keep it in memory for tests and
write it to disk for people: the mail sink saves every message as
``<dir>/mail/NNNN.eml`` and appends a decoded summary to ``<dir>/mail.log``;
the SMS sink appends to ``<dir>/sms.jsonl`` (machine-readable) and
``<dir>/sms.log`` (human-readable).  The SMS sink honours ``Idempotency-Key``
the way real providers do, so duplicate deliveries are visible as such.
Both can be told to fail the next N requests, to exercise retries.
"""

from __future__ import annotations

import email.policy
import json
import logging
import re
import threading
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

log = logging.getLogger(__name__)

_LOOPBACK = "127.0.0.1"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _text_body(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, KeyError, ValueError):
        # Unknown charset or broken encoding: show what we can rather than nothing.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else repr(content)


class MailSink:
    """An SMTP server on 127.0.0.1:port that files away every message it receives."""

    def __init__(self, directory: Path, port: int, host: str = _LOOPBACK) -> None:
        self.directory = Path(directory).absolute()
        self.host = host
        self.port = port
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._fail_next = 0
        self._controller: Controller | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def mail_dir(self) -> Path:
        return self.directory / "mail"

    @property
    def log_path(self) -> Path:
        return self.directory / "mail.log"

    def start(self) -> None:
        self.mail_dir.mkdir(parents=True, exist_ok=True)
        controller = Controller(
            _MailHandler(self),
            hostname=self.host,
            port=self.port,
            enable_SMTPUTF8=True,
            ident="casemesh-dev mail sink",
        )
        controller.start()
        self._controller = controller
        log.info("mail sink on %s:%d writing to %s", self.host, self.port, self.log_path)

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def fail_next(self, count: int = 1) -> None:
        """Answer the next ``count`` messages with a temporary SMTP failure (451)."""
        with self._lock:
            self._fail_next = count

    def wait_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """Block until at least ``count`` messages arrived; return a copy of them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} e-mails after {timeout} s")
            return list(self.messages)

    def _take_failure(self) -> bool:
        with self._lock:
            if self._fail_next > 0:
                self._fail_next -= 1
                return True
            return False

    def _next_number(self) -> int:
        numbers = [int(p.stem) for p in self.mail_dir.glob("*.eml") if p.stem.isdigit()]
        return max(numbers, default=0) + 1

    def _receive(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        msg = BytesParser(policy=email.policy.default).parsebytes(raw)
        with self._changed:
            number = self._next_number()
            eml = self.mail_dir / f"{number:04d}.eml"
            eml.write_bytes(raw)
            entry = (
                f"=== {number:04d}  {_now()}  ({eml.relative_to(self.directory)})\n"
                f"From:     {msg.get('From', '')}\n"
                f"To:       {msg.get('To', '')}\n"
                f"Envelope: {mail_from} -> {', '.join(rcpt_tos)}\n"
                f"Subject:  {msg.get('Subject', '')}\n"
                f"\n{_text_body(msg).rstrip()}\n\n"
            )
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(entry)
            self.messages.append(msg)
            self._changed.notify_all()

    def __enter__(self) -> MailSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _MailHandler:
    """aiosmtpd handler: hands each DATA payload to its MailSink."""

    def __init__(self, sink: MailSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self._sink._take_failure():
            return "451 4.3.0 Temporary failure (casemesh-dev sink told to fail)"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        assert isinstance(raw, bytes)
        mail_from = envelope.mail_from or ""
        try:
            self._sink._receive(mail_from, list(envelope.rcpt_tos), raw)
        except Exception:
            log.exception("mail sink could not store a message")
            return "451 4.3.0 Could not store message"
        return "250 OK: stored by casemesh-dev mail sink"


class SmsSink:
    """An HTTP SMS provider on 127.0.0.1:port: ``POST /sms`` with a JSON body."""

    def __init__(self, directory: Path, port: int, host: str = _LOOPBACK) -> None:
        self.directory = Path(directory).absolute()
        self.host = host
        self.port = port
        self.messages: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._fail_next = 0
        self._fail_status = HTTPStatus.SERVICE_UNAVAILABLE
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/sms"

    @property
    def jsonl_path(self) -> Path:
        return self.directory / "sms.jsonl"

    @property
    def log_path(self) -> Path:
        return self.directory / "sms.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load_keys()
        server = ThreadingHTTPServer((self.host, self.port), _sms_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="casemesh-sms-sink", daemon=True
        )
        self._thread.start()
        log.info("SMS sink on %s writing to %s", self.url, self.log_path)

    def _load_keys(self) -> None:
        """Remember the keys of earlier runs in this directory, as a provider would."""
        if not self.jsonl_path.exists():
            return
        with self.jsonl_path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("idempotency_key"):
                    self._responses[str(record["idempotency_key"])] = {
                        "id": record.get("id"),
                        "status": "accepted",
                    }

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def fail_next(self, count: int = 1, status: int = HTTPStatus.SERVICE_UNAVAILABLE) -> None:
        """Answer the next ``count`` requests with ``status`` and store nothing."""
        with self._lock:
            self._fail_next = count
            self._fail_status = HTTPStatus(status)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least ``count`` SMS were accepted; return a copy of them all."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(f"{len(self.messages)} of {count} SMS after {timeout} s")
            return list(self.messages)

    def _handle(self, body: dict[str, Any], key: str | None) -> tuple[int, dict[str, Any]]:
        """Validate, de-duplicate and store one request; returns (status, JSON reply)."""
        with self._changed:
            if self._fail_next > 0:
                self._fail_next -= 1
                status = self._fail_status
                return status, {"error": f"{status.phrase} (casemesh-dev sink told to fail)"}
            missing = [f for f in ("to", "text") if not isinstance(body.get(f), str) or not body[f]]
            if missing:
                return 400, {"error": f"missing or empty field(s): {', '.join(missing)}"}
            if key is not None and key in self._responses:
                return 200, {**self._responses[key], "duplicate": True}
            reply: dict[str, Any] = {"id": str(uuid.uuid4()), "status": "accepted"}
            record: dict[str, Any] = {
                **body,
                "id": reply["id"],
                "received_at": _now(),
                "idempotency_key": key,
            }
            with self.jsonl_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            params = body.get("params")
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(
                    f"=== {record['received_at']}  to {body['to']}"
                    f"  template {body.get('template_id', '-')}  key {key or '-'}"
                    f"  id {reply['id']}\n"
                    + (f"params: {json.dumps(params, ensure_ascii=False)}\n" if params else "")
                    + f"{body['text']}\n\n"
                )
            if key is not None:
                self._responses[key] = reply
            self.messages.append(record)
            self._changed.notify_all()
            return 200, reply

    def __enter__(self) -> SmsSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _sms_handler(sink: SmsSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "casemesh-dev-sms-sink/1"

        def _reply(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _path(self) -> str:
            return re.split(r"[?#]", self.path, maxsplit=1)[0].rstrip("/")

        def do_POST(self) -> None:
            if self._path() != "/sms":
                self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"null")
            except (ValueError, UnicodeDecodeError) as exc:
                self._reply(400, {"error": f"body is not JSON: {exc}"})
                return
            if not isinstance(body, dict):
                self._reply(400, {"error": "body must be a JSON object"})
                return
            status, reply = sink._handle(body, self.headers.get("Idempotency-Key"))
            self._reply(status, reply)

        def do_GET(self) -> None:
            # Handy for a person with curl: everything accepted so far.
            if self._path() != "/sms":
                self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
                return
            with sink._lock:
                self._reply(200, list(sink.messages))

        def log_message(self, format: str, *args: Any) -> None:
            # The sink's own files are the record; per-request stderr lines are noise.
            return

    return Handler
