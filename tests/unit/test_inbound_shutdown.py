"""Stopping inbound mail (SIGTERM, as Kubernetes stops a pod): a reply being
added when the signal comes is answered before the process ends, within the
grace period, so its sender is not cut off mid-reply and made to send again
what may have been added."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import uuid

from casemesh.platform.identity import new_signing_key
from casemesh.platform.replies import reply_address
from casemesh_devstack.ports import free_port
from tests.support import wait_until

SECRET = "s" * 32
DOMAIN = "reply.example.com"

# The service as `python -m casemesh_inbound serve` runs it (asyncio.run, which
# cancels what still runs when the service returns), its desk adding each
# reply until a moment after the service has closed its port: the signal came
# meanwhile. (A service that did not wait would end within that moment.)
SERVICE = """
import asyncio, os, sys

from casemesh_inbound import __main__ as inbound
from casemesh_inbound.desk import ReplyDesk
from casemesh_inbound.settings import InboundSettings

port, secret, domain = int(sys.argv[1]), sys.argv[2], sys.argv[3]
closed = asyncio.Event()
close = asyncio.Server.close


def closing(server):
    close(server)
    closed.set()


async def add_reply(desk, ticket_id, raw):
    print("adding", flush=True)
    await closed.wait()
    await asyncio.sleep(0.5)
    return "TICKET_STATUS_OPEN"


asyncio.Server.close = closing
ReplyDesk.add_reply = add_reply
cfg = InboundSettings(
    smtp_addr=f"127.0.0.1:{port}",
    reply_domain=domain,
    reply_token_secret=secret,
    internal_signing_key=os.environ["TEST_INBOUND_SIGNING_KEY"],
    trusted_authserv_id="",
    trusted_relays="",
    tls_cert_file="",
    tls_key_file="",
    shutdown_delay_seconds=0,
    shutdown_grace_seconds=60,
)
asyncio.run(inbound.run(cfg))
"""


def connected(port: int) -> smtplib.SMTP | None:
    try:
        return smtplib.SMTP("127.0.0.1", port, timeout=60)
    except OSError:
        return None


def test_a_reply_being_added_when_the_service_is_stopped_is_answered() -> None:
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(port), SECRET, DOMAIN],
        env={**os.environ, "TEST_INBOUND_SIGNING_KEY": new_signing_key()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        smtp: smtplib.SMTP = wait_until(lambda: connected(port), timeout=60)
        smtp.ehlo()
        smtp.mail("alice@example.com")
        assert smtp.rcpt(reply_address(str(uuid.uuid4()), SECRET, DOMAIN))[0] == 250
        assert smtp.docmd("DATA")[0] == 354
        smtp.send(b"From: alice@example.com\r\nMessage-ID: <stop@example.com>\r\n\r\nhi\r\n.\r\n")
        assert service.stdout is not None
        for line in service.stdout:
            if line.strip() == "adding":
                break
        service.send_signal(signal.SIGTERM)
        assert smtp.getreply() == (250, b"2.0.0 added to the ticket")
        smtp.close()
        output, _ = service.communicate(timeout=60)
        assert service.returncode == 0, output
    finally:
        if service.poll() is None:
            service.kill()
            service.communicate()
