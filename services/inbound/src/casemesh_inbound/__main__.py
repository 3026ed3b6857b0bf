"""`python -m casemesh_inbound`: the inbound mail service. An SMTP server (port
25 of the reply domain's MX reaches it) that turns a requester's reply to a
ticket e-mail into a comment on that ticket."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from casemesh.platform.backends import backend_channel
from casemesh.platform.entrypoint import run_command
from casemesh.platform.identity import InternalTokenSigner
from casemesh.platform.logging import get_logger
from casemesh.platform.settings import listen_address
from casemesh.v1 import evidence_pb2_grpc, tickets_pb2_grpc
from casemesh_inbound.desk import CHUNK, ReplyDesk
from casemesh_inbound.settings import InboundSettings
from casemesh_inbound.smtp import ReplyHandler, sessions

log = get_logger(__name__)


async def run(cfg: InboundSettings) -> None:
    options = [("grpc.max_send_message_length", CHUNK + 64 * 1024)]
    # As the gateway's: spread over the replicas, a draining one left, a
    # backend back within seconds (the default backoff grows to two minutes,
    # each reply meanwhile answered "try again later").
    async with (
        backend_channel(cfg.tickets_target) as tickets,
        backend_channel(cfg.evidence_target, *options) as evidence,
    ):
        desk = ReplyDesk(
            signer=InternalTokenSigner(cfg.internal_signing_key.get_secret_value()),
            tickets=tickets_pb2_grpc.TicketServiceStub(tickets),
            evidence=evidence_pb2_grpc.EvidenceServiceStub(evidence),
            secrets=cfg.reply_secrets(),
            domain=cfg.reply_domain,
            timeout=cfg.backend_timeout_seconds,
            authserv_id=cfg.trusted_authserv_id,
        )
        handler = ReplyHandler(desk, cfg.relay_networks())
        host, port = listen_address(cfg.smtp_addr)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(sessions(handler, cfg), host=host, port=port)
        log.info(
            "inbound.serving",
            addr=cfg.smtp_addr,
            domain=cfg.reply_domain,
            starttls=bool(cfg.tls_cert_file),
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        # No new connections; messages being added get the grace period to be
        # answered (the server's wait_closed waits for no connection before
        # Python 3.12, and what still runs when this returns is cancelled).
        await asyncio.sleep(cfg.shutdown_delay_seconds)
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handler.answered(), cfg.shutdown_grace_seconds)
        log.info("inbound.stopped")


if __name__ == "__main__":
    run_command(__package__, {"serve": (InboundSettings, run)})
