"""Every Kafka topic Casemesh writes or reads, named once. A topic is a
contract like the protos: its name carries its major version. Keys and
readers: docs/architecture.md, "Topics"."""

from __future__ import annotations

TICKETS = "casemesh.tickets.v1"  # every ticket event, key: ticket id
APPEALS = "casemesh.appeals.v1"  # every copyright-case event, key: appeal id
REPORTS = "casemesh.reports.v1"  # every reports aggregate event, key: its id
NOTIFICATIONS = "casemesh.notifications.v1"  # delivery outcomes, key: job id
CASEQUEUE = "casemesh.casequeue.v1"  # SLA warnings, breaches, escalations
VERIFICATION = "casemesh.verification.v1"  # one-time codes to send (kept an hour)
HELPCENTER = "casemesh.helpcenter.v1"  # verified self-service requests
PRIVACY = "casemesh.privacy.v1"  # erasures of people's personal data, key: the person

ALL = (TICKETS, APPEALS, REPORTS, NOTIFICATIONS, CASEQUEUE, VERIFICATION, HELPCENTER, PRIVACY)
