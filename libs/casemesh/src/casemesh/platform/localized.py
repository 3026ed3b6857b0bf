"""A refusal said in the caller's language: a google.rpc.LocalizedMessage
(AIP-193) beside the status's other details, in zh-CN or en as the call's
`accept-language` asks (browsers send it by themselves; en when it asks for
neither). The words are in error_messages.toml, for translators: a refusal with
a stable reason (ErrorInfo) is said by its reason, any other by its code. In
English a refusal our code made keeps its own message, already written for
people; outages and internal errors get a plain sentence instead."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

LOCALES = ("zh-CN", "en")
DEFAULT = "en"
# Codes whose message our code wrote for the caller (the rest may be technical;
# an invalid request's message lists fields, which BadRequest names one by one).
_OWN_WORDS = frozenset(
    {
        code_pb2.NOT_FOUND,
        code_pb2.ALREADY_EXISTS,
        code_pb2.PERMISSION_DENIED,
        code_pb2.FAILED_PRECONDITION,
        code_pb2.ABORTED,
    }
)


@cache
def _words() -> dict[str, Any]:
    text = resources.files("casemesh.platform").joinpath("error_messages.toml").read_text()
    return tomllib.loads(text)


def locale_of(accept_language: str) -> str:
    """The platform's locale `accept-language` (RFC 9110) prefers most."""
    best, best_q = DEFAULT, 0.0
    for part in accept_language.split(","):
        tag, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        language = tag.lower().split("-")[0]
        locale = {"zh": "zh-CN", "en": "en"}.get(language)
        if locale and q > best_q:
            best, best_q = locale, q
    return best


def localized(status: status_pb2.Status, locale: str) -> status_pb2.Status:
    """`status` with a LocalizedMessage in `locale` added after its details
    (one it already carries is kept: the service that refused knew better),
    and each field violation whose words the table has (`[fields]`) with its
    own, for a form to show beside the field."""
    if status.code == code_pb2.OK or any(
        d.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR) for d in status.details
    ):
        return status
    locale = locale if locale in LOCALES else DEFAULT
    said = status_pb2.Status()
    said.CopyFrom(status)
    if locale != "en":
        for detail in said.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                detail.Pack(_fields_said(detail, locale))
    message = error_details_pb2.LocalizedMessage(locale=locale, message=_say(status, locale))
    said.details.add().Pack(message)
    return said


def _fields_said(detail: Any, locale: str) -> error_details_pb2.BadRequest:
    bad = error_details_pb2.BadRequest()
    detail.Unpack(bad)
    for violation in bad.field_violations:
        words = field_words(violation.description, locale)
        if words and not violation.HasField("localized_message"):
            violation.localized_message.locale = locale
            violation.localized_message.message = words
    return bad


@cache
def _field_patterns(locale: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The `[fields]` table as (what the English says, the words in `locale`)."""
    patterns = []
    for english, words in _words().get("fields", {}).items():
        if locale not in words:
            continue
        parts = re.split(r"\{(\w+)\}", english)
        regex = "".join(
            re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts)
        )
        patterns.append((re.compile(regex), str(words[locale])))
    return tuple(patterns)


def field_words(description: str, locale: str) -> str:
    """A field violation's description in `locale`, by the `[fields]` table;
    "" when the table has no words for it."""
    for pattern, words in _field_patterns(locale):
        found = pattern.fullmatch(description)
        if found:
            return words.format(**found.groupdict())
    return ""


def plain_words(status: status_pb2.Status) -> str:
    """What the status's code says in plain English (the table's words), not
    what the status's message says: for a message not meant for people (a
    transport's or a crash's, naming addresses or code)."""
    code = code_pb2.Code.Name(status.code)
    words: dict[str, str] = _words()["codes"].get(code) or _words()["codes"]["UNKNOWN"]
    return words["en"]


def _say(status: status_pb2.Status, locale: str) -> str:
    words = _words()
    reason = reason_of(status.details)
    if reason and locale != "en":
        by_reason: str | None = words["reasons"].get(reason, {}).get(locale)
        if by_reason:
            return by_reason
    if locale == "en" and status.message and (reason or status.code in _OWN_WORDS):
        return str(status.message)
    code = code_pb2.Code.Name(status.code)
    by_code: dict[str, str] = words["codes"].get(code) or words["codes"]["UNKNOWN"]
    return by_code[locale]


def reason_of(details: Iterable[any_pb2.Any]) -> str:
    """The reason (google.rpc.ErrorInfo) among an error's details ("" for none)."""
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""
