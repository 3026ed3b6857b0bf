"""A refusal carries the words a front end shows a person, in the language the
caller reads (google.rpc.LocalizedMessage): zh-CN or en, from `accept-language`."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
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


def _named(node: ast.expr | None, name: str) -> bool:
    """`node` is `name`, or `module.name`."""
    return (isinstance(node, ast.Name) and node.id == name) or (
        isinstance(node, ast.Attribute) and node.attr == name
    )


def _bindings(scope: ast.AST) -> Iterator[tuple[str, ast.expr]]:
    """The names `scope` binds, each with the value it binds."""
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.NamedExpr) and node.value:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value


def _texts(node: ast.expr, known: dict[str, list[str]]) -> list[str]:
    """The texts `node` may say, an f-string's parts as `{name}` (as the
    `[fields]` keys write them) but for a constant text, put in as it reads;
    none when it is not made of texts written here."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        said = ""
        for part in node.values:
            if not isinstance(part, ast.FormattedValue):
                said += str(getattr(part, "value", ""))
                continue
            name = getattr(part.value, "id", getattr(part.value, "attr", ""))
            constant = known.get(name, []) if name.isupper() else []
            said += constant[0] if len(constant) == 1 else "{%s}" % (name.lower() or "value")
        return [said]
    if isinstance(node, ast.IfExp):
        return _texts(node.body, known) + _texts(node.orelse, known)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _texts(node.left, known) for b in _texts(node.right, known)]
    if isinstance(node, ast.Name | ast.Attribute):
        return known.get(node.id if isinstance(node, ast.Name) else node.attr, [])
    return []


class _FieldTexts(ast.NodeVisitor):
    """Finds the descriptions of field violations: given to `add` on a
    Violations (a parameter annotated so, or a name bound to a new one; a
    set's or a query's `add` is none), to `InvalidArgument.field` or to a
    `FieldViolation`."""

    def __init__(self, constants: dict[str, list[str]]) -> None:
        self.scopes: list[tuple[set[str], dict[str, list[str]]]] = [(set(), constants)]
        self.found: list[tuple[int, str]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        collectors = {p.arg for p in params if _named(p.annotation, "Violations")}
        strings: dict[str, list[str]] = {}
        for name, value in _bindings(node):
            if isinstance(value, ast.Call) and _named(value.func, "Violations"):
                collectors.add(name)
            elif said := _texts(value, self.scopes[0][1]):
                strings.setdefault(name, []).extend(said)
        self.scopes.append((collectors, strings))
        self.generic_visit(node)
        self.scopes.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        collectors = set().union(*(c for c, _ in self.scopes))
        if len(node.args) == 2 and (
            (
                isinstance(f, ast.Attribute)
                and f.attr == "add"
                and isinstance(f.value, ast.Name)
                and f.value.id in collectors
            )
            or (
                isinstance(f, ast.Attribute)
                and f.attr == "field"
                and _named(f.value, "InvalidArgument")
            )
            or _named(f, "FieldViolation")
        ):
            known: dict[str, list[str]] = {}
            for _, strings in self.scopes:
                known.update(strings)
            self.found += [(node.lineno, t) for t in _texts(node.args[1], known)]
        self.generic_visit(node)


def field_texts(sources: dict[str, str]) -> list[tuple[str, str]]:
    """Each field violation's description in `sources` (path: code), with
    where it is written. Module constants are known across modules, as the
    code imports them (read twice: one may be made of another's)."""
    trees = {path: ast.parse(code) for path, code in sources.items()}
    constants: dict[str, list[str]] = {}
    for _ in range(2):
        constants = {
            name: said
            for tree in trees.values()
            for stmt in tree.body
            for name, value in _bindings(stmt)
            if name.isupper() and (said := _texts(value, constants))
        }
    found = []
    for path, tree in trees.items():
        scan = _FieldTexts(constants)
        scan.visit(tree)
        found += [(f"{path}:{line}", text) for line, text in scan.found]
    return found


def test_the_scan_finds_field_violations_and_nothing_else() -> None:
    code = """
LIMIT = 50
TOO_MANY = f"at most {LIMIT} items"
BOUNDS = "from 10 to 60"

def check(v: Violations, where: Where, seen: set[str]) -> None:
    where.add("state = %s", "OPEN")
    seen.add("x")
    v.add("a", "is required")
    v.add("b", TOO_MANY)
    found = errors.Violations()
    found.add("c", f"is not the code we sent; {left} attempts left")
    wrong = f"must be {kind}/{{id}}"
    raise InvalidArgument.field("d", wrong)

def other(v: Any) -> None:
    v.add("e", "not a Violations: not a field's")
    errors.InvalidArgument.field("f", f"must be {BOUNDS}")
    FieldViolation("g", "must not contain control characters" + (" or line breaks" if one else ""))
    FieldViolation("h", f"{item[:60]!r} is not one of {names}")
"""
    assert [text for _, text in field_texts({"x.py": code})] == [
        "is required",
        "at most {limit} items",
        "is not the code we sent; {left} attempts left",
        "must be {kind}/{id}",
        "must be from 10 to 60",
        "must not contain control characters or line breaks",
        "must not contain control characters",
        "{value} is not one of {names}",
    ]


def test_every_field_violation_the_code_writes_has_chinese_words() -> None:
    """A Chinese reader sees beside each field what is wrong with it in
    Chinese: a new description without words in `[fields]` fails here."""
    sources = {
        str(path.relative_to(ROOT)): path.read_text()
        for pattern in ("services/*/src/**/*.py", "libs/casemesh/src/**/*.py")
        for path in ROOT.glob(pattern)
    }
    found = field_texts(sources)
    assert len(found) > 150
    missing = sorted(f"{where}: {text}" for where, text in found if not field_words(text, "zh-CN"))
    assert missing == []


def test_each_field_text_is_said_by_its_own_words() -> None:
    """The first key that matches a description says it: a key no earlier,
    shorter one takes (`must be tickets/{id}` before the longer text that
    begins so would say that text wrongly)."""
    for english, words in WORDS["fields"].items():
        assert field_words(english, "zh-CN") == words["zh-CN"], english


@pytest.mark.parametrize(
    ("description", "chinese"),
    [
        ("must be the six digits we sent", "请输入我们发送的 6 位数字验证码。"),
        ("must differ from the old number", "不能与原手机号相同。"),
        ("is not the code we sent; 3 attempts left", "验证码不正确，还可以再试 3 次。"),
        (
            "must be tickets/{id}, appeals/{id} or report-cases/{id}",
            "必须是 tickets/{id}、appeals/{id} 或 report-cases/{id} 的形式。",
        ),
        ("must be from 10 to 3600 (0 means 600)", "必须在 10 到 3600 之间（0 表示 600）。"),
        ("must be report-cases/{id}", "必须是 report-cases/{id} 的形式。"),
        ("is not a link to a live stream", "不是直播的链接。"),
    ],
)
def test_a_phone_change_or_a_case_form_is_said_in_chinese(description: str, chinese: str) -> None:
    """What a person most often gets wrong, as the form shows it: the code
    sent to the phone, and names whose `{id}` stays as the API spells it."""
    assert field_words(description, "zh-CN") == chinese
