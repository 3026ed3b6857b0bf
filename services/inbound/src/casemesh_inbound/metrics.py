"""The inbound mail service's figures for Prometheus."""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter

# Why a message was refused: untrusted_relay (it came from elsewhere than the
# trusted mail server, when one is set), malformed (not a reply address), forged (its
# token does not match), domain (not ours), unauthenticated (the mail server
# in front does not vouch for the From domain: `authres`), unknown_ticket,
# not_requester (From is not the ticket's contact), closed (the ticket takes
# no comments),
# unreadable, evidence (an attachment the evidence service refused), and
# automatic (an out-of-office answer or a bounce: taken with 250 and dropped).
# A message over the size limit is refused by aiosmtpd itself (552), uncounted.
REASONS = (
    "untrusted_relay",
    "malformed",
    "forged",
    "domain",
    "unauthenticated",
    "unknown_ticket",
    "not_requester",
    "closed",
    "unreadable",
    "evidence",
    "automatic",
)
REFUSED = Counter(
    "casemesh_inbound_refused",
    "Inbound e-mails refused, by reason",
    ["reason"],
    registry=REGISTRY,
)
# Every reason from zero, so a rate over the first refusal is not lost.
for _reason in REASONS:
    REFUSED.labels(_reason)
# Messages put off (451 4.3.1) before their data came, the service holding all
# the message bytes it may (CASEMESH_MESSAGE_BUDGET_BYTES): not refused, their
# senders try again later.
DEFERRED = Counter(
    "casemesh_inbound_deferred",
    "Inbound e-mails put off (451 4.3.1) while the service held all the mail it may",
    registry=REGISTRY,
)
ACCEPTED = Counter(
    "casemesh_inbound_accepted",
    "Inbound e-mail replies added to their ticket as a comment",
    registry=REGISTRY,
)
