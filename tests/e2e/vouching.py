"""Calling a service behind the gateway straight on its own port, as the
gateway does: with a token signed by the stack's gateway key."""

from __future__ import annotations

from collections.abc import Mapping

from casemesh.platform.identity import Identity, InternalTokenSigner
from casemesh_gateway.api import (
    APPEALS,
    CASEQUEUE,
    EVIDENCE,
    HELPCENTER,
    NOTIFIER,
    PRIVACY,
    REPORTS,
    TICKETS,
)
from tests.conftest import Stack

# The audience each service process answers to: the gRPC service it serves.
AUDIENCES = {
    "tickets": TICKETS,
    "evidence": EVIDENCE,
    "appeals": APPEALS,
    "reports": REPORTS,
    "casequeue": CASEQUEUE,
    "helpcenter": HELPCENTER,
    "privacy": PRIVACY,
    "notifier": NOTIFIER,
}


def gateway_signer(stack: Stack) -> InternalTokenSigner:
    return InternalTokenSigner(
        stack.supervisor.command("gateway")[1]["CASEMESH_INTERNAL_SIGNING_KEY"]
    )


def vouched_as(
    stack: Stack, service: str, who: str, *roles: str, facts: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """Metadata for a call to `service` (a process name) as `who`, signed now."""
    identity = Identity(who, frozenset(roles or ("user",)))
    return list(gateway_signer(stack).metadata(identity, AUDIENCES[service], facts))
