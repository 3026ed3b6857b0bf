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

# The largest record a topic takes, what the producers may send and what
# the consumers fetch of a partition at once: 4 MiB, four times Kafka's
# default. A writer stores an event of 512 KiB at the most
# (`eventstore.MAX_EVENT_BYTES`), and its record can come to about twice
# that (personal texts sealed in base64, fields derived from the state,
# the envelope's headers). One over the limit could never be published: its
# relay would try it again for ever, every later event waiting behind it.
MAX_RECORD_BYTES = 4 * 1024 * 1024

# What each topic keeps (its Kafka configs), as deploy/k8s/base/topics.yaml
# and docker-compose.yml set them (a test holds them to this): case streams
# for ever, so any read model can be rebuilt from offset 0; delivery
# outcomes and verified requests (both phone numbers, in clear, for the
# account system) 30 days; one-time codes an hour. Kafka deletes only closed
# segments, so a short retention needs short segments too. Every topic takes
# records of up to MAX_RECORD_BYTES.
LARGEST = {"max.message.bytes": str(MAX_RECORD_BYTES)}
FOREVER = {"retention.ms": "-1", "cleanup.policy": "delete", **LARGEST}
MONTH = {"retention.ms": str(30 * 86_400_000), "segment.ms": str(86_400_000), **LARGEST}
CONFIGS: dict[str, dict[str, str]] = {
    **{t: FOREVER for t in (TICKETS, APPEALS, REPORTS, CASEQUEUE, PRIVACY)},
    **{t: MONTH for t in (NOTIFICATIONS, HELPCENTER)},
    VERIFICATION: {"retention.ms": str(3_600_000), "segment.ms": str(600_000), **LARGEST},
}
