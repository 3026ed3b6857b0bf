"""Reply addresses: the address a ticket e-mail's Reply-To carries, so that a
requester's answer finds its ticket, and nobody can write to a ticket whose
address they were not sent.

`reply+<ticket id>.<mac>@<reply domain>`: the ticket id as 32 hex digits
(its UUID without dashes) and the mac, HMAC-SHA256 over the ticket id with a
secret only the services hold, cut to 120 bits in lower-case base32 (mail
systems may change a local part's case), compared in constant time: 63
characters, within the 64 SMTP allows a local part. While the secret
rotates, addresses made with the old one still answer: `ticket_of` takes
every secret in force, newest first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from uuid import UUID

LOCAL_PREFIX = "reply+"
# 120 bits of the mac, 24 base32 characters: no forging by guessing.
MAC_BYTES = 15
MAC_CHARS = 24


class UnknownReplyAddress(ValueError):
    """The address is not a reply address, or its mac does not match."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason  # malformed | forged


def _mac(ticket_id: str, secret: str) -> str:
    digest = hmac.new(secret.encode(), ticket_id.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:MAC_BYTES]).decode().lower()


def reply_address(ticket_id: str, secret: str, domain: str) -> str:
    """The address replies to the ticket `ticket_id` go to."""
    if not secret:
        raise ValueError("a reply address needs a secret")
    ticket_id = str(UUID(ticket_id))
    return f"{LOCAL_PREFIX}{UUID(ticket_id).hex}.{_mac(ticket_id, secret)}@{domain}"


def ticket_of(address: str, secrets: Sequence[str]) -> str:
    """The ticket id an address made by `reply_address` names, if one of
    `secrets` made it; `UnknownReplyAddress` otherwise. The domain is not
    checked here: the mail server accepts only its own."""
    local, at, _domain = address.strip().strip("<>").rpartition("@")
    if not at or not local.lower().startswith(LOCAL_PREFIX):
        raise UnknownReplyAddress("malformed", "not a reply address")
    ticket_id, dot, mac = local[len(LOCAL_PREFIX) :].rpartition(".")
    try:
        ticket_id = str(UUID(ticket_id))
    except ValueError:
        raise UnknownReplyAddress("malformed", "the reply address names no ticket") from None
    if not dot or len(mac) != MAC_CHARS:
        raise UnknownReplyAddress("malformed", "the reply address carries no valid token")
    # Every secret is tried, so the time taken says nothing about which matched.
    matched = False
    for secret in secrets:
        if secret:
            matched |= hmac.compare_digest(_mac(ticket_id, secret), mac.lower())
    if not matched:
        raise UnknownReplyAddress("forged", "the reply address's token does not match")
    return ticket_id
