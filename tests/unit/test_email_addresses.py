"""Contact e-mail addresses: one plain address that means the same to us,
to Python's mail library and to a mail server, or refused."""

from __future__ import annotations

from email.errors import MessageError
from email.headerregistry import Address

import pytest

from casemesh.rules import tickets as rules


def parser_accepts(address: str) -> bool:
    try:
        return Address(addr_spec=address).addr_spec == address
    except (ValueError, IndexError, MessageError):
        return False


@pytest.mark.parametrize(
    "address",
    [
        "li.wei@example.com",
        "o'brien+tickets@mail.example.co.uk",
        "{tag}|x~y@sub-domain.example",
        "a@b.cn",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@example..com",
        "a@-example.com",
        "李@例子.中国",
        "a@b.c",
        "a b@example.com",
        "=?abc@example.com",
        "a.=?utf-8?q?bob?=@example.com",
    ],
)
def test_an_address_is_judged_as_the_mail_parser_reads_it(address: str) -> None:
    """Plain addresses skip the parser: the answer must be the one it gives."""
    expected = parser_accepts(address) and bool(rules.EMAIL.match(address))
    assert rules.valid_email(address) is expected


@pytest.mark.parametrize(
    "address",
    [
        # RFC 2047 encoded words: the mail library decodes them, an SMTP
        # server does not, so the address would mean two things (here a
        # second recipient in the To header).
        "=?utf-8?q?bob?=@example.com",
        "=?utf-8?q?victim=40evil.com?=@example.com",
        "=?utf-8?q?bob=40evil.com=2C_x?=@example.com",
        # An unknown charset made the parser raise CharsetError.
        "=?x?q?bob?=@example.com",
    ],
)
def test_an_address_that_reads_differently_once_decoded_is_refused(address: str) -> None:
    assert not rules.valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        # Pasted from a chat or a document: the same address on screen.
        "alice@example.com\u200b",
        "alice@example.com\ufeff",
        "alice@example.com\u2060",
        "alice@example\u00ad.com",
        "alice@ex\u200dample.com",
        "ali\u200bce@例子.中国",
        # No host a mail server could reach.
        "alice@exa_mple.com",
        "li@例子..中国",
    ],
)
def test_an_address_a_mail_server_would_read_otherwise_is_refused(address: str) -> None:
    assert not rules.valid_email(address)


@pytest.mark.parametrize(
    "address",
    [
        "li@例子.中国",
        "alice@bücher.de",
        "alice@xn--bcher-kva.de",
        # Full-width letters, as Chinese input methods type them: the
        # notifier sends to their ASCII host (UTS #46).
        "alice@ｅｘａｍｐｌｅ.com",
    ],
)
def test_an_address_with_an_international_host_name_is_taken(address: str) -> None:
    assert rules.valid_email(address)
