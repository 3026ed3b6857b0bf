"""Reply addresses: the token names one ticket, cannot be forged or borrowed
from another ticket, and survives a secret rotation."""

from __future__ import annotations

import uuid

import pytest

from casemesh.platform.replies import UnknownReplyAddress, reply_address, ticket_of

TICKET = str(uuid.uuid4())
SECRET = "s" * 32


def test_a_reply_address_names_its_ticket() -> None:
    address = reply_address(TICKET, SECRET, "reply.example.com")
    assert address.startswith(f"reply+{uuid.UUID(TICKET).hex}.") and address.endswith(
        "@reply.example.com"
    )
    assert len(address.partition("@")[0]) <= 64  # a local part SMTP allows
    assert ticket_of(address, [SECRET]) == TICKET
    assert ticket_of(f"<{address.upper()}>".replace("REPLY+", "reply+"), [SECRET]) == TICKET


def test_a_changed_token_or_another_ticket_is_refused_as_forged() -> None:
    address = reply_address(TICKET, SECRET, "reply.example.com")
    local, _, domain = address.partition("@")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
    other = uuid.uuid4().hex
    mac = local.rpartition(".")[2]
    for forged in (f"{flipped}@{domain}", f"reply+{other}.{mac}@{domain}"):
        with pytest.raises(UnknownReplyAddress) as refused:
            ticket_of(forged, [SECRET])
        assert refused.value.reason == "forged"
    with pytest.raises(UnknownReplyAddress) as refused:
        ticket_of(address, ["another secret"])
    assert refused.value.reason == "forged"


@pytest.mark.parametrize(
    "address",
    [
        "support@example.com",
        "reply+not-a-ticket.abc@x",
        f"reply+{TICKET}@x",
        f"reply+{TICKET}.ab@x",
    ],
)
def test_an_address_that_is_no_reply_address_is_refused_as_malformed(address: str) -> None:
    with pytest.raises(UnknownReplyAddress) as refused:
        ticket_of(address, [SECRET])
    assert refused.value.reason == "malformed"


def test_addresses_sent_with_the_old_secret_still_answer_while_it_rotates() -> None:
    old = reply_address(TICKET, "old secret", "r.example.com")
    new = reply_address(TICKET, "new secret", "r.example.com")
    assert ticket_of(old, ["new secret", "old secret"]) == TICKET
    assert ticket_of(new, ["new secret", "old secret"]) == TICKET
    with pytest.raises(UnknownReplyAddress):
        ticket_of(old, ["new secret"])  # once the old secret is retired
