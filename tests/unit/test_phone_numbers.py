"""Phone numbers as people type them: normalised to E.164, refused with the
field named and a reason (not a number, not a valid one, not a mobile)."""

from __future__ import annotations

import pytest

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh.rules import tickets as rules


@pytest.mark.parametrize(
    "typed",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        " 13800138000 ",
        "+8613800138000",
        "+86 138-0013-8000",
        "(+86) 138 0013 8000",
        "0086 138 0013 8000",
        "１３８００１３８０００",
        # As Chinese input methods type them: full-width +, brackets, dash, space.
        "＋８６　１３８－００１３－８０００",
        "（＋86）138 0013 8000",
        "+86\u00a0138\u00a00013\u00a08000",
    ],
)
def test_a_chinese_mobile_however_typed_is_kept_in_e164(typed: str) -> None:
    assert rules.mobile_number(typed) == "+8613800138000"


def test_another_countrys_mobile_needs_its_plus_form() -> None:
    assert rules.mobile_number("+44 7911 123456") == "+447911123456"
    # Without its +, a British mobile is no Chinese number.
    with pytest.raises(ValueError, match="not a valid phone number"):
        rules.mobile_number("07911 123456")


def test_a_number_that_may_be_either_counts_as_a_mobile() -> None:
    # US numbers do not tell a mobile from a landline (FIXED_LINE_OR_MOBILE).
    assert rules.mobile_number("+1 415-555-2671") == "+14155552671"


@pytest.mark.parametrize("landline", ["010 1234 5678", "+86 10 1234 5678", "+44 20 7946 0958"])
def test_a_landline_is_refused_since_sms_needs_a_mobile(landline: str) -> None:
    with pytest.raises(ValueError, match=r"is not a mobile number \(SMS needs one\)"):
        rules.mobile_number(landline)


@pytest.mark.parametrize(
    "typed",
    # A digit short, the old regex's E.164 of any length, a made-up US range.
    ["1380013800", "+861380013800", "+8613800138000123", "+15555550100", "12345"],
)
def test_a_number_no_one_can_have_is_refused(typed: str) -> None:
    with pytest.raises(ValueError, match="is not a valid phone number"):
        rules.mobile_number(typed)


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "call me",
        "abc13800138000",
        "13800138000 ext. 5",
        "1-800-FLOWERS",
        "+8613800138000\u202e",
    ],
)
def test_what_is_no_number_is_refused(typed: str) -> None:
    with pytest.raises(ValueError, match="is not a phone number"):
        rules.mobile_number(typed)


def test_the_stored_form_is_e164_or_what_was_typed_for_the_checks_to_refuse() -> None:
    assert rules.normal_phone(" 138 0013 8000 ") == "+8613800138000"
    assert rules.normal_phone(" 12345 ") == "12345"


def test_a_contact_with_a_bad_number_is_refused_naming_the_field_and_what_is_expected() -> None:
    v = Violations()
    contact = {"email": "", "phone": "garbage", "channels": ["SMS"]}
    rules.check_contact(v, contact, prefix="ticket.contact.")
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    [violation] = info.value.violations
    assert violation.field == "ticket.contact.phone"
    assert violation.description == (
        "is not a phone number; expected a mobile number such as 13800138000"
        " (outside mainland China: +44 7911 123456)"
    )


def test_a_contact_with_a_national_mobile_passes() -> None:
    v = Violations()
    rules.check_contact(v, {"phone": "138 0013 8000", "channels": ["SMS"]}, prefix="contact.")
    assert not v


def test_a_landline_is_kept_where_no_text_goes_to_it() -> None:
    v = Violations()
    contact = {"email": "legal@studio.example", "phone": "010 1234 5678", "channels": ["EMAIL"]}
    rules.check_contact(v, contact, prefix="contact.")
    assert not v
    assert rules.normal_phone("010 1234 5678") == "+861012345678"
    contact["channels"] = ["EMAIL", "SMS"]
    rules.check_contact(v, contact, prefix="contact.")
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    assert [(f.field, f.description.split(";")[0]) for f in info.value.violations] == [
        ("contact.phone", "is not a mobile number (SMS needs one)")
    ]


def test_an_address_or_number_longer_than_any_real_one_is_refused_before_it_is_parsed() -> None:
    """A megabyte of address used to be parsed (seconds of the gateway's
    event loop, a domain of 250,000 labels) and stored whole; now the length
    is checked first."""
    v = Violations()
    contact = {
        "email": "a@" + ".".join(["b"] * 250_000) + ".com",
        "phone": "1" * 100_000,
        "channels": ["EMAIL", "SMS"],
    }
    rules.check_contact(v, contact, prefix="ticket.contact.")
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    assert [(f.field, f.description) for f in info.value.violations] == [
        ("ticket.contact.email", "must be at most 254 characters"),
        ("ticket.contact.phone", "must be at most 40 characters"),
    ]
    longest = "a" * 64 + "@" + "b" * 185 + ".com"  # 254 characters
    assert rules.valid_email(longest)
    assert not rules.valid_email("a" + longest)
