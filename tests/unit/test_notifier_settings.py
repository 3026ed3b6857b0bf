"""Notifier settings that could not work stop it at start, naming
themselves, instead of failing every e-mail later."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from casemesh_notifier.settings import NotifierSettings
from tests.support import personal_settings


def settings(**values: Any) -> NotifierSettings:
    return NotifierSettings(
        **personal_settings(),
        database_url="postgresql://u@h/db",
        smtp_host="mail.local",
        sms_url="http://sms.local",
        **values,
    )


@pytest.mark.parametrize(
    "mail_from",
    [
        "",
        "support@",
        "Casemesh Support",
        "@casemesh.local",
        "support@casemesh.local, other@casemesh.local",
        "Casemesh Support <support@casemesh.local",
        "support@-casemesh.local",
    ],
)
def test_a_sender_address_naming_no_mailbox_stops_the_notifier(mail_from: str) -> None:
    with pytest.raises(ValidationError, match="mail_from") as refused:
        settings(mail_from=mail_from)
    assert [e["loc"] for e in refused.value.errors()] == [("mail_from",)]


@pytest.mark.parametrize(
    "mail_from",
    [
        "support@casemesh.local",
        "Casemesh Support <support@casemesh.local>",
        "客服中心 <support@casemesh.example>",
        '"Support, Casemesh" <support@casemesh.example>',
    ],
)
def test_a_mailbox_with_or_without_a_name_is_a_sender(mail_from: str) -> None:
    assert settings(mail_from=mail_from).mail_from == mail_from


def test_the_claim_lease_leaves_time_to_record_the_longest_send() -> None:
    """With a data timeout of 200 s a send may take 300 s: a lease of 300 s
    would lapse before it is recorded, and another sender would send again."""
    with pytest.raises(ValidationError, match=r"CASEMESH_CLAIM_LEASE_SECONDS.* 330 "):
        settings(smtp_data_timeout_seconds=200, claim_lease_seconds=300)
    assert settings(smtp_data_timeout_seconds=200, claim_lease_seconds=330)
    default = settings()
    assert default.claim_lease_seconds >= default.longest_send + 30
