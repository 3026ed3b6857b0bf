"""The words a reader sees for the codes the events carry: a copyright case's
legal elements by their path (`notice.relationship`), decisions' enum values
(`DECISION_VISIBILITY_CONTENT_REMOVED`, `STATEMENT_CATEGORY_…`), and dates, in
the reader's language (zh-CN, en) and time zone.

The words are kept for translators in `templates/<locale>/labels.toml`, one
table per kind of code. A code a table lacks is written as its kind's
fallback there (in English, the code turned into plain words), never as
itself, and logged so that someone adds it.
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from babel.dates import format_date, format_datetime
from phonenumbers.timezone import time_zones_for_number

from casemesh.platform.logging import get_logger

log = get_logger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "en"

# The prefixes that say which enum a value belongs to, dropped from a fallback.
_ENUM_PREFIX = re.compile(
    r"^(DECISION_(VISIBILITY|MONETARY|PROVISION|ACCOUNT|GROUND)|STATEMENT_CATEGORY"
    r"|AUTOMATED_DECISION|SOURCE(_TYPE)?)_"
)


def supported(locale: str) -> str:
    """The locale a message is written in: the reader's when we have it."""
    return locale if locale in LOCALES else DEFAULT_LOCALE


@cache
def catalog(locale: str) -> dict[str, dict[str, str]]:
    with (TEMPLATES / supported(locale) / "labels.toml").open("rb") as f:
        return tomllib.load(f)


def label(kind: str, code: str, locale: str) -> str:
    """The reader's words for `code`, a value of `kind` (a table of labels.toml)."""
    words = catalog(locale).get(kind, {}).get(code)
    if words:
        return words
    log.warning("label.missing", kind=kind, code=code, locale=supported(locale))
    plain = _ENUM_PREFIX.sub("", code).replace(".", " ").replace("_", " ").strip().lower()
    return catalog(locale)["fallback"][kind].format(words=plain)


def local_time(
    moment: date,
    locale: str,
    zone: ZoneInfo,
    style: str = "long",
    *,
    named: bool = False,
    ends: bool = False,
) -> str:
    """A moment in the reader's zone, or a calendar day, written as their
    locale writes it (`style`: a pattern of the [dates] table; a day is
    written with `day`). `named`: the zone's offset follows (`GMT+08:00`),
    for a pattern that names none, when the zone is not known to be the
    reader's own.

    `ends`: the moment is when something ends (a deadline, a restriction).
    One at the reader's midnight ends the day before it, and is written so,
    at 24:00 (`<style>_end`): a deadline counted in days ends at 24:00 on
    its last day, and written as 00:00 of the next day it reads as a day
    more than the reader has."""
    dates = catalog(locale)["dates"]
    where = supported(locale).replace("-", "_")
    if not isinstance(moment, datetime):
        return format_date(moment, dates["day"], locale=where)
    pattern = dates[style]
    if ends and moment.astimezone(zone).time() == time(0):
        # The day's date and zone as they were just before midnight (a zone
        # whose clocks change at midnight had the offset that 24:00 is in).
        moment -= timedelta(microseconds=1)
        pattern = dates[f"{style}_end"]
    if named and "z" not in pattern.lower():
        pattern += " ZZZZ"
    return format_datetime(moment, pattern, tzinfo=zone, locale=where)


# The zone each jurisdiction's deadlines are counted in, as the appeals
# service's policies count them (their `time_zone`): a party of a copyright
# case whose phone number tells no zone is told its dates there, not in the
# service's. Kept here as data: the notifier does not load the appeals
# service, and a change of a policy's zone is made in both.
JURISDICTION_ZONES = {
    "cn": "Asia/Shanghai",
    "us": "America/New_York",
    "eu": "Europe/Brussels",
}


def jurisdiction_zone(jurisdiction: str) -> str:
    """The zone a case of `jurisdiction` counts its deadlines in ("": not known)."""
    return JURISDICTION_ZONES.get(jurisdiction, "")


@cache
def case_zone(name: str) -> ZoneInfo | None:
    """The zone a party row keeps for its case (`Party.time_zone`), None for
    none (or one this host does not know)."""
    return ZoneInfo(name) if name in _IANA else None


def reader_zone(phone: str, at: datetime, default: ZoneInfo) -> ZoneInfo:
    """The time zone a reader's dates are written in. The events carry no zone
    of the reader's choosing, so it is their phone number's, where the number
    tells one (`phone_zone`), else `default` (the service's)."""
    return phone_zone(phone, at) or default


def phone_zone(phone: str, at: datetime) -> ZoneInfo | None:
    """The time zone a phone number tells (a Chinese number: Asia/Shanghai;
    +44: London; a number whose country spans zones of different times at
    `at`: none)."""
    known = phone_zones(phone)
    if not known or len({at.astimezone(z).utcoffset() for z in known}) != 1:
        return None
    return known[0]


def phone_zones(phone: str) -> list[ZoneInfo]:
    """Every time zone a phone number may be in: one for most (a Chinese
    number: Asia/Shanghai), several where its country spans zones (+7
    Russia, +61 Australia); none when it cannot be read or tells none."""
    if not phone:
        return []
    try:
        zones = time_zones_for_number(phonenumbers.parse(phone))
    except phonenumbers.NumberParseException:
        return []
    return [ZoneInfo(z) for z in zones if z in _IANA]


_IANA = zoneinfo.available_timezones()
