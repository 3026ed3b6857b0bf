"""Every message a person can receive: each template, in each locale, on each
channel it goes out on, rendered from the sample events (`samples.py`, one
or more for every kind of event the notifier reads). People read words,
never a field path or an enum name; an e-mail has an HTML alternative that
escapes what people wrote; an SMS carries nothing anyone wrote and, in
Chinese, fits one 70-character segment."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.descriptor import Descriptor
from markupsafe import escape

from casemesh.events.v1 import appeals_pb2, helpcenter_pb2, reports_pb2, tickets_pb2
from casemesh.platform.personal import (
    DataKeys,
    MasterKeys,
    MemoryKeyStore,
    Sealer,
    is_erased,
    reveal_message,
)
from casemesh.platform.personal.masterkeys import new_master_key
from casemesh.v1 import appeals_pb2 as api_appeals
from casemesh.v1 import reports_pb2 as api_reports
from casemesh_appeals.domain import REQUIRED
from casemesh_appeals.policy import POLICIES
from casemesh_notifier.cases import CaseParties, Planning, plan_appeal
from casemesh_notifier.labels import JURISDICTION_ZONES, LOCALES, TEMPLATES, catalog, label
from casemesh_notifier.phone_changes import sms_in
from casemesh_notifier.registry import SOURCES
from casemesh_notifier.rendering import (
    _TEXT,
    email_values,
    names,
    one_line,
    render_email,
    render_sms,
    sms_values,
)
from casemesh_notifier.samples import Sample, event_kinds, samples
from casemesh_notifier.steps import appeal_steps, for_report_appeal, report_steps
from casemesh_notifier.store import COPIES, NewJob, Party
from tests.support import case_event

ZONE = ZoneInfo("Asia/Shanghai")
REF = "AB12CD34"
# Appended to everything a person wrote in the samples; the pen also finds it in SMS.
SCRIPT = "<script>alert(1)</script>"
PEN = "✎"
# Chinese SMS that cannot fit one segment, and why. None today.
LONG_CHINESE_SMS: dict[str, str] = {}
# The GSM 03.38 basic character set: an English SMS in it counts 160 to a segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def written(text: str) -> str:
    return f"{PEN}{text}{SCRIPT}"


SAMPLES = samples(written)


def _field_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> Iterator[str]:
    for f in descriptor.fields:
        path = f"{prefix}{f.name}"
        yield path
        if f.message_type is not None and depth < 3:
            yield from _field_paths(f.message_type, f"{path}.", depth + 1)


# Every field of every contract, as a path a message might let slip.
FIELD_PATHS = {
    path
    for module in (appeals_pb2, reports_pb2, tickets_pb2, helpcenter_pb2, api_appeals, api_reports)
    for message in module.DESCRIPTOR.message_types_by_name.values()
    for path in _field_paths(message)
} | {path for paths in REQUIRED.values() for path in paths}
ENUM_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")
SNAKE_CASE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
DOTTED = re.compile(r"\b[a-z_]+(?:\.[a-z_]+)+\b")


def channels(template: str) -> list[str]:
    """The channels a template goes out on: e-mail when it has a body."""
    has_body = "body" in _TEXT.get_template(f"en/{template}.txt").blocks
    return ["EMAIL", "SMS"] if has_body else ["SMS"]


def rendered() -> Iterator[tuple[Sample, str, str, str]]:
    """(sample, locale, channel, what the person reads); an e-mail reads as
    its subject, text and HTML one after another. An SMS is read by people
    who chose e-mail too (`SMS`) and by people who did not (`SMS only`)."""
    for sample in SAMPLES:
        for locale in LOCALES:
            for channel in channels(sample.step.template):
                if channel == "SMS":
                    for email_chosen, kind in ((True, "SMS"), (False, "SMS only")):
                        values = sms_values(sample.step, REF, email_chosen)
                        sms = render_sms(sample.step.template, locale, ZONE, values)
                        yield sample, locale, kind, sms
                else:
                    values = email_values(sample.step, REF, sample.subject[locale])
                    email = render_email(sample.step.template, locale, ZONE, values)
                    yield sample, locale, channel, f"{email.subject}\n{email.text}\n{email.html}"


MESSAGES = list(rendered())


def test_every_event_kind_and_every_template_has_sample_data() -> None:
    read = {cls for source in SOURCES for cls in source.messages}
    assert read - event_kinds(written) == set(), "an event kind without a sample"
    templates = set(names())
    for locale in LOCALES:
        files = {p.stem for p in (TEMPLATES / locale).glob("[!_]*.txt")}
        assert files == templates, f"{locale} lacks or adds templates"
    assert templates - {s.step.template for s in SAMPLES} == set(), "a template without a sample"


def id_of(message: tuple[Sample, str, str, str]) -> str:
    sample, locale, channel, _ = message
    return f"{sample.step.template}-{type(sample.message).__name__}-{locale}-{channel}"


@pytest.mark.parametrize("message", MESSAGES, ids=[id_of(m) for m in MESSAGES])
def test_no_field_path_or_enum_name_reaches_a_person(
    message: tuple[Sample, str, str, str],
) -> None:
    _, _, _, text = message
    readable = text.replace(SCRIPT, "").replace(str(escape(SCRIPT)), "")
    assert not ENUM_NAME.findall(readable)
    assert not SNAKE_CASE.findall(readable)
    assert not [p for p in DOTTED.findall(readable) if p in FIELD_PATHS]
    assert "None" not in readable and "{{" not in readable and "{%" not in readable


@pytest.mark.parametrize("message", MESSAGES, ids=[id_of(m) for m in MESSAGES])
def test_emails_have_html_that_escapes_what_people_wrote(
    message: tuple[Sample, str, str, str],
) -> None:
    sample, locale, channel, _ = message
    if channel != "EMAIL":
        return
    values = email_values(sample.step, REF, sample.subject[locale])
    email = render_email(sample.step.template, locale, ZONE, values)
    assert email.subject and email.text.strip()
    assert email.html.startswith("<!DOCTYPE html>") and f'lang="{locale}"' in email.html
    # What people wrote is in both alternatives, as text in the HTML.
    shown = email.text.count(PEN)
    assert email.html.count(PEN) >= shown
    assert "<script" not in email.html
    assert email.html.count(str(escape(SCRIPT))) == email.text.count(SCRIPT) + email.subject.count(
        SCRIPT
    )


@pytest.mark.parametrize("message", MESSAGES, ids=[id_of(m) for m in MESSAGES])
def test_sms_carry_nothing_anyone_wrote(message: tuple[Sample, str, str, str]) -> None:
    _, _, channel, text = message
    if channel.startswith("SMS"):
        assert PEN not in text and "script" not in text
        assert "\n" not in text


@pytest.mark.parametrize("message", MESSAGES, ids=[id_of(m) for m in MESSAGES])
def test_only_people_who_chose_email_are_pointed_to_their_mailbox(
    message: tuple[Sample, str, str, str],
) -> None:
    _, _, channel, text = message
    if channel == "SMS only":
        assert not re.search(r"邮件|邮箱|e-?mail|mailbox", text, re.IGNORECASE), text


def ucs2_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_sms_fit_one_segment(capsys: pytest.CaptureFixture[str]) -> None:
    """Chinese SMS (UCS-2) in 70 characters, English (GSM-7) in 160; the
    Chinese lengths are printed for the record."""
    lengths: dict[tuple[str, str], int] = {}
    for sample, locale, channel, text in MESSAGES:
        if not channel.startswith("SMS"):
            continue
        if locale == "zh-CN":
            lengths[(sample.step.template, text)] = ucs2_length(text)
        else:
            assert set(text) <= GSM7, (sample.step.template, set(text) - GSM7)
            assert len(text) <= 160, (sample.step.template, len(text), text)
    # The longest a date gets ("12月31日23:59", and a deadline at midnight:
    # "12月31日24:00"), and with its offset named (" GMT+08:00": the
    # reader's number spans zones, `render_sms`): no sample is near the
    # limit by luck.
    longest = (datetime(2026, 12, 31, 15, 59, tzinfo=UTC), datetime(2026, 12, 31, 16, tzinfo=UTC))
    for sample, due in product(SAMPLES, longest):
        if sample.step.due is not None:
            step = replace(sample.step, due=due)
            for email_chosen, zone_named in product((True, False), (True, False)):
                values = sms_values(step, REF, email_chosen)
                text = render_sms(step.template, "zh-CN", ZONE, values, zone_named=zone_named)
                assert ucs2_length(text) <= 70 or step.template in LONG_CHINESE_SMS, text
                text = render_sms(step.template, "en", ZONE, values, zone_named=zone_named)
                assert len(text) <= 160 and set(text) <= GSM7, text
    with capsys.disabled():
        print("\nChinese SMS, UCS-2 characters (one segment: 70)")
        for (template, text), n in sorted(lengths.items()):
            print(f"{n:4d}  {template:36s} {text}")
    too_long = {t: n for (t, _), n in lengths.items() if n > 70 and t not in LONG_CHINESE_SMS}
    assert too_long == {}


def test_an_sms_time_says_its_zone_when_the_number_tells_none() -> None:
    """A Russian or Mexican number spans zones: its reader is told times in
    the service's zone, which the SMS then names (the e-mail's long dates
    always do); a Chinese number's reader reads their own zone, unnamed."""
    removed = next(s for s in SAMPLES if s.step.template == "appeal.content_removed")
    step = replace(removed.step, due=datetime(2026, 3, 16, 15, 59, tzinfo=UTC))
    values = sms_values(step, REF, False)
    shanghai = render_sms(step.template, "en", ZONE, values)
    unknown = render_sms(step.template, "en", ZONE, values, zone_named=True)
    assert "16 Mar 23:59." in shanghai and "GMT" not in shanghai
    assert "16 Mar 23:59 GMT+08:00" in unknown and len(unknown) <= 160
    assert set(unknown) <= GSM7


def names_of(enum: Any) -> list[str]:
    return [value.name for value in enum.DESCRIPTOR.values]


KINDS = {
    "restriction": [
        name
        for enum in (
            api_reports.DecisionVisibility,
            api_reports.DecisionMonetary,
            api_reports.DecisionProvision,
            api_reports.DecisionAccount,
        )
        for name in names_of(enum)
    ],
    "category": names_of(api_reports.StatementCategory),
    "ground": names_of(api_reports.DecisionGround),
    "automated_decision": names_of(api_reports.AutomatedDecision),
    "target": [n.removeprefix("TARGET_TYPE_") for n in names_of(api_reports.TargetType)],
    "field": sorted({path for paths in REQUIRED.values() for path in paths}),
}


@pytest.mark.parametrize("locale", LOCALES)
def test_every_code_a_message_can_show_has_words_in_each_language(locale: str) -> None:
    missing = [
        (kind, code)
        for kind, codes in KINDS.items()
        for code in codes
        if not code.endswith("UNSPECIFIED") and code not in catalog(locale)[kind]
    ]
    assert missing == []


def test_an_unknown_code_reads_as_words_not_as_the_code() -> None:
    assert label("restriction", "DECISION_VISIBILITY_CONTENT_BLURRED", "en") == "content blurred"
    assert label("restriction", "DECISION_VISIBILITY_CONTENT_BLURRED", "zh-CN") == "其他处理措施"
    assert label("field", "notice.work.isrc_code", "en") == "notice work isrc code"
    assert label("field", "notice.work.isrc_code", "zh-CN") == "其他必填信息"
    assert label("restriction", "DECISION_ACCOUNT_SUSPENDED", "fr") == "account suspended"


def test_dates_are_in_the_readers_zone_and_language() -> None:
    received = next(s for s in SAMPLES if s.step.template == "appeal.received")
    for locale, words in (
        ("zh-CN", "2026年3月17日 09:30（中国标准时间）"),
        ("en", "17 March 2026, 09:30 (China Standard Time)"),
    ):
        values = email_values(received.step, REF, received.subject[locale])
        assert words in render_email("appeal.received", locale, ZONE, values).text
    utc = render_email("appeal.received", "en", ZoneInfo("UTC"), values).text
    assert "17 March 2026, 01:30 (Coordinated Universal Time)" in utc, utc


# A claimant's deadline on a "cn" case forwarded on 2 March (24:00 on 17
# March, Beijing time), and on a "us" one (24:00 on 16 March, New York time).
CN_DEADLINE = datetime(2026, 3, 17, 16, tzinfo=UTC)
US_DEADLINE = datetime(2026, 3, 17, 4, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("due", "zone", "locale", "email", "sms"),
    [
        (
            CN_DEADLINE,
            ZONE,
            "zh-CN",
            "请在 2026年3月17日 24:00（中国标准时间）前",
            "请于3月17日24:00前",
        ),
        (
            CN_DEADLINE,
            ZONE,
            "en",
            "tell us by 24:00 on 17 March 2026 (China Standard Time)",
            "by 17 Mar 24:00.",
        ),
        (
            US_DEADLINE,
            NEW_YORK,
            "en",
            "tell us by 24:00 on 16 March 2026 (Eastern Daylight Time)",
            "by 16 Mar 24:00.",
        ),
        (
            US_DEADLINE,
            NEW_YORK,
            "zh-CN",
            "请在 2026年3月16日 24:00（北美东部夏令时间）前",
            "请于3月16日24:00前",
        ),
        # Any other moment is written as it is.
        (
            CN_DEADLINE - timedelta(minutes=1),
            ZONE,
            "en",
            "tell us by 17 March 2026, 23:59 (China Standard Time)",
            "by 17 Mar 23:59.",
        ),
        (
            CN_DEADLINE + timedelta(minutes=1),
            ZONE,
            "zh-CN",
            "请在 2026年3月18日 00:01（中国标准时间）前",
            "请于3月18日00:01前",
        ),
    ],
    ids=["cn-zh", "cn-en", "us-en", "us-zh", "a-minute-before-en", "a-minute-after-zh"],
)
def test_a_deadline_at_midnight_is_the_end_of_the_day_before(
    due: datetime, zone: ZoneInfo, locale: str, email: str, sms: str
) -> None:
    """A deadline counted in days ends at 24:00 on its last day: the
    claimant is told that day, not the next day's 00:00 (which reads as a
    day more than they have), in the e-mail, the SMS and what the SMS
    provider's template is filled with."""
    received = next(s for s in SAMPLES if s.step.template == "appeal.counter_notice_received")
    step = replace(received.step, due=due)
    values = email_values(step, REF, received.subject[locale])
    assert email in render_email(step.template, locale, zone, values).text
    text, shown = sms_in(zone, step.template, locale, sms_values(step, REF, True), named=False)
    assert sms in text
    assert shown["due"] in sms


def test_every_deadline_and_end_a_message_shows_is_written_at_24_00() -> None:
    """Whatever a message says is due by, or holds until, a local midnight:
    every message with a date, in each language, on each channel."""
    midnight = datetime(2026, 3, 17, 16, tzinfo=UTC)
    ends = reports_pb2.Restriction(type="DECISION_ACCOUNT_SUSPENDED")
    ends.end_time.FromDatetime(midnight)
    resolved = reports_pb2.ReportResolved(
        outcome="ACTION_TAKEN", restriction_terms=[ends], decision_facts="f", redress="r"
    )
    resolved.appeal_deadline.FromDatetime(midnight)
    steps = [replace(s.step, due=midnight) for s in SAMPLES if s.step.due is not None]
    steps.append(report_steps(resolved)["reporter"])
    shown = 0
    for step, locale in product(steps, LOCALES):
        texts = [render_sms(step.template, locale, ZONE, sms_values(step, REF, True))]
        if "EMAIL" in channels(step.template):
            texts.append(
                render_email(step.template, locale, ZONE, email_values(step, REF, "v")).text
            )
        for text in texts:
            assert not re.search(r"00:00|18 Mar|3月18日", text), text
            shown += "24:00" in text
    assert shown >= len(steps) * len(LOCALES)


@pytest.mark.parametrize(
    ("locale", "subject"),
    [
        ("en", "Appeal upheld: restrictions on v7731 lifted"),
        ("zh-CN", "【申诉成功】您的内容 v7731 的处理措施已解除"),
    ],
    ids=["en", "zh-CN"],
)
def test_lifted_restrictions_are_not_told_as_content_restored(locale: str, subject: str) -> None:
    """What a reversed decision lifts may be an account suspension or a
    monetary restriction, or only some of what it imposed: the subject line
    says its restrictions were lifted, never that the content is back."""
    suspended = reports_pb2.Restriction(type="DECISION_ACCOUNT_SUSPENDED")
    demonetised = reports_pb2.Restriction(type="DECISION_MONETARY_SUSPENSION")
    reversed_ = reports_pb2.ReportCaseDecisionReversed(restrictions_lifted=[suspended, demonetised])
    step = report_steps(reversed_)["uploader"]
    email = render_email(step.template, locale, ZONE, email_values(step, REF, "v7731"))
    assert email.subject == subject
    assert not re.search(r"恢复|restored", email.subject + email.text)


def filed(appeal: appeals_pb2.AppealFiled, locale: str) -> tuple[str, str]:
    """The subject line and the text of the e-mail its filer, writing in
    `locale`, receives when `appeal` is filed."""
    appeal.header.CopyFrom(
        appeals_pb2.AppealEventHeader(appeal_id="c4e1a7b2-0d3f", version=1, state="SUBMITTED")
    )
    appeal.filer.user_id = "u-1"
    appeal.filer.contact.CopyFrom(
        tickets_pb2.ContactPreferences(
            email="lin@example.com", channels=[tickets_pb2.CONTACT_CHANNEL_EMAIL], locale=locale
        )
    )
    event = case_event(
        "appeals", "appeals/c4e1a7b2-0d3f", 1, appeal, datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    )
    at = Planning(now=event.time, zone=ZONE)
    [job] = [j for j in plan_appeal(CaseParties({}), event, appeal, at) if j.channel == "EMAIL"]
    return job.subject, job.body


CASE_ID = "c4e1a7b2-0d3f-4a1b-9c2d-111111111111"
FORWARDED = datetime(2026, 3, 2, 15, tzinfo=UTC)
# A "us" case's claimant deadline (10 business days: 24:00 on 16 March, New
# York time), and when its content comes back (2 business days later).
US_RESTORES = datetime(2026, 3, 19, 4, tzinfo=UTC)


def party(user_id: str, locale: str, email: str, phone: str = "") -> appeals_pb2.AppealParty:
    chosen = [tickets_pb2.CONTACT_CHANNEL_EMAIL] + (
        [tickets_pb2.CONTACT_CHANNEL_SMS] if phone else []
    )
    return appeals_pb2.AppealParty(
        user_id=user_id,
        legal_name=user_id,
        contact=tickets_pb2.ContactPreferences(
            email=email, phone=phone, channels=chosen, locale=locale
        ),
    )


def case_jobs(
    jurisdiction: str,
    claimant: appeals_pb2.AppealParty,
    uploader: appeals_pb2.AppealParty,
    *,
    restores_at: datetime | None = US_RESTORES,
    items: Sequence[str] = ("https://video.example/v/7731",),
    info_added: bool = False,
) -> dict[tuple[str, str, str], NewJob]:
    """A copyright case's jobs (by template, party and channel) as a
    notifier whose zone is Beijing's plans them: the notice filed (then
    `info_added` to), upheld (removing the uploader's content), and their
    counter-notice forwarded with the claimant's deadline `US_DEADLINE`."""
    name = f"appeals/{CASE_ID}"

    def head(
        version: int, state: str, due: datetime | None = None
    ) -> appeals_pb2.AppealEventHeader:
        header = appeals_pb2.AppealEventHeader(appeal_id=CASE_ID, version=version, state=state)
        if due is not None:
            header.next_step_due.FromDatetime(due)
        return header

    notice = appeals_pb2.AppealFiled(
        header=head(1, "SUBMITTED"),
        kind="TAKEDOWN_NOTICE",
        jurisdiction=jurisdiction,
        filer=claimant,
        work_title="Mountain Song",
        infringing_items=items,
    )
    added = appeals_pb2.AppealInfoAdded(header=head(2, "SUBMITTED"), message="more")
    upheld = appeals_pb2.AppealDecided(
        header=head(3, "UPHELD", US_DEADLINE),
        outcome="UPHOLD",
        reasons=appeals_pb2.StatementOfReasons(ground="g", facts="f", redress="r"),
        affected_uploader=uploader,
    )
    counter = appeals_pb2.CounterNoticeFiled(
        header=head(4, "FORWARDED_TO_CLAIMANT", US_DEADLINE),
        uploader=uploader,
        removed_item=items[0] if items else "",
        reason="mine",
    )
    counter.restore_time.FromDatetime(US_DEADLINE)
    if restores_at is not None:
        counter.restores_at.FromDatetime(restores_at)
    at = Planning(now=FORWARDED, zone=ZONE)
    rows: dict[str, Party] = {}
    jobs = []
    for message in (notice, added, upheld, counter):
        if message is added and not info_added:
            continue
        # Each event in a batch of its own: its parties as their rows keep them.
        book = CaseParties({name: rows})
        version = message.header.version
        event = case_event("appeals", name, version, message, FORWARDED)
        jobs += plan_appeal(book, event, message, at)
        rows |= {party.role: party for _, party in book.changed()}
    return {(j.template, j.party, j.channel): j for j in jobs}


@pytest.mark.parametrize(
    ("locale", "email", "sms"),
    [
        (
            "en",
            "Your content will be restored after 24:00 on 18 March 2026 (Eastern Daylight Time),"
            " unless the claimant tells us by 24:00 on 16 March 2026 (Eastern Daylight Time)"
            " that they have taken court action.",
            "content restored after 18 Mar 24:00 unless the claimant sues.",
        ),
        (
            "zh-CN",
            "如投诉人未在 2026年3月16日 24:00（北美东部夏令时间）前告知已采取法律行动，"
            "您的内容将于 2026年3月18日 24:00（北美东部夏令时间）后恢复。",
            "如无诉讼，内容将于3月18日24:00后恢复。",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_the_uploader_is_told_when_their_content_comes_back(
    locale: str, email: str, sms: str
) -> None:
    """A "us" case's content comes back two business days after the
    claimant's deadline: its uploader is told that day (`restores_at`), and
    the deadline by which the claimant may stop it; the claimant is told
    their deadline. A counter-notice published before it said when the
    content comes back tells the deadline alone, and no day of return."""
    claimant = party("claimant", "en", "c@example.com", "+12125550123")
    uploader = party("uploader", locale, "u@example.com", "+12125550199")
    jobs = case_jobs("us", claimant, uploader)
    told = "appeal.counter_notice_forwarded", "uploader"
    assert email in one_line(jobs[(*told, "EMAIL")].body)
    assert sms in jobs[(*told, "SMS")].body
    assert "by 16 Mar 24:00." in jobs[("appeal.counter_notice_received", "filer", "SMS")].body

    before = case_jobs("us", claimant, uploader, restores_at=None)
    for channel in ("EMAIL", "SMS"):
        text = before[(*told, channel)].body
        assert re.search(r"24:00 on 16 March|16 Mar 24:00|3月16日 ?24:00", text), text
        assert not re.search(r"18 Mar|3月18日|after|后恢复", text), text


@pytest.mark.parametrize("locale", LOCALES)
def test_a_party_without_a_phone_is_told_dates_in_their_cases_zone(locale: str) -> None:
    """The events carry no zone of a reader's choosing: one whose number
    tells none (they gave none, or it spans zones) is told the dates of a
    copyright case in its jurisdiction's zone, the one its deadlines are
    counted in, not the service's (Beijing): both parties of a "us" case,
    the uploader named by later events too."""
    claimant = party("claimant", locale, "c@example.com")
    uploader = party("uploader", locale, "u@example.com", "+79161234567")
    jobs = case_jobs("us", claimant, uploader)
    deadline = {
        "en": "24:00 on 16 March 2026 (Eastern Daylight Time)",
        "zh-CN": "2026年3月16日 24:00（北美东部夏令时间）",
    }[locale]
    for told in ("appeal.content_removed", "appeal.counter_notice_forwarded"):
        assert deadline in jobs[(told, "uploader", "EMAIL")].body
    assert deadline in jobs[("appeal.counter_notice_received", "filer", "EMAIL")].body
    # A Russian number spans zones: the case's is told, saying so.
    assert "GMT-04:00" in jobs[("appeal.content_removed", "uploader", "SMS")].body
    assert not any("China Standard" in j.body or "中国标准" in j.body for j in jobs.values())
    # A case whose jurisdiction the notifier does not know: the service's zone.
    elsewhere = case_jobs("xx", claimant, uploader)
    text = elsewhere[("appeal.counter_notice_received", "filer", "EMAIL")].body
    assert "China Standard" in text or "中国标准" in text


@pytest.mark.parametrize(
    ("locale", "removed"),
    [
        ("en", "Removed items: https://v.example/1, content:8841\n"),
        ("zh-CN", "被删除的内容：https://v.example/1、content:8841\n"),
    ],
    ids=["en", "zh-CN"],
)
def test_the_uploader_is_told_which_content_was_removed(locale: str, removed: str) -> None:
    """A counter-notice names the removed items: the uploader's e-mail says
    which the upheld notice took down (the SMS does not). Once the claimant
    added to the notice (which may have named more items, not carried by
    the event) it names none rather than some as all. The work's title is
    the claimant's words, never in the uploader's messages: their erasure
    could take it out of them only by cutting its text wherever it occurs."""
    items = ("https://v.example/1", "content:8841")
    claimant = party("claimant", "en", "c@example.com")
    uploader = party("uploader", locale, "u@example.com", "+8613900139000")
    told = "appeal.content_removed", "uploader"
    jobs = case_jobs("cn", claimant, uploader, items=items)
    email = jobs[(*told, "EMAIL")]
    assert removed in email.body
    assert "v.example" not in jobs[(*told, "SMS")].body
    assert not any("Mountain" in j.body for (_, role, _), j in jobs.items() if role == "uploader")

    completed = case_jobs("cn", claimant, uploader, items=items, info_added=True)
    email = completed[(*told, "EMAIL")]
    assert "v.example" not in email.body and "8841" not in email.body


# Another notice naming the same items, and a third, as `held_by` names them.
OTHER_NOTICE = "appeals/e2b7c4d1-5a3f-4e6b-8c9d-0f1a2b3c4d5e"
THIRD_NOTICE = "appeals/9d8c7b6a-1e2f-4a3b-9c4d-5e6f7a8b9c0d"
# What says content came back, in either language (not "has not been restored").
SAYS_RESTORED = re.compile(r"(has|have) been restored|was restored|restored item|已恢复", re.I)
SAYS_HELD = re.compile(r"another (copyright )?notice|other copyright notices|其他(版权)?投诉")


def letting_go(**given: Any) -> list[Any]:
    """A notice letting go of items, each way it can: its counter-notice's
    window passed, an appeal upheld (while a court holds the rest, or not),
    its claimant withdrew it, a court action ended with them restored."""

    def header(state: str) -> appeals_pb2.AppealEventHeader:
        return appeals_pb2.AppealEventHeader(appeal_id=CASE_ID, version=7, state=state)

    appeal = "appeals/6f1c2a9e-8d3b-4c0a-9e7f-1b2c3d4e5f60"
    return [
        appeals_pb2.ContentRestored(header=header("RESTORED"), **given),
        appeals_pb2.ContentRestored(header=header("RESTORED"), outcome_of=appeal, **given),
        appeals_pb2.ContentRestored(header=header("UPHELD_BY_COURT"), outcome_of=appeal, **given),
        appeals_pb2.ContentRestored(header=header("WITHDRAWN"), **given),
        appeals_pb2.CourtOutcomeRecorded(
            header=header("RESTORED"), outcome="CONTENT_RESTORED", **given
        ),
    ]


def told(message: Any, before: str = "UPHELD") -> dict[tuple[str, str, str], str]:
    """What each party reads of `message`, by role, locale and channel: an
    e-mail as its subject and text; an SMS to someone who did not choose
    e-mail."""
    texts = {}
    for role, step in appeal_steps(message, before).items():
        for locale in LOCALES:
            email = render_email(step.template, locale, ZONE, email_values(step, REF, "v"))
            texts[(role, locale, "EMAIL")] = f"{email.subject}\n{email.text}"
            sms = render_sms(step.template, locale, ZONE, sms_values(step, REF, False))
            texts[(role, locale, "SMS")] = sms
    return texts


def test_nobody_is_told_content_came_back_that_another_notice_keeps_down() -> None:
    """Two notices took one video down, and this one let it go while the
    other still keeps it down: the event restores nothing. Neither party
    reads, in either language, by e-mail or SMS, that the content came
    back, but that another notice keeps it down; the e-mail names the video
    and that notice's case number, written as every case number is."""
    video = "https://v.example/1"
    held = [appeals_pb2.ItemHeldElsewhere(item=video, held_by=[OTHER_NOTICE])]
    for message in letting_go(held_elsewhere=held):
        texts = told(message)
        assert {role for role, _, _ in texts} == {"filer", "uploader"}
        for (role, locale, channel), text in texts.items():
            where = (type(message).__name__, message.header.state, role, locale, channel, text)
            assert not SAYS_RESTORED.search(text), where
            assert SAYS_HELD.search(text), where
            if channel == "EMAIL":
                shown = {
                    "en": f"- {video} (copyright case E2B7C4D1)\n",
                    "zh-CN": f"- {video}（版权案件 E2B7C4D1）\n",
                }
                assert shown[locale] in text, where
            else:
                assert video not in text and "E2B7C4D1" not in text, where


@pytest.mark.parametrize(
    ("locale", "restored", "held"),
    [
        (
            "en",
            "Restored item: https://v.example/1\n",
            "Still down under other copyright notices:\n"
            "- https://v.example/2 (copyright cases E2B7C4D1, 9D8C7B6A)\n",
        ),
        (
            "zh-CN",
            "已恢复的内容：https://v.example/1\n",
            "仍被其他版权投诉下架的内容：\n- https://v.example/2（版权案件 E2B7C4D1、9D8C7B6A）\n",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_each_party_reads_what_came_back_and_what_another_notice_keeps_down(
    locale: str, restored: str, held: str
) -> None:
    """A notice let go of two videos; two other notices keep one of them
    down: each party's e-mail names the one that came back, and the one
    still down with the cases keeping it; neither message says all of it
    came back."""
    back, down = "https://v.example/1", "https://v.example/2"
    kept = [appeals_pb2.ItemHeldElsewhere(item=down, held_by=[OTHER_NOTICE, THIRD_NOTICE])]
    for message in letting_go(removed_item=back, restored_items=[back], held_elsewhere=kept):
        for (role, shown_in, channel), text in told(message).items():
            if shown_in != locale:
                continue
            where = (type(message).__name__, message.header.state, role, channel, text)
            assert SAYS_HELD.search(text), where
            if channel == "EMAIL":
                assert restored in text and held in text, where
                assert down not in text.replace(held, ""), where
            else:
                assert back not in text and down not in text, where


@pytest.mark.parametrize(
    ("locale", "uploader", "filer", "uploader_sms", "filer_sms"),
    [
        (
            "en",
            f"The claimant withdrew their copyright notice (number {REF}); the content it took"
            " down has been restored.",
            f"You withdrew your copyright notice (number {REF}); the content it took down has"
            " been restored.",
            f"the claimant withdrew copyright notice {REF}; the content was restored.",
            f"you withdrew copyright notice {REF}; the content was restored.",
        ),
        (
            "zh-CN",
            f"投诉人已撤回版权投诉（编号 {REF}），该投诉下架的内容已恢复。",
            f"您已撤回版权投诉（编号 {REF}），该投诉下架的内容已恢复。",
            f"投诉人已撤回版权投诉{REF}，内容已恢复。",
            f"您已撤回版权投诉{REF}，内容已恢复。",
        ),
    ],
    ids=["en", "zh-CN"],
)
def test_content_back_after_the_claimant_withdrew_is_told_as_their_withdrawal(
    locale: str, uploader: str, filer: str, uploader_sms: str, filer_sms: str
) -> None:
    """A claimant withdrew their upheld notice (a counter-notice to it
    forwarded, or not): the uploader reads that the claimant withdrew it
    and their content is back, the claimant that their withdrawal brought
    it back, neither that a counter-notice's time ran out. The claimant's
    withdrawal is told once, in that message, not also as any withdrawal
    ("we will not work on it any further")."""
    back = "https://v.example/1"
    header = appeals_pb2.AppealEventHeader(appeal_id=CASE_ID, version=8, state="WITHDRAWN")
    restored = appeals_pb2.ContentRestored(header=header, removed_item=back, restored_items=[back])
    for before in ("UPHELD", "FORWARDED_TO_CLAIMANT"):
        texts = told(restored, before)
        assert uploader in one_line(texts[("uploader", locale, "EMAIL")])
        assert filer in one_line(texts[("filer", locale, "EMAIL")])
        assert uploader_sms in texts[("uploader", locale, "SMS")]
        assert filer_sms in texts[("filer", locale, "SMS")]
        assert not [t for t in texts.values() if re.search(r"counter-notice|反通知|period|期限", t)]
        assert appeal_steps(appeals_pb2.AppealWithdrawn(header=header), before) == {}
    # A notice withdrawn before it took anything down is acknowledged as ever.
    withdrawn = appeal_steps(appeals_pb2.AppealWithdrawn(header=header), "UNDER_REVIEW")
    assert {role: step.template for role, step in withdrawn.items()} == {
        "filer": "appeal.withdrawn"
    }


ADDRESS = "1200 Harbor Blvd, Apt 4B, Weehawken, NJ 07086"


@pytest.mark.parametrize(("locale", "line"), [("en", "Address: "), ("zh-CN", "通讯地址：")])
def test_the_claimant_is_told_the_address_a_us_counter_notice_gives(locale: str, line: str) -> None:
    """A US counter-notice gives the uploader's postal address (17 U.S.C.
    512(g)(3)(D)), where the claimant may serve them: the claimant's copy
    shows it with the uploader's e-mail and phone, in the e-mail alone; the
    uploader's own messages do not. One filed before it was carried shows
    none."""
    claimant = party("claimant", locale, "c@example.com", "+12125550123")
    uploader = party("uploader", "en", "u@example.com", "+12125550199")
    uploader.postal_address = ADDRESS
    jobs = case_jobs("us", claimant, uploader)
    copy = jobs[("appeal.counter_notice_received", "filer", "EMAIL")]
    assert f"{line}{ADDRESS}\n" in copy.body and ADDRESS in copy.html
    others = [
        j for key, j in jobs.items() if key != ("appeal.counter_notice_received", "filer", "EMAIL")
    ]
    assert others and not [j.template for j in others if ADDRESS in j.body + j.html]
    uploader.ClearField("postal_address")
    before = case_jobs("us", claimant, uploader)
    assert line not in before[("appeal.counter_notice_received", "filer", "EMAIL")].body


def test_the_uploaders_address_is_shown_only_where_their_erasure_scrubs_it() -> None:
    """The uploader's postal address, sealed under their key, is revealed
    for the claimant's copy like their e-mail and phone, and reads erased
    once their key is gone. The only messages showing it are copies their
    erasure blanks whole (`store.COPIES`: not sent, or kept without text)."""
    shown = {
        (sample.step.template, sample.role)
        for sample, _, _, text in MESSAGES
        if "Weehawken" in text
    }
    copies = {(c.template, c.holder) for c in COPIES if c.owner == "uploader" and c.template}
    assert shown and shown <= copies, shown

    sealer = Sealer(DataKeys(MemoryKeyStore(), MasterKeys.parse(f"t:{new_master_key()}")))
    counter = appeals_pb2.CounterNoticeFiled(
        header=appeals_pb2.AppealEventHeader(appeal_id=CASE_ID, state="FORWARDED_TO_CLAIMANT"),
        uploader=party("u-3", "en", "u@example.com"),
        removed_item="https://v.example/1",
        reason="mine",
    )
    counter.uploader.postal_address = sealer.seal(ADDRESS, "u-3")
    counter.uploader.contact.email = sealer.seal("u@example.com", "u-3")
    revealed = reveal_message(sealer, counter)
    step = appeal_steps(revealed.message, "UPHELD")["filer"]
    assert ADDRESS in render_email(step.template, "en", ZONE, email_values(step, REF, "v")).text
    sealer.keys.erase("u-3")
    sealer.keys.forget("u-3")
    erased = reveal_message(sealer, counter)
    assert set(erased.erased) == {"uploader.postal_address", "uploader.contact.email"}
    assert is_erased(erased.message.uploader.postal_address)


@pytest.mark.parametrize(("jurisdiction", "locale"), list(product(POLICIES, LOCALES)))
def test_a_rejected_report_appeal_names_only_the_redress_its_case_has(
    jurisdiction: str, locale: str
) -> None:
    """What remains after a report decision's appeal is rejected is the
    redress its jurisdiction gives (`reasons.redress`): an out-of-court
    dispute settlement body (DSA Art. 21) exists for an EU case alone, and
    is named once."""
    redress = POLICIES[jurisdiction].final_redress[locale]
    rejected = appeals_pb2.AppealDecided(
        outcome="REJECT",
        reasons=appeals_pb2.StatementOfReasons(ground="g", facts="f", redress=redress),
    )
    steps = for_report_appeal(appeal_steps(rejected, "UNDER_REVIEW"), "report-cases/r-1")
    step = steps["filer"]
    assert step.template == "report_appeal.rejected"
    text = render_email(step.template, locale, ZONE, email_values(step, REF, "v")).text
    assert text.count(redress) == 1
    body = text.replace(redress, "")
    assert not re.search(r"out-of-court|dispute settlement|争议解决|court|法院", body), body


@pytest.mark.parametrize(
    ("locale", "untitled", "titled"),
    [
        ("en", "We received your copyright case C4E1A7B2", "C4E1A7B2: Mountain Song"),
        ("zh-CN", "【版权案件已受理】C4E1A7B2", "【版权案件已受理】C4E1A7B2：Mountain Song"),
    ],
)
def test_an_appeal_of_a_copyright_decision_is_acknowledged_without_a_dangling_colon(
    locale: str, untitled: str, titled: str
) -> None:
    """An appeal of a copyright case's decision has no subject of its own
    (the case's id would read as code), and its receipt's subject line ends
    with the case number; a notice names its work after it."""
    appeal = appeals_pb2.AppealFiled(
        kind="DECISION_APPEAL", appeal_of="appeals/a3d9e1f7-2c4b-4e8a-b6d0-9f1e3c5a7b21"
    )
    subject, text = filed(appeal, locale)
    assert subject == untitled
    assert "C4E1A7B2" in text
    notice = appeals_pb2.AppealFiled(kind="TAKEDOWN_NOTICE", work_title="Mountain Song")
    assert filed(notice, locale)[0].endswith(titled)


def test_the_uploaders_statement_says_where_the_decision_applies() -> None:
    """The countries a decision applies in are part of its statement of
    reasons (DSA Art. 17(3)(a)); a decision naming none applies everywhere,
    and the statement says nothing of it."""
    sample = next(s for s in SAMPLES if s.step.template == "report.statement")
    assert isinstance(sample.message, reports_pb2.ReportCaseDecided)
    scoped = reports_pb2.ReportCaseDecided()
    scoped.CopyFrom(sample.message)
    scoped.statement.territorial_scope[:] = ["DE", "FR"]
    step = report_steps(scoped)["uploader"]
    for locale, line, word in (
        ("en", "Applies in: DE, FR\n", "Applies in"),
        ("zh-CN", "适用地区：DE、FR\n", "适用地区"),
    ):
        values = email_values(step, REF, sample.subject[locale])
        assert line in render_email(step.template, locale, ZONE, values).text
        everywhere = email_values(sample.step, REF, sample.subject[locale])
        assert word not in render_email(step.template, locale, ZONE, everywhere).text


def test_the_reporter_is_told_of_automated_means_and_when_restrictions_end() -> None:
    """DSA Art. 16(6): the decision on a report tells its reporter whether
    automated means detected the content and took the decision, and until
    when a temporary restriction holds, in the reader's zone and language;
    an outcome recorded before these were kept says nothing of them."""
    suspended = reports_pb2.Restriction(type="DECISION_ACCOUNT_SUSPENDED")
    suspended.end_time.FromDatetime(datetime(2026, 3, 9, 1, 30, tzinfo=UTC))
    resolved = reports_pb2.ReportResolved(
        outcome="ACTION_TAKEN",
        restrictions=["DECISION_VISIBILITY_CONTENT_REMOVED", "DECISION_ACCOUNT_SUSPENDED"],
        restriction_terms=[
            reports_pb2.Restriction(type="DECISION_VISIBILITY_CONTENT_REMOVED"),
            suspended,
        ],
        automated_detection=False,
        automated_decision="AUTOMATED_DECISION_FULLY",
        decision_facts="f",
        redress="r",
    )
    resolved.appeal_deadline.FromDatetime(datetime(2026, 9, 1, tzinfo=UTC))
    before = reports_pb2.ReportResolved()
    before.CopyFrom(resolved)
    before.ClearField("restriction_terms")
    before.ClearField("automated_detection")
    before.ClearField("automated_decision")
    for locale, said in (
        (
            "en",
            [
                "- account suspended, until 9 March 2026, 09:30 (China Standard Time)\n",
                "Automated detection: no\n",
                "Decision: fully automated\n",
            ],
        ),
        (
            "zh-CN",
            [
                "- 暂停账号，至 2026年3月9日 09:30（中国标准时间）止\n",
                "自动化识别：否\n",
                "决定方式：完全自动化\n",
            ],
        ),
    ):
        step = report_steps(resolved)["reporter"]
        text = render_email(step.template, locale, ZONE, email_values(step, REF, "v")).text
        assert all(line in text for line in said), text
        step = report_steps(before)["reporter"]
        text = render_email(step.template, locale, ZONE, email_values(step, REF, "v")).text
        assert not any(line in text for line in said), text
        assert label("restriction", "DECISION_ACCOUNT_SUSPENDED", locale) in text


@pytest.mark.parametrize("appealed", ["", "report-cases/r-1"])
def test_a_copyright_decision_says_whether_automated_means_were_used(appealed: str) -> None:
    """DSA Art. 17(3)(c): the statement of reasons a decision sends its
    parties (the uploader whose content it removed, the filer, an appeal
    of a report decision's filer) says whether automated means detected
    the content and took the decision, and says so when they did not."""

    def decided(outcome: str, used: bool) -> appeals_pb2.AppealDecided:
        sample = next(
            s.message
            for s in SAMPLES
            if isinstance(s.message, appeals_pb2.AppealDecided) and s.message.outcome == outcome
        )
        message = appeals_pb2.AppealDecided()
        message.CopyFrom(sample)
        message.reasons.automated_detection = used
        message.reasons.automated_decision = used
        return message

    told = []
    for locale, used, not_used in (
        (
            "en",
            [
                "Automated detection: yes, the content was detected or identified by automated"
                " means\n",
                "Decision: taken by automated means\n",
            ],
            ["Automated detection: no\n", "Decision: taken by a person\n"],
        ),
        (
            "zh-CN",
            ["自动化识别：是，该内容经自动化手段发现或识别\n", "决定方式：由自动化手段作出\n"],
            ["自动化识别：否\n", "决定方式：人工审核\n"],
        ),
    ):
        for outcome, automated in product(("UPHOLD", "REJECT"), (True, False)):
            said, unsaid = (used, not_used) if automated else (not_used, used)
            message = decided(outcome, automated)
            steps = for_report_appeal(appeal_steps(message, "UNDER_REVIEW"), appealed)
            for step in steps.values():
                values = email_values(step, REF, "v")
                text = render_email(step.template, locale, ZONE, values).text
                assert all(line in text for line in said), (step.template, text)
                assert not any(line in text for line in unsaid), (step.template, text)
                told.append(step.template)
    prefix = "report_" if appealed else ""
    assert {f"{prefix}appeal.upheld", f"{prefix}appeal.rejected", "appeal.content_removed"} == set(
        told
    )


def test_a_copyright_case_is_told_in_the_zone_its_jurisdiction_counts_deadlines_in() -> None:
    """The notifier keeps the appeals policies' zones as data of its own: a
    party without a phone number reads a case's deadlines in the zone they
    are counted in, and the two tables must not drift apart."""
    assert {code: p.time_zone for code, p in POLICIES.items()} == JURISDICTION_ZONES
