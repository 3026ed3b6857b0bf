"""`python -m casemesh_gateway`: the public gRPC endpoint."""

from __future__ import annotations

import asyncio

import grpc

from casemesh.platform.backends import backend_channel
from casemesh.platform.entrypoint import run_command
from casemesh.platform.grpcutil import serve
from casemesh.platform.identity import InternalTokenSigner, TokenVerifier
from casemesh.v1 import (
    appeals_pb2,
    appeals_pb2_grpc,
    casequeue_pb2,
    casequeue_pb2_grpc,
    evidence_pb2,
    evidence_pb2_grpc,
    helpcenter_pb2,
    helpcenter_pb2_grpc,
    notifications_pb2,
    notifications_pb2_grpc,
    privacy_pb2,
    privacy_pb2_grpc,
    reports_pb2,
    reports_pb2_grpc,
    tickets_pb2,
    tickets_pb2_grpc,
)
from casemesh_gateway import fieldrules
from casemesh_gateway.api import (
    APPEALS,
    EVIDENCE,
    HELPCENTER,
    NOTIFIER,
    REPORTS,
    TICKETS,
    AppealGateway,
    Backend,
    EvidenceGateway,
    HelpGateway,
    NotificationGateway,
    PrivacyGateway,
    QueueGateway,
    ReportGateway,
    TicketGateway,
)
from casemesh_gateway.keys import published_keys
from casemesh_gateway.ratelimit import RateLimiter
from casemesh_gateway.settings import GatewaySettings
from casemesh_gateway.web import WebFront

MAX_MESSAGE = 1024 * 1024 + 64 * 1024


async def run(cfg: GatewaySettings) -> None:
    if cfg.jwks_url:
        # The provider's keys, fetched in the background (calls are UNAVAILABLE until they come).
        # Not ready (no traffic sent here) until they come; alive all along.
        loaded = asyncio.Event()
        refresh = cfg.jwks_refresh_seconds
        async with published_keys(cfg.jwks_url, refresh=refresh, loaded=loaded) as keys:
            await _serve(cfg, TokenVerifier(key_set=keys, rules=cfg.token_rules), loaded)
    else:
        secret = cfg.jwt_secret.get_secret_value() or None
        verifier = TokenVerifier(
            secret=secret, public_key=cfg.jwt_public_key or None, rules=cfg.token_rules
        )
        await _serve(cfg, verifier)


async def _serve(
    cfg: GatewaySettings, verifier: TokenVerifier, ready: asyncio.Event | None = None
) -> None:
    backend = Backend(
        verifier=verifier,
        signer=InternalTokenSigner(cfg.internal_signing_key.get_secret_value()),
        limiter=RateLimiter(per_minute=cfg.rate_limit_per_minute, burst=cfg.rate_limit_burst),
        agent_limiter=RateLimiter(
            per_minute=cfg.agent_rate_limit_per_minute, burst=cfg.agent_rate_limit_burst
        ),
        timeout=cfg.backend_timeout_seconds,
    )
    async with (
        backend_channel(cfg.tickets_target) as tickets_channel,
        backend_channel(
            cfg.evidence_target, ("grpc.max_send_message_length", MAX_MESSAGE)
        ) as evidence_channel,
        backend_channel(cfg.appeals_target) as appeals_channel,
        backend_channel(cfg.reports_target) as reports_channel,
        backend_channel(cfg.casequeue_target) as queue_channel,
        backend_channel(cfg.helpcenter_target) as help_channel,
        backend_channel(cfg.privacy_target) as privacy_channel,
        backend_channel(cfg.notifier_target) as notifier_channel,
    ):
        backend.evidence = evidence_pb2_grpc.EvidenceServiceStub(evidence_channel)
        tickets = TicketGateway(backend, tickets_channel)
        evidence = EvidenceGateway(
            backend,
            evidence_channel,
            cfg.upload_timeout_seconds,
            largest_file=cfg.largest_evidence_bytes,
        )
        appeals = AppealGateway(backend, appeals_channel)
        reports = ReportGateway(backend, reports_channel)
        backend.reports = reports.stub
        queue = QueueGateway(backend, queue_channel)
        help_centre = HelpGateway(backend, help_channel, tickets_channel)
        notifications = NotificationGateway(backend, notifier_channel)
        privacy = PrivacyGateway(
            backend,
            privacy_channel,
            cases={
                TICKETS: tickets.stub,
                APPEALS: appeals.stub,
                REPORTS: reports.stub,
                EVIDENCE: evidence.stub,
                HELPCENTER: help_centre.stub,
                NOTIFIER: notifications.stub,
            },
            read_timeout=cfg.upload_timeout_seconds,
        )

        def register(server: grpc.aio.Server) -> None:
            tickets_pb2_grpc.add_TicketServiceServicer_to_server(tickets, server)
            evidence_pb2_grpc.add_EvidenceServiceServicer_to_server(evidence, server)
            appeals_pb2_grpc.add_AppealServiceServicer_to_server(appeals, server)
            reports_pb2_grpc.add_ReportServiceServicer_to_server(reports, server)
            casequeue_pb2_grpc.add_CaseQueueServiceServicer_to_server(queue, server)
            helpcenter_pb2_grpc.add_HelpCenterServiceServicer_to_server(help_centre, server)
            privacy_pb2_grpc.add_PrivacyServiceServicer_to_server(privacy, server)
            notifications_pb2_grpc.add_NotificationServiceServicer_to_server(notifications, server)

        services = [
            tickets_pb2.DESCRIPTOR.services_by_name["TicketService"],
            evidence_pb2.DESCRIPTOR.services_by_name["EvidenceService"],
            appeals_pb2.DESCRIPTOR.services_by_name["AppealService"],
            reports_pb2.DESCRIPTOR.services_by_name["ReportService"],
            casequeue_pb2.DESCRIPTOR.services_by_name["CaseQueueService"],
            helpcenter_pb2.DESCRIPTOR.services_by_name["HelpCenterService"],
            privacy_pb2.DESCRIPTOR.services_by_name["PrivacyService"],
            notifications_pb2.DESCRIPTOR.services_by_name["NotificationService"],
        ]
        fieldrules.warm(services)
        await serve(
            cfg,
            register=register,
            service_names=[s.full_name for s in services],
            # Evidence arrives in chunks of up to 1 MiB.
            options=[("grpc.max_receive_message_length", MAX_MESSAGE)],
            # Agents' watches end when the gateway drains (they watch again
            # elsewhere); uploads in flight get the grace period.
            endless_streams=["/casemesh.v1.CaseQueueService/WatchQueue"],
            # The same handlers over Connect and gRPC-Web, for browsers.
            companion=WebFront(
                cfg.http_addr,
                services=services,
                cors_origins=cfg.cors_origin_list,
                pages={"/": cfg.web_root, "/console/": cfg.console_root},
                connect_origins={"/console/": cfg.console_connect_origin_list},
                sign_in_secret=cfg.jwt_secret.get_secret_value() if cfg.dev_sign_in else None,
                read_max_bytes=MAX_MESSAGE,
                max_connections=cfg.http_max_connections,
                ready=ready.is_set if ready is not None else lambda: True,
            ),
            ready=ready,
        )


if __name__ == "__main__":
    run_command(__package__, {"serve": (GatewaySettings, run)})
