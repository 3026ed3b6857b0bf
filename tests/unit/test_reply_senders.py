"""A reply is taken from its From address only when the mail server in
front of inbound vouches for that address's domain in its own
Authentication-Results header (DMARC, or DKIM or SPF of that domain); a
header any other server, or the sender, wrote counts for nothing."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from pydantic import SecretStr, ValidationError

from casemesh.platform.identity import InternalTokenSigner, new_signing_key
from casemesh.platform.replies import reply_address
from casemesh_inbound.authres import parse, vouched_for
from casemesh_inbound.desk import Refused, ReplyDesk
from casemesh_inbound.mail import read_reply
from casemesh_inbound.settings import InboundSettings
from casemesh_inbound.smtp import ReplyHandler

MX = "mx.casemesh.example"


@pytest.mark.parametrize(
    ("headers", "vouched"),
    [
        ([f"{MX}; dmarc=pass (p=reject) header.from=example.com"], True),
        ([f"{MX} 1; dkim=pass header.d=example.com header.s=sel; spf=fail"], True),
        ([f"{MX}; dkim=pass header.d=mail.example.com"], False),  # only at or above From's
        ([f"{MX}; spf=pass smtp.mailfrom=bounce@example.com"], True),
        ([f"{MX}; spf=pass smtp.mailfrom=example.com.evil.net"], False),
        ([f"{MX}; dmarc=pass header.from=evil.net"], False),
        ([f"{MX}; dmarc=fail header.from=example.com; dkim=none; spf=softfail"], False),
        ([f"{MX}; none"], False),
        # Written by the sender or another server: not the one in front.
        (["other.example; dmarc=pass header.from=example.com"], False),
        ([f"{MX}.evil.net; dmarc=pass header.from=example.com"], False),
        ([], False),
        (["", f'{MX}; dkim=pass (good (nested) signature) header.d="example.com"'], True),
        ([f"{MX}; dkim=pass header.i=@example.com"], True),
        # A sender's text copied into a quoted value or a comment stays there.
        ([f'{MX}; spf=pass smtp.mailfrom="a;dkim=pass header.d=example.com x="@evil.net'], False),
        (
            [f"{MX}; spf=fail (sender \\); dkim=pass header.d=example.com) smtp.mailfrom=e.net"],
            False,
        ),
        ([f'{MX}; spf=pass smtp.mailfrom="a\\"; dmarc=pass header.from=example.com"@e.net'], False),
    ],
)
def test_the_server_in_front_vouches_for_the_from_domain_or_nothing_does(
    headers: list[str], vouched: bool
) -> None:
    assert vouched_for(headers, MX, "alice@example.com") is vouched


def test_a_subdomain_sender_is_vouched_for_by_its_parent_domains_signature() -> None:
    headers = [f"{MX}; dkim=pass header.d=example.com"]
    assert vouched_for(headers, MX, "alice@cn.example.com")
    assert not vouched_for(headers, MX, "alice@notexample.com")


def test_only_the_headers_above_the_first_hop_are_read_from_the_reply() -> None:
    """The server in front writes its header at the top; one the sender
    wrote in its name comes below the hops the message went through."""
    forged = b"Authentication-Results: " + MX.encode() + b"; dmarc=pass header.from=example.com\r\n"
    rest = (
        b"Received: from mx.casemesh.example by inbound; Sun, 6 Dec 2026 04:00:00 +0000\r\n"
        b"Received: from evil.net by mx.casemesh.example; Sun, 6 Dec 2026 03:59:59 +0000\r\n"
        + forged
        + b"From: Alice <Alice@Example.com>\r\nMessage-ID: <r@example.com>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nthanks\r\n"
    )
    below = read_reply(rest)
    assert below.authentication == ()
    above = read_reply(b"Authentication-Results: evil.net; none\r\n" + forged + rest)
    assert len(above.authentication) == 2
    assert vouched_for(above.authentication, MX, above.sender)
    assert parse(above.authentication[0])[0] == "evil.net"


def test_an_encoded_word_the_server_copied_into_its_header_adds_no_result() -> None:
    """The server in front copies the envelope sender into its header as the
    sender wrote it: an encoded word there is the sender's text, and the `;`
    and `dmarc=pass` it decodes to are not results. The header is read as
    written, unfolded."""
    envelope = "=?us-ascii?q?x=3B_dmarc=3Dpass_header.from=3Dexample.com_x.y=3D?=@evil.net"
    rest = (
        b"Received: from evil.net by mx.casemesh.example; Sun, 6 Dec 2026 03:59:59 +0000\r\n"
        b"From: <alice@example.com>\r\nMessage-ID: <e@evil.net>\r\n\r\nclose my ticket\r\n"
    )
    forged = read_reply(
        f"Authentication-Results: {MX}; spf=fail smtp.mailfrom={envelope};"
        " dmarc=fail header.from=example.com\r\n".encode()
        + rest
    )
    assert not vouched_for(forged.authentication, MX, forged.sender)
    genuine = read_reply(
        f"Authentication-Results: {MX};\r\n\tspf=pass smtp.mailfrom=bounce@example.com;\r\n"
        "\tdmarc=pass header.from=example.com\r\n".encode()
        + rest
    )
    assert vouched_for(genuine.authentication, MX, genuine.sender)


def desk_with_no_services() -> ReplyDesk:
    """A desk trusting MX's headers, with no service to ask: what it refuses
    is refused before any would be."""
    return ReplyDesk(
        signer=InternalTokenSigner(new_signing_key()),
        tickets=None,
        evidence=None,
        secrets=["s" * 32],
        domain="reply.example",
        timeout=1.0,
        authserv_id=MX,
    )


async def test_the_desk_refuses_a_reply_nobody_vouches_for_before_reading_the_ticket() -> None:
    """Refused with a permanent error, naming why, before any service is
    asked (the desk here has none to ask)."""
    desk = desk_with_no_services()
    forged = (
        b"From: alice@example.com\r\nMessage-ID: <f@evil.net>\r\n"
        b"Authentication-Results: " + MX.encode() + b"; dmarc=fail header.from=example.com\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nclose my ticket\r\n"
    )
    with pytest.raises(Refused) as refused:
        await desk.add_reply(str(uuid.uuid4()), forged)
    assert (refused.value.code, refused.value.reason) == (550, "unauthenticated")


def handler_taking_mail_from(relays: str) -> ReplyHandler:
    desk = desk_with_no_services()
    cfg = InboundSettings(
        reply_token_secret=SecretStr("s" * 32),
        internal_signing_key=SecretStr(new_signing_key()),
        trusted_authserv_id=MX,
        trusted_relays=relays,
    )
    return ReplyHandler(desk, cfg.relay_networks())


@pytest.mark.parametrize(
    ("peer", "taken"),
    [
        ("10.20.3.4", True),
        ("::ffff:10.20.3.4", True),  # an IPv4 peer on a dual-stack socket
        ("192.0.2.25", True),
        ("203.0.113.9", False),
        ("10.21.0.1", False),
        ("2001:db8::1", False),
    ],
)
async def test_only_the_trusted_mail_server_may_deliver_when_its_headers_are_trusted(
    peer: str, taken: bool
) -> None:
    """Anyone reaching inbound directly could write the Authentication-Results
    the mail server in front writes: mail from elsewhere is refused before
    any recipient is taken."""
    handler = handler_taking_mail_from("10.20.0.0/16, 192.0.2.25")
    address = reply_address(str(uuid.uuid4()), "s" * 32, "reply.example")
    envelope = SimpleNamespace(rcpt_tos=[])
    answer = await handler.handle_RCPT(
        None, SimpleNamespace(peer=(peer, 2525)), envelope, address, []
    )
    assert answer.startswith("250" if taken else "550 5.7.1"), answer
    assert envelope.rcpt_tos == ([address] if taken else [])


def test_trusting_a_servers_headers_needs_its_addresses() -> None:
    with pytest.raises(ValidationError, match="CASEMESH_TRUSTED_RELAYS"):
        InboundSettings(
            reply_token_secret=SecretStr("s" * 32),
            internal_signing_key=SecretStr(new_signing_key()),
            trusted_authserv_id=MX,
        )
    # The production overlay's placeholder, named as what to set.
    with pytest.raises(ValidationError, match="CASEMESH_TRUSTED_RELAYS: 'CHANGE-ME'"):
        InboundSettings(
            reply_token_secret=SecretStr("s" * 32),
            internal_signing_key=SecretStr(new_signing_key()),
            trusted_authserv_id=MX,
            trusted_relays="10.20.0.0/16,CHANGE-ME",
        )
