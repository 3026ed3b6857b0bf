"""Ticket rules shared by the gateway and the tickets service: the categories
(as data) and the field rules (the gateway rejects early; the service checks
again before it stores)."""

from __future__ import annotations

import re
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from email.errors import MessageError
from email.headerregistry import Address
from enum import IntEnum
from typing import Any

import idna
import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh.platform.identity import subject_fault
from casemesh.platform.personal.sealing import is_token


class Priority(IntEnum):
    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4


@dataclass(frozen=True)
class Category:
    id: str
    zh_cn: str
    en: str
    default_priority: Priority = Priority.NORMAL

    @property
    def labels(self) -> dict[str, str]:
        return {"zh-CN": self.zh_cn, "en": self.en}


CATEGORIES: tuple[Category, ...] = (
    Category("account.login", "无法登录", "Cannot log in", Priority.HIGH),
    Category("account.password", "密码找回与重置", "Password recovery and reset", Priority.HIGH),
    Category("account.phone_change", "更换绑定手机号", "Change the linked phone number"),
    Category("account.ban", "账号封禁与解封", "Account bans and appeals", Priority.HIGH),
    Category("account.profile_privacy", "资料与隐私设置", "Profile and privacy settings"),
    Category("content.upload_failed", "视频上传失败", "Video upload failed"),
    Category("content.review_rejected", "视频审核未通过", "Video rejected in review"),
    Category("content.copyright", "版权问题", "Copyright questions"),
    Category(
        "content.publishing_tips", "发布与运营建议", "Publishing tips and reach", Priority.LOW
    ),
    Category("interaction.report", "举报相关", "About a report"),
    Category("interaction.complaint", "投诉与建议", "Complaints and suggestions"),
    Category("ads.consulting", "广告投放咨询", "Advertising questions"),
    Category("ads.delivery_data", "广告投放数据", "Ad delivery data"),
    Category("other.general", "其他问题", "Something else", Priority.LOW),
)

BY_ID: dict[str, Category] = {c.id: c for c in CATEGORIES}

LOCALES = ("zh-CN", "en")
CHANNELS = ("EMAIL", "SMS")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}\Z")
# The longest address a mail server takes (RFC 5321's path, less its brackets),
# and the longest phone number as people type it (spaces and brackets in):
# checked before anything parses them.
EMAIL_MAX = 254
# Dot-atoms of RFC 5322's atext on both sides, as nearly every address is
# written: such an address means the same to every mail server.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_EMAIL = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\Z")
PHONE_MAX = 40
# Where a number typed without `+` is taken to be: a Chinese mobile as people
# write it (13800138000); any other country's needs its + form.
PHONE_REGION = "CN"
# What an SMS can reach (some countries' numbers do not tell which they are).
_MOBILE = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})
# What a typed number may hold: no letters (vanity numbers, `ext.`) or other
# words for libphonenumber to read past.
_PHONE_CHARS = re.compile(r"\(?\+?[\d\s().-]+")
PHONE_EXPECTED = "a mobile number such as 13800138000 (outside mainland China: +44 7911 123456)"
NUMBER_EXPECTED = (
    "a number such as 13800138000 or 010 1234 5678 (outside mainland China: +44 20 7946 0018)"
)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
# An etag this API gives: a resource's version, in ASCII digits ("²" and "١"
# are digits to Python, not to us).
ETAG = re.compile(r"[1-9][0-9]{0,17}")

LIMITS = {"subject": 200, "description": 10000, "body": 10000, "text": 2000}
# Fields shown on one line (e-mail subjects, names); the rest may have line breaks.
SINGLE_LINE = frozenset({"subject", "assignee", "legal_name", "title", "file_name"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\x84\x86-\x9f]")
# Inside a one-line text: line breaks (Unicode's separators too) and the
# overrides of the text's direction, which make it show other than it reads
# (embeddings and isolates, which chat apps wrap names in, stay).
_LINE_BREAK = re.compile(r"[\r\n\t\x85\u2028\u2029\u202d\u202e]")


# Characters one does not see beyond white space and format (Cf) characters:
# Unicode's Default_Ignorable_Code_Point, as DerivedCoreProperties.txt lists
# it (variation selectors, the combining grapheme joiner, the Hangul fillers
# that pass for a blank name, tags, and the code points kept for more such),
# and the blank braille pattern, which fonts draw as nothing. The gateway's
# `not_blank` rule (casemesh/v1/field_rules.proto) lists the same.
_UNSEEN_TEXT = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    r"\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def _unseen(c: str) -> bool:
    """Whether a character shows nothing: white space, a format character
    (a zero-width space), or another of `_UNSEEN_TEXT` (a Hangul filler)."""
    return c.isspace() or unicodedata.category(c) == "Cf" or _UNSEEN_TEXT.match(c) is not None


def says_something(value: str) -> bool:
    """Whether the text has a character one sees: not only white space and
    invisible characters (`_unseen`) such as zero-width spaces."""
    return not all(_unseen(c) for c in value)


def said(text: str) -> str:
    """`text` trimmed, or empty when it says nothing (white space and
    invisible characters alone), for a caller to put words of its own there."""
    return text.strip() if says_something(text) else ""


def text(
    v: Violations,
    field: str,
    value: str,
    *,
    limit: int,
    required: bool = True,
    single_line: bool | None = None,
) -> str:
    """A text field, trimmed; refused when empty (if required), too long,
    holding control characters (line breaks only where text may have lines),
    or in the form of sealed personal data (`SEALED_FORM`)."""
    value = value.strip()
    if single_line is None:
        single_line = field.rsplit(".", 1)[-1] in SINGLE_LINE
    if required and not says_something(value):
        v.add(field, "must not be empty")
    elif len(value) > limit:
        v.add(field, f"must be at most {limit} characters")
    elif _CONTROL.search(value) or (single_line and _LINE_BREAK.search(value)):
        v.add(
            field,
            "must not contain control characters" + (" or line breaks" if single_line else ""),
        )
    elif is_token(value):
        v.add(field, SEALED_FORM)
    return value


# Text shaped as a token of sealed personal data: a field kept in the clear
# holding it would be taken for one by every consumer revealing events
# (`reveal_message`), which waits for a key that will never come.
SEALED_FORM = "must not be in the form of sealed personal data (pd1.… or pd2.…)"


# Characters that make a name show other than it is: direction marks and
# overrides (`invoice\u202egnp.exe` shows as `invoiceexe.png`).
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def base_name(name: str) -> str:
    """A file name's last path segment (`/` or `\\` before it), as a device
    may send a whole path."""
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def unprintable(c: str) -> bool:
    """Whether a character of a name (a file's) is no printable text: control
    characters (DEL and C1 too), line or paragraph separators, direction
    controls. Emoji joiners and the like are text."""
    return unicodedata.category(c) in ("Cc", "Zl", "Zp") or c in _BIDI_CONTROLS


def without_controls(value: str) -> str:
    """`value` less the control characters `text` refuses (tabs and line
    breaks stay): for text taken from elsewhere, such as an e-mail."""
    return _CONTROL.sub("", value)


def assignee(v: Violations, value: str) -> str:
    """Who is to hold a case (`assignee`), as `text` takes it: empty for the
    caller. White space or invisible characters alone (an ideographic space,
    as a Chinese input method types it; a zero-width space) are refused:
    blank is not empty, and the caller meant someone, where it would go to
    them without a word."""
    found = Violations()
    named = text(found, "assignee", value, limit=128, required=False, single_line=True)
    if value and not says_something(named) and not found:
        found.add("assignee", "must not be blank (leave it empty for yours)")
    v.extend(found)
    return named


def valid_email(value: str) -> bool:
    """One plain address that means the same to us and to a mail server
    (no display names, groups or comments hiding another recipient)."""
    if (
        len(value) > EMAIL_MAX
        or not EMAIL.match(value)
        or _CONTROL.search(value)
        or any(c in value for c in ',;<>()[]\\:"')
    ):
        return False
    if "=?" not in value and _PLAIN_EMAIL.match(value):
        # What the parser gives back unchanged, at a hundredth of its cost
        # (`=?` may begin an RFC 2047 encoded word, which it decodes).
        return True
    if any(unicodedata.category(c) in _UNSEEN for c in value):
        # A zero-width space pasted from a chat after the address, a soft
        # hyphen: the same address on screen, another one to a mail server.
        return False
    try:
        parsed = Address(addr_spec=value).addr_spec == value
    except (ValueError, IndexError, MessageError):  # an unknown charset: CharsetError
        return False
    return parsed and ascii_host(value.rpartition("@")[2]) is not None


# What no address shows: format characters (zero-width, soft hyphen, byte
# order mark), separators, controls.
_UNSEEN = frozenset({"Cf", "Cc", "Zs", "Zl", "Zp"})


def ascii_host(domain: str) -> str | None:
    """`domain` in the ASCII form mail servers read: IDNA 2008, UTS #46
    mapped (full-width letters stand for their ASCII ones, as browsers read
    them) and non-transitional (`straße.de` is not `strasse.de`): `例子.中国`
    is `xn--fsqu00a.xn--fiqs8s`. None when it has none: no host a mail
    server can be reached at (a label with `_`, or empty)."""
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def phone_number(value: str, *, mobile: bool = True) -> str:
    """The phone number a person typed, in E.164 (`+8613800138000`): a national
    Chinese one (`138 0013 8000`) or any country's with its `+` (spaces, dashes
    and brackets allowed, full-width ones too, as Chinese input methods type
    them). ValueError says why it is refused: not a number, not a valid one,
    or, when `mobile`, not a mobile (texts reach only mobiles)."""
    if len(value) > PHONE_MAX:
        raise ValueError(f"must be at most {PHONE_MAX} characters")
    value = unicodedata.normalize("NFKC", value).strip()
    number = None
    if _PHONE_CHARS.fullmatch(value):
        with suppress(phonenumbers.NumberParseException):
            number = phonenumbers.parse(value, PHONE_REGION)
    expected = PHONE_EXPECTED if mobile else NUMBER_EXPECTED
    if number is None:
        raise ValueError(f"is not a phone number; expected {expected}")
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"is not a valid phone number; expected {expected}")
    if mobile and phonenumbers.number_type(number) not in _MOBILE:
        raise ValueError(f"is not a mobile number (SMS needs one); expected {expected}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def mobile_number(value: str) -> str:
    """A mobile number (see `phone_number`) in E.164."""
    return phone_number(value, mobile=True)


def normal_phone(value: str) -> str:
    """`value` as it is stored and sent on: its E.164 form where it is a valid
    number (see `phone_number`), else trimmed, for the checks to refuse."""
    try:
        return phone_number(value, mobile=False)
    except ValueError:
        return value.strip()


def check_phone(v: Violations, field: str, value: str, *, mobile: bool = True) -> str:
    """A phone number (a mobile one if `mobile`; see `phone_number`) in E.164;
    refused naming `field`."""
    try:
        return phone_number(value, mobile=mobile)
    except ValueError as e:
        v.add(field, str(e))
        return value.strip()


def check_new_ticket(
    v: Violations,
    *,
    request_id: str,
    category: str,
    subject: str,
    description: str,
    locale: str,
    contact: dict[str, Any],
    prefix: str = "ticket.",
) -> None:
    if not REQUEST_ID.match(request_id):
        v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
    check_ticket_words(
        v, category=category, subject=subject, description=description, prefix=prefix
    )
    if locale not in LOCALES:
        v.add(f"{prefix}locale", f"must be one of {', '.join(LOCALES)}")
    check_contact(v, contact, prefix=f"{prefix}contact.")


def check_category(v: Violations, field: str, category: str, *, required: bool = True) -> None:
    """One of the categories `ListTicketCategories` lists (data, not a proto
    rule); empty only when not `required`."""
    if not category:
        if required:
            v.add(field, "is required")
    elif category not in BY_ID:
        v.add(field, f"unknown category {category!r}; see ListTicketCategories")


def check_ticket_words(
    v: Violations,
    *,
    category: str,
    subject: str,
    description: str,
    prefix: str = "",
    required: bool = True,
) -> None:
    """A ticket's category, subject and description (each may be left empty
    when not `required`: someone else's words go there)."""
    check_category(v, f"{prefix}category", category, required=required)
    text(v, f"{prefix}subject", subject, limit=LIMITS["subject"], required=required)
    text(v, f"{prefix}description", description, limit=LIMITS["description"], required=required)


def check_contact(v: Violations, contact: dict[str, Any], *, prefix: str) -> None:
    channels = contact.get("channels", [])
    email = contact.get("email", "")
    phone = contact.get("phone", "")
    if not channels:
        v.add(f"{prefix}channels", "choose at least one of EMAIL, SMS")
    if any(c not in CHANNELS for c in channels):
        v.add(f"{prefix}channels", "must be EMAIL or SMS")
    if len(set(channels)) != len(channels):
        v.add(f"{prefix}channels", "must not repeat a channel")
    if len(email) > EMAIL_MAX:
        v.add(f"{prefix}email", f"must be at most {EMAIL_MAX} characters")
    elif email and not valid_email(email):
        v.add(f"{prefix}email", "is not an e-mail address")
    elif "EMAIL" in channels and not email:
        v.add(f"{prefix}email", "is required for EMAIL updates")
    if phone:
        # Any valid number may be given; SMS needs a mobile one.
        check_phone(v, f"{prefix}phone", phone, mobile="SMS" in channels)
    elif "SMS" in channels and not phone:
        v.add(f"{prefix}phone", "is required for SMS updates")


def check_etag(v: Violations, etag: str, field: str = "etag") -> None:
    if etag and not ETAG.fullmatch(etag):
        v.add(field, "is not an etag this API gave")


def stale(etag: str, version: int) -> bool:
    """Whether the etag a client sent (if any) names an older version than
    `version`; one this API never gives is refused, naming the field, rather
    than taken for a change someone else made."""
    v = Violations()
    check_etag(v, etag)
    if v:
        raise InvalidArgument.field("etag", "is not an etag this API gave")
    return bool(etag) and etag != str(version)


# A UUID as the API spells it (one spelling a case, so one name).
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ticket_id_from_name(v: Violations, name: str, field: str = "name") -> str:
    prefix, _, ident = name.partition("/")
    if prefix != "tickets" or not _UUID.fullmatch(ident):
        v.add(field, "must be tickets/{id}")
        return ""
    return ident


def check_party(v: Violations, party: dict[str, Any], prefix: str) -> None:
    """A named party of a case: their language, contact, legal name and account."""
    if party.get("locale") not in LOCALES:
        v.add(f"{prefix}.locale", f"must be one of {', '.join(LOCALES)}")
    check_contact(v, party.get("contact") or {}, prefix=f"{prefix}.contact.")
    text(v, f"{prefix}.legal_name", party.get("legal_name", ""), limit=500, required=False)
    # An account is named as its tokens name the person (their cases, an
    # erasure, an export): one with invisible characters could never be
    # erased or see the case, and one beginning as a case key's is none.
    user_id = party.get("user_id", "")
    found = Violations()
    text(found, f"{prefix}.user_id", user_id, limit=128, required=False, single_line=True)
    if user_id and not found and (fault := subject_fault(user_id)):
        found.add(f"{prefix}.user_id", fault)
    v.extend(found)


# How many pieces of evidence one ticket, comment or report may name.
MAX_EVIDENCE = 20
REPEATED_EVIDENCE = "names a piece of evidence already listed"


def check_evidence(v: Violations, evidence: list[dict[str, str]], field: str) -> None:
    """References must have been checked (hash filled in) by the gateway."""
    if len(evidence) > MAX_EVIDENCE:
        v.add(field, f"at most {MAX_EVIDENCE} pieces of evidence")
    names: set[str] = set()
    for i, ref in enumerate(evidence):
        name = ref.get("name", "")
        if not name.startswith("evidence/") or len(ref.get("sha256", "")) != 64:
            v.add(f"{field}[{i}]", "must name checked evidence (evidence/{id} with its sha256)")
        elif name in names:
            v.add(f"{field}[{i}]", REPEATED_EVIDENCE)
        names.add(name)
