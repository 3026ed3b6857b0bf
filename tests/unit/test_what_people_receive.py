"""Every message a person can receive: each template, in each locale, on each
channel it goes out on, rendered from the sample events (`samples.py`, one
or more for every kind of event the notifier reads). People read words,
never a field path or an enum name; an e-mail has an HTML alternative that
escapes what people wrote; an SMS carries nothing anyone wrote and, in
Chinese, fits one 70-character segment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from google.protobuf.descriptor import Descriptor
from markupsafe import escape

from casemesh.events.v1 import appeals_pb2, helpcenter_pb2, reports_pb2, tickets_pb2
from casemesh.v1 import appeals_pb2 as api_appeals
from casemesh.v1 import reports_pb2 as api_reports
from casemesh_appeals.domain import REQUIRED
from casemesh_notifier.cases import CaseParties, Planning, plan_appeal
from casemesh_notifier.labels import LOCALES, TEMPLATES, catalog, label
from casemesh_notifier.registry import SOURCES
from casemesh_notifier.rendering import (
    _TEXT,
    email_values,
    names,
    render_email,
    render_sms,
    sms_values,
)
from casemesh_notifier.samples import Sample, event_kinds, samples
from casemesh_notifier.steps import appeal_steps, for_report_appeal, report_steps
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
    # The longest a date gets ("12月31日23:59"), and with its offset named
    # (" GMT+08:00": the reader's number spans zones, `render_sms`): no
    # sample is near the limit by luck.
    longest = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)
    for sample in SAMPLES:
        if sample.step.due is not None:
            step = replace(sample.step, due=longest)
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
