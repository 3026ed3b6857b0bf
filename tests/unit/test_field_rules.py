"""The field rules written in the protos, as the gateway applies them: the same
bad request gets the same field violations the hand-written checks gave, and
every annotated field is refused by name."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import protovalidate
import pytest
from google.protobuf.message import Message
from protobuf import Oneof

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh.platform.localized import field_words
from casemesh.rules import tickets as rules
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import evidence_pb2 as epb
from casemesh.v1 import helpcenter_pb2 as hpb
from casemesh.v1 import tickets_pb2 as tpb
from casemesh_gateway import checks, fieldrules
from tests.field_rules import (
    BAD_TICKET,
    BAD_TICKET_VIOLATIONS,
    CASES,
    PUBLIC,
    annotated_fields,
    field_of,
)
from tests.support import memory_sealer


def refused(request: Message, check: checks.Check = checks.nothing) -> list[tuple[str, str]]:
    """What the gateway's checks say of a request, in its order: the annotations,
    then the rules kept in code."""
    v = Violations()
    fieldrules.check(request, v)
    check(request, v)
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    return [(f.field, f.description) for f in info.value.violations]


def test_the_same_bad_ticket_gets_the_same_field_violations_as_before() -> None:
    answered = refused(BAD_TICKET, checks.create_ticket)
    assert sorted(answered) == sorted(BAD_TICKET_VIOLATIONS)
    assert len(answered) == len(BAD_TICKET_VIOLATIONS)


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("", "must not be empty"),
        (" \u3000\n", "must not be empty"),
        ("长" * 201, "must be at most 200 characters"),
        ("长" * 201 + "\n", "must be at most 200 characters"),
        ("bad\x00subject", "must not contain control characters or line breaks"),
        ("tab\tinside", "must not contain control characters or line breaks"),
    ],
)
def test_a_field_breaking_several_rules_is_named_once_for_the_first(
    value: str, description: str
) -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = value
    subject = [d for f, d in refused(request) if f == "ticket.subject"]
    assert subject == [description]


def test_text_around_a_field_is_trimmed_before_its_rules_apply() -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = "\t一行\n"
    request.ticket.description = "  第一行\n第二行\r\n"
    assert not [f for f, _ in refused(request) if f in ("ticket.subject", "ticket.description")]


def test_a_text_at_its_limit_with_spaces_around_it_is_measured_trimmed() -> None:
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject = "长" * 200 + " "
    request.ticket.description = "描" * 10_000 + "\n\n"
    assert not [f for f, _ in refused(request) if f in ("ticket.subject", "ticket.description")]


def test_every_annotated_field_has_a_request_breaking_it() -> None:
    covered = {field_of(request, path) for request, path in CASES}
    assert annotated_fields() - covered == set()


@pytest.mark.parametrize(
    ("request_", "path"), CASES, ids=[f"{type(r).__name__}.{p}" for r, p in CASES]
)
def test_each_annotated_rule_names_its_field(request_: Message, path: str) -> None:
    assert path in [f for f, _ in refused(request_)]


def test_the_rules_compile_for_every_public_request() -> None:
    fieldrules.warm(
        service for module in PUBLIC for service in module.DESCRIPTOR.services_by_name.values()
    )


SESSION = "help-sessions/01234567-89ab-cdef-0123-456789abcdef"
ARTICLE = hpb.Article(name="articles/faq", category="other.general", title="FAQ", body="…")


@pytest.mark.parametrize(
    ("request_", "violations"),
    [
        (
            hpb.CreateArticleRequest(
                article=hpb.Article(
                    name="articles/Login",
                    locale="fr",
                    category="account.login",
                    title="line one\nline two",
                    body=" \u3000",
                    keywords="k" * 1001,
                )
            ),
            [
                ("article.name", "must be articles/{slug} (lower-case letters, digits and '-')"),
                ("article.locale", "must be one of zh-CN, en"),
                ("article.title", "must not contain control characters or line breaks"),
                ("article.body", "must not be empty"),
                ("article.keywords", "must be at most 1000 characters"),
            ],
        ),
        (
            hpb.GetArticleRequest(name="articles/faq", version=-1),
            [("version", "must be a version number (0: the current)")],
        ),
        (
            hpb.PublishArticleRequest(name="articles/faq", version=-1),
            [("version", "must be a version number (0: the latest)")],
        ),
        (
            hpb.UpdateArticleRequest(article=ARTICLE, base_version=0),
            [("base_version", "is the latest version you read")],
        ),
        (
            hpb.SearchArticlesRequest(query="", session="help-sessions/1", page_size=-1),
            [
                ("query", "must not be empty"),
                ("session", "must be help-sessions/{id}"),
                ("page_size", "must not be negative (0 for the default)"),
            ],
        ),
        (
            hpb.StartPhoneChangeRequest(
                old_phone="138", new_phone=" +8613800138000 ", locale="fr", request_id="a b"
            ),
            # The numbers are the service's to read (libphonenumber).
            [
                ("locale", "must be one of zh-CN, en"),
                ("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'"),
            ],
        ),
        (
            hpb.ConfirmPhoneChangeRequest(name="phone-changes/1", code="１２３ ４５６"),
            [("name", "must be phone-changes/{id}"), ("code", "must be the six digits we sent")],
        ),
        (
            epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name=" \t")),
            [("metadata.file_name", "must not be empty")],
        ),
        (epb.GetEvidenceRequest(name="evidence/not-a-uuid"), [("name", "must be evidence/{id}")]),
        (epb.ReadEvidenceRequest(), [("name", "must be evidence/{id}")]),
    ],
    ids=lambda r: type(r).__name__ if isinstance(r, Message) else "",
)
def test_help_centre_and_evidence_requests_are_refused_in_their_services_words(
    request_: Message, violations: list[tuple[str, str]]
) -> None:
    assert refused(request_) == violations


@pytest.mark.parametrize(
    "request_",
    [
        # Empty optional fields take the service's defaults.
        hpb.SearchArticlesRequest(query="视频传不上去"),
        hpb.GetArticleRequest(name="articles/login-no-sms-code"),
        hpb.CreateArticleRequest(
            article=hpb.Article(name="articles/a1", category="x", title="t", body="b")
        ),
        # ResolveHelp's other fields count only when the session is not solved (code).
        hpb.ResolveHelpRequest(session=SESSION, solved=True, locale="fr", subject="x" * 201),
        # Only the name's last segment is the file's name: the service judges it.
        epb.UploadEvidenceRequest(metadata=epb.EvidenceMetadata(file_name="folder/")),
        # A chunk's size and type are the service's to judge as it streams.
        epb.UploadEvidenceRequest(chunk=b"\x00" * (2 << 20)),
        hpb.StartPhoneChangeRequest(
            old_phone="\u3000+8613800138000\n", new_phone="+8613900139000", request_id="c1"
        ),
        hpb.StartPhoneChangeRequest(
            old_phone="138 0013 8000", new_phone="13900139000", request_id="c2"
        ),
        # A code as a Chinese input method types it (full-width), or pasted
        # with a line break: the service reads it as the six digits.
        hpb.ConfirmPhoneChangeRequest(
            name="phone-changes/01234567-89ab-cdef-0123-456789abcdef", code="１２３４５６"
        ),
        hpb.ConfirmPhoneChangeRequest(
            name="phone-changes/01234567-89ab-cdef-0123-456789abcdef", code="\u3000123456\n"
        ),
    ],
    ids=lambda r: type(r).__name__,
)
def test_help_centre_and_evidence_requests_their_services_take_pass(request_: Message) -> None:
    v = Violations()
    fieldrules.check(request_, v)
    v.raise_if_any()


def test_a_violation_inside_a_repeated_field_names_the_item() -> None:
    # No annotated rule sits inside a list today; one that does names the item.
    inside = protovalidate.Violation(
        field=protovalidate.FieldPathPb(
            elements=[
                protovalidate.FieldPathElementPb(field_name="notice"),
                protovalidate.FieldPathElementPb(
                    field_name="infringing_items",
                    subscript=Oneof[Literal["index"], int]("index", 2),
                ),
            ]
        ),
        rule_id="not_blank",
    )
    assert fieldrules._path(inside) == "notice.infringing_items[2]"


async def test_a_large_request_is_checked_off_the_event_loop_with_the_same_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads: list[object] = []
    real = asyncio.to_thread

    async def to_thread(fn: Any, *args: Any) -> Any:
        threads.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(asyncio, "to_thread", to_thread)
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    for i in range(10_000):
        request.ticket.evidence.add(name=f"evidence/{i}")
    assert request.ByteSize() > fieldrules.OFF_LOOP_BYTES
    v = Violations()
    await fieldrules.check_async(request, v)
    assert threads == [fieldrules.check]
    small = Violations()
    await fieldrules.check_async(BAD_TICKET, small)
    assert threads == [fieldrules.check]  # a usual request stays on the loop
    assert v._items == small._items != []


@pytest.mark.parametrize(
    ("subject", "description", "refused_for"),
    [
        # C1 control characters (CSI opens a terminal's escape sequences).
        (
            "bad\x9b31msubject",
            "ok",
            {"subject": "must not contain control characters or line breaks"},
        ),
        ("ok", "bad\x9b31m text", {"description": "must not contain control characters"}),
        # Unicode's line and paragraph separators break a one-line text...
        (
            "one\u2028two",
            "one\u2028two\u2029three",
            {"subject": "must not contain control characters or line breaks"},
        ),
        (
            "next\x85line",
            "next\x85line",
            {"subject": "must not contain control characters or line breaks"},
        ),
        # ...and are trimmed at its ends, as other white space is.
        ("\u2028line\u2029", "ok", {}),
        # An override of the text's direction makes a subject show other than it reads.
        (
            "invoice\u202egnp.exe",
            "invoice\u202egnp.exe",
            {"subject": "must not contain control characters or line breaks"},
        ),
        (
            # Isolates and embeddings (chat apps wrap names in them) stay.
            "\u2066isolated\u2069 \u202bembedded\u202c",
            "ok",
            {},
        ),
        # Direction marks are part of right-to-left writing.
        ("\u200fمرحبا", "\u200fمرحبا", {}),
        # Invisible format characters alone say nothing.
        (
            "\u200b\u200b",
            "\u200d\ufeff",
            {"subject": "must not be empty", "description": "must not be empty"},
        ),
        ("a\u200bb", "a\u00adb", {}),
        # Nor do the other characters no one sees: Hangul fillers (a "blank"
        # name), the blank braille pattern, variation selectors, tags.
        (
            "\u3164",
            "\u115f\u1160\uffa0 \u2800",
            {"subject": "must not be empty", "description": "must not be empty"},
        ),
        (
            "\ufe0f\u034f",
            "\U000e0041\U000e007f\u3000",
            {"subject": "must not be empty", "description": "must not be empty"},
        ),
        ("\u3164\u3163", "\U0001f44d\ufe0f", {}),
        (
            "\u200b \u200b",
            "\ufeff\u00a0\u200b\n\u200b",
            {"subject": "must not be empty", "description": "must not be empty"},
        ),
    ],
)
def test_the_gateway_and_the_service_judge_a_text_alike(
    subject: str, description: str, refused_for: dict[str, str]
) -> None:

    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.subject, request.ticket.description = subject, description
    gateway = {
        f.removeprefix("ticket."): d
        for f, d in refused(request)
        if f in ("ticket.subject", "ticket.description")
    }
    v = Violations()
    rules.text(v, "subject", subject, limit=200)
    rules.text(v, "description", description, limit=10_000)
    service: dict[str, str] = {}
    try:
        v.raise_if_any()
    except InvalidArgument as err:
        service = {f.field: f.description for f in err.violations}
    assert gateway == service == refused_for


# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt), and the
# blank braille pattern: characters no one sees.
UNSEEN = [
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
]


def test_every_character_no_one_sees_is_blank_to_the_gateway_and_the_service() -> None:
    """A text of all of them says nothing (one either judged seen would
    make it say something), to the gateway's rule and the service's check."""
    unseen = "".join(chr(c) for first, last in UNSEEN for c in range(first, last + 1))
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.description = unseen
    gateway = [d for f, d in refused(request) if f == "ticket.description"]
    v = Violations()
    rules.text(v, "description", unseen, limit=10_000)
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    service = [f.description for f in info.value.violations]
    assert gateway == service == ["must not be empty"]


def test_text_in_the_form_of_sealed_personal_data_is_refused_wherever_it_is_sent() -> None:
    """No client ever has a token (the services reveal what they answer);
    one sent in a field kept in the clear would be taken for sealed data by
    every consumer of its event, waiting for a key that never comes."""
    token = memory_sealer().sealer.sealing("mallory", None)("hello")
    assert token.startswith("pd1.")
    notice = apb.FileAppealRequest(request_id="r1")
    notice.appeal.notice.infringing_items.extend(["https://video.example/v/1", token])
    notice.appeal.notice.work.title = token
    assert sorted(refused(notice)) == [
        ("appeal.notice.infringing_items[1]", rules.SEALED_FORM),
        ("appeal.notice.work.title", rules.SEALED_FORM),
    ]
    # In a map's values too (a message of any kind: the walk is generic).
    labelled = tpb.TicketCategory(id="account.login", labels={"en": token})
    assert refused(labelled) == [('labels["en"]', rules.SEALED_FORM)]
    # Text that only mentions one, or begins alike, is text.
    said = apb.FileAppealRequest(request_id="r1")
    said.appeal.notice.work.title = f"see {token}"
    said.appeal.notice.infringing_items.append("pd1.not-a-token")
    v = Violations()
    fieldrules.check(said, v)
    v.raise_if_any()
    # The services refuse it too, in their own checks.
    v = Violations()
    rules.text(v, "appeal.notice.work.title", token, limit=500)
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    assert [(f.field, f.description) for f in info.value.violations] == [
        ("appeal.notice.work.title", rules.SEALED_FORM)
    ]


def test_a_ticket_sent_without_a_category_is_told_the_category_is_required() -> None:
    """The form sent before a category was picked: "is required", in the
    reader's language, rather than an unknown category ''."""
    request = BAD_TICKET.__class__()
    request.CopyFrom(BAD_TICKET)
    request.ticket.category = ""
    said = [d for f, d in refused(request, checks.create_ticket) if f == "ticket.category"]
    assert said == ["is required"]
    assert field_words(said[0], "zh-CN") == "必须填写。"
    # The same rule where the help centre files a ticket for a guided flow.
    v = Violations()
    rules.check_ticket_words(v, category="", subject="登录不了", description="换手机后登录不了")
    with pytest.raises(InvalidArgument) as info:
        v.raise_if_any()
    assert [(f.field, f.description) for f in info.value.violations] == [
        ("category", "is required")
    ]
    # Left empty where someone else's words go, it is not asked for.
    v = Violations()
    rules.check_ticket_words(v, category="", subject="", description="", required=False)
    assert not v
