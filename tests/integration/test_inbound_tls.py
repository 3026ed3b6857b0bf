"""The inbound mail service's SMTP sessions as a sending server meets them:
STARTTLS offered when a certificate is set, the message taken over TLS; none
offered without one; a certificate without its key stops the service at start."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from casemesh.platform.identity import new_signing_key
from casemesh_inbound.settings import InboundSettings
from casemesh_inbound.smtp import sessions
from tests.support import self_signed, served_smtp


class Taking:
    """A handler that takes every message and notes whether it came over TLS."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, bool]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.taken.append((envelope.rcpt_tos[0], session.ssl is not None))
        return "250 OK"


def settings(**tls: str) -> InboundSettings:
    return InboundSettings(
        reply_token_secret="s" * 32,
        internal_signing_key=new_signing_key(),
        **tls,  # type: ignore[arg-type]
    )


def send(port: int, ca: Path | None) -> set[str]:
    """Sends one message as a sending server would (STARTTLS when offered and
    `ca` given); returns the extensions the server offered first."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo("mx.example.com")
        offered = set(smtp.esmtp_features)
        if ca is not None:
            smtp.starttls(context=ssl.create_default_context(cafile=str(ca)))
            smtp.ehlo("mx.example.com")
        smtp.sendmail(
            "someone@example.com",
            ["reply+x@reply.casemesh.local"],
            b"Subject: re\r\n\r\nthanks\r\n",
        )
    return offered


@pytest.fixture()
def cert_files(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    return tmp_path / "cert.pem", tmp_path / "key.pem"


async def test_with_a_certificate_starttls_is_offered_and_the_message_comes_over_tls(
    cert_files: tuple[Path, Path],
) -> None:
    cert, key = cert_files
    handler = Taking()
    cfg = settings(tls_cert_file=str(cert), tls_key_file=str(key))
    async with served_smtp(sessions(handler, cfg)) as port:
        offered = await asyncio.to_thread(send, port, cert)
    assert "starttls" in offered
    assert handler.taken == [("reply+x@reply.casemesh.local", True)]


async def test_without_a_certificate_no_starttls_is_offered_and_plain_mail_still_comes() -> None:
    handler = Taking()
    async with served_smtp(sessions(handler, settings())) as port:
        offered = await asyncio.to_thread(send, port, None)
    assert "starttls" not in offered
    assert handler.taken == [("reply+x@reply.casemesh.local", False)]


def test_a_certificate_without_its_key_is_refused_at_start(
    cert_files: tuple[Path, Path],
) -> None:
    with pytest.raises(ValidationError, match="CASEMESH_TLS_KEY_FILE"):
        settings(tls_cert_file=str(cert_files[0]))
    unreadable = settings(tls_cert_file=str(cert_files[0]), tls_key_file="/nonexistent/key.pem")
    with pytest.raises(OSError):
        sessions(Taking(), unreadable)
