"""Channels from one service to another's replicas: calls spread over them,
a draining one left, a backend back within seconds, the calls that are
safe to repeat retried (the gateway's to every service, inbound's to the
tickets and evidence services)."""

from __future__ import annotations

from typing import Any

import grpc

# Retry transient backend failures, only for calls that are safe to repeat:
# reads, and the creates that are idempotent on request_id.
# Round robin over every address the target resolves to (on Kubernetes a
# headless Service: one per pod), so calls spread over the replicas; each
# replica's health is watched, so new calls leave one whose readiness turned
# NOT_SERVING (it is draining) before it stops taking calls.
SERVICE_CONFIG = """{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [
      {"service": "casemesh.v1.TicketService", "method": "GetTicket"},
      {"service": "casemesh.v1.TicketService", "method": "ListTickets"},
      {"service": "casemesh.v1.TicketService", "method": "SearchTickets"},
      {"service": "casemesh.v1.TicketService", "method": "ListTicketEvents"},
      {"service": "casemesh.v1.TicketService", "method": "ListTicketCategories"},
      {"service": "casemesh.v1.TicketService", "method": "CreateTicket"},
      {"service": "casemesh.v1.AppealService", "method": "GetAppeal"},
      {"service": "casemesh.v1.AppealService", "method": "ListAppeals"},
      {"service": "casemesh.v1.AppealService", "method": "ListAppealEvents"},
      {"service": "casemesh.v1.AppealService", "method": "FileAppeal"},
      {"service": "casemesh.v1.EvidenceService", "method": "GetEvidence"},
      {"service": "casemesh.v1.EvidenceService", "method": "ListEvidence"},
      {"service": "casemesh.v1.ReportService", "method": "FileReport"},
      {"service": "casemesh.v1.ReportService", "method": "GetReport"},
      {"service": "casemesh.v1.ReportService", "method": "ListReportEvents"},
      {"service": "casemesh.v1.ReportService", "method": "ListReports"},
      {"service": "casemesh.v1.ReportService", "method": "ListReportReasons"},
      {"service": "casemesh.v1.ReportService", "method": "GetReportCase"},
      {"service": "casemesh.v1.ReportService", "method": "ListReportCases"},
      {"service": "casemesh.v1.ReportService", "method": "ListTrustedFlaggers"},
      {"service": "casemesh.v1.ReportService", "method": "GetTransparencyReport"},
      {"service": "casemesh.v1.ReportService", "method": "ListMyRestrictions"},
      {"service": "casemesh.v1.ReportService", "method": "ListMyReportCases"},
      {"service": "casemesh.v1.ReportService", "method": "GetMyReportingStanding"},
      {"service": "casemesh.v1.CaseQueueService", "method": "ListQueueCases"},
      {"service": "casemesh.v1.HelpCenterService", "method": "SearchArticles"},
      {"service": "casemesh.v1.HelpCenterService", "method": "SuggestArticles"},
      {"service": "casemesh.v1.HelpCenterService", "method": "GetArticle"},
      {"service": "casemesh.v1.HelpCenterService", "method": "ListHelpCategories"},
      {"service": "casemesh.v1.HelpCenterService", "method": "ListMyHelpSessions"},
      {"service": "casemesh.v1.HelpCenterService", "method": "ListMyPhoneChanges"},
      {"service": "casemesh.v1.NotificationService", "method": "ListMyNotifications"}
    ],
    "retryPolicy": {
      "maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s",
      "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}"""


# A backend that went away is dialled again within 2 s of its coming back
# (gRPC's default backoff grows to two minutes): in a cluster a connect is
# cheap, and every second of backoff is a second of UNAVAILABLE answers.
#
# A backend gone without a word (its node died, the network cut it off: no
# FIN or RST comes) is noticed within 30 s while a call is open on its
# connection (the watch on its health is one, always): a ping every 20 s,
# and the connection given up, its calls failing with UNAVAILABLE, when a
# ping goes unanswered for 10 s. Without it a long stream (an export or a
# video being downloaded) would wait for its whole deadline, hours, the
# download stalled with no error. gRPC sends no pings unless asked, and by
# default stops after two while the client sends no data of its own, which
# is just what a download is: hence max_pings_without_data 0. While data
# comes gRPC pings on its own (to size its flow-control window); the
# keepalive ping waits behind such a ping still unanswered, and that one is
# waited for 60 s unless ping_timeout_ms says otherwise. No pings on a
# connection without calls (a server counts those as abuse). The servers
# allow pings this often (`PINGS_ALLOWED`).
BACKEND_OPTIONS = [
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    # Also the least time a connection attempt is given: a busy backend
    # must have time to answer.
    ("grpc.min_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
]


# What a server allows of the clients' pings: the channels above ping every
# 20 s while a call is open, to notice a server gone without a word. gRPC's
# server counts a ping that comes within 5 minutes of the last one, with
# nothing sent in between, as a strike, and at the third answers GOAWAY
# too_many_pings and closes the connection, failing every call on it: a
# paused download, a quiet watch. So pings 10 s apart are allowed, half the
# clients' interval, by every server a service runs (its own, and the one
# answering health while it starts); the strikes stay at gRPC's default, so
# a client pinging faster than that is still cut off.
PINGS_ALLOWED = ("grpc.http2.min_ping_interval_without_data_ms", 10_000)


def backend_channel(target: str, *options: tuple[str, Any]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=[*BACKEND_OPTIONS, *options])
