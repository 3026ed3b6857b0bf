"""A refusal carries the words a front end shows a person, in the language the
caller reads (google.rpc.LocalizedMessage): zh-CN or en, from `accept-language`."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from casemesh.platform import errors
from casemesh.platform.grpcutil import STATUS_DETAILS_KEY, to_status
from casemesh.platform.localized import LOCALES, field_words, locale_of, localized
from casemesh_evidence.application import _mib

ROOT = Path(__file__).resolve().parents[2]
WORDS = tomllib.loads(
    (ROOT / "libs/casemesh/src/casemesh/platform/error_messages.toml").read_text()
)


def said(status: status_pb2.Status) -> error_details_pb2.LocalizedMessage:
    (found,) = [d for d in status.details if d.Is(error_details_pb2.LocalizedMessage.DESCRIPTOR)]
    message = error_details_pb2.LocalizedMessage()
    found.Unpack(message)
    return message


def sent(err: errors.CasemeshError, locale: str) -> status_pb2.Status:
    trailers = dict(to_status(err, locale).trailing_metadata)
    return status_pb2.Status.FromString(trailers[STATUS_DETAILS_KEY])


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
        ("en-US,en;q=0.9", "en"),
        ("en;q=0.3, zh-Hans;q=0.8", "zh-CN"),
        ("fr-FR, en;q=0.5", "en"),
        ("fr", "en"),
        ("", "en"),
        ("zh;q=not-a-number, en", "en"),
    ],
)
def test_the_callers_language_is_read_from_accept_language(header: str, locale: str) -> None:
    assert locale_of(header) == locale


def test_a_refusal_with_a_reason_is_said_in_chinese_and_in_the_services_english() -> None:
    err = errors.FailedPrecondition(
        "the ticket is closed; open a new ticket instead", reason="TICKET_FINAL"
    )
    assert said(sent(err, "zh-CN")).message == "这个工单已结束，请新建工单。"
    english = said(sent(err, "en"))
    assert (english.locale, english.message) == ("en", err.message)


def test_invalid_fields_keep_their_violations_and_get_a_sentence_to_show() -> None:
    err = errors.InvalidArgument(errors.FieldViolation("ticket.subject", "is required"))
    status = sent(err, "zh-CN")
    assert status.code == code_pb2.INVALID_ARGUMENT
    assert any(d.Is(error_details_pb2.BadRequest.DESCRIPTOR) for d in status.details)
    assert said(status).message == WORDS["codes"]["INVALID_ARGUMENT"]["zh-CN"]


def test_an_outage_is_said_plainly_not_in_the_servers_words() -> None:
    outage = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="Connection refused 10.0.0.7")
    assert said(localized(outage, "en")).message == WORDS["codes"]["UNAVAILABLE"]["en"]
    assert said(localized(outage, "zh-CN")).message == WORDS["codes"]["UNAVAILABLE"]["zh-CN"]


def test_the_words_a_service_chose_are_kept_and_ok_is_left_alone() -> None:
    first = localized(status_pb2.Status(code=code_pb2.NOT_FOUND, message="no"), "zh-CN")
    assert localized(first, "en") == first
    ok = status_pb2.Status(code=code_pb2.OK)
    assert localized(ok, "en") == ok


def test_every_stable_reason_in_the_code_has_chinese_words_and_every_code_both() -> None:
    reasons = set()
    for path in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("libs/casemesh/src/**/*.py")]:
        reasons |= set(re.findall(r'reason="([A-Z][A-Z0-9_]*)"', path.read_text()))
    assert len(reasons) > 30
    assert sorted(reasons - set(WORDS["reasons"])) == []
    for code, words in WORDS["codes"].items():
        assert set(words) == set(LOCALES), code
        assert code_pb2.Code.Value(code)


def test_a_field_violation_is_said_in_chinese_beside_its_english() -> None:
    """A form shows what is wrong with a field beside it, in the caller's
    language where the table has the words; the English stays as it was."""
    bad = error_details_pb2.BadRequest()
    for field, description in (
        ("ticket.subject", "must be at most 200 characters"),
        ("ticket.contact.email", "is required for EMAIL updates"),
        ("ticket.odd", "something the table has no words for"),
    ):
        bad.field_violations.add(field=field, description=description)
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="bad")
    status.details.add().Pack(bad)

    def violations(locale: str) -> list[error_details_pb2.BadRequest.FieldViolation]:
        found = error_details_pb2.BadRequest()
        localized(status, locale).details[0].Unpack(found)
        return list(found.field_violations)

    zh = violations("zh-CN")
    assert [v.description for v in zh] == [v.description for v in bad.field_violations]
    assert [v.localized_message.message for v in zh] == [
        "不能超过 200 个字符。",
        "选择邮件通知时必须填写电子邮箱。",
        "",
    ]
    assert all(not v.HasField("localized_message") for v in violations("en"))


def test_every_field_text_has_chinese_words_that_keep_its_parts() -> None:
    for english, words in WORDS["fields"].items():
        parts = set(re.findall(r"\{(\w+)\}", english))
        assert set(re.findall(r"\{(\w+)\}", words["zh-CN"])) <= parts, english


@pytest.mark.parametrize(
    ("description", "chinese"),
    [
        ("image evidence may be at most 20 MiB", "文件太大：这类附件最大 20 MiB。"),
        ("the upload has no content", "上传的文件是空的。"),
        (
            "the file is a Windows executable; evidence must be an image, a video or a PDF",
            "附件只能是图片、视频或 PDF，这个文件都不是。",
        ),
        (
            "the bytes are image/png, not image/jpeg",
            "文件的实际类型是 image/png，与声明的 image/jpeg 不符。",
        ),
    ],
)
def test_an_upload_refused_is_said_in_chinese_beside_the_file_field(
    description: str, chinese: str
) -> None:
    """What the evidence service says of a file it refuses, as a Chinese
    reader's upload form shows it (sizes as people read them)."""
    assert field_words(description, "zh-CN") == chinese


def test_an_upload_limit_is_given_in_mebibytes() -> None:
    assert [_mib(n) for n in (20 << 20, 500 << 20, 3 << 19)] == ["20 MiB", "500 MiB", "1.5 MiB"]


@pytest.mark.parametrize(
    "description",
    [
        "is required for a counter-notice",
        "names no item the notice took down (its infringing_items)",
        "names an item listed before it",
        "names no item: give its URL or content id, or leave it out",
        "must be a question_id a flow step gave, e.g. login/what/0",
        "must not be in the form of sealed personal data (pd1.… or pd2.…)",
    ],
)
def test_what_a_counter_notice_a_guide_or_any_text_is_refused_for_is_said_in_chinese(
    description: str,
) -> None:
    assert field_words(description, "zh-CN")
