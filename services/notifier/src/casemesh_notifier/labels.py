"""The words a template's parameters are made of, in the party's language
(zh-CN, en): dates, the kind of thing reported, and the statement of reasons
an uploader receives. The templates themselves are in `templates.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo


def local_date(moment: datetime | None, locale: str) -> str:
    """A due date as the party reads it (China time for zh-CN)."""
    if moment is None:
        return ""
    if locale == "zh-CN":
        d = moment.astimezone(ZoneInfo("Asia/Shanghai"))
        return f"{d.year}年{d.month}月{d.day}日 {d:%H:%M}（北京时间）"
    return moment.astimezone(ZoneInfo("UTC")).strftime("%d %B %Y, %H:%M UTC").lstrip("0")


TARGET_WORDS = {
    "VIDEO": ("视频", "video"),
    "COMMENT": ("评论", "comment"),
    "ACCOUNT": ("账号", "account"),
    "LIVE_STREAM": ("直播", "live stream"),
    "AD": ("广告", "ad"),
}


def target_word(target_type: str, locale: str) -> str:
    """What a reported item is (`VIDEO`: 视频, video)."""
    zh, en = TARGET_WORDS.get(target_type, ("内容", "item"))
    return zh if locale == "zh-CN" else en


def restriction_lines(restrictions: Any, until_word: str = "until") -> str:
    """One line per restriction: `- visibility removed (until 2026-03-09 04:00 UTC)`."""
    lines = []
    for r in restrictions:
        name = r.type.replace("DECISION_", "").replace("_", " ").lower()
        until = (
            f" ({until_word} {r.end_time.ToDatetime(UTC):%Y-%m-%d %H:%M} UTC)"
            if r.HasField("end_time")
            else ""
        )
        lines.append(f"- {name}{': ' + r.other if r.other else ''}{until}")
    return "\n".join(lines)


STATEMENT_LABELS = {
    "en": {
        "restrictions": "Restrictions",
        "illegal": "Illegal content; legal ground",
        "terms": "Against our terms",
        "facts": "Facts relied on",
        "category": "Category",
        "applies": "Applies from",
        "detection": "Detected",
        "automated": "by automated means",
        "reported": "through user reports",
        "decision": "Decision",
        "FULLY": "fully automated",
        "PARTIALLY": "partly automated",
        "human": "taken by a person",
        "redress": "Redress",
        "none": "none",
        "until": "until",
    },
    "zh-CN": {
        "restrictions": "处理措施",
        "illegal": "违法内容，法律依据",
        "terms": "违反平台规则",
        "facts": "所依据的事实",
        "category": "类别",
        "applies": "生效日期",
        "detection": "发现方式",
        "automated": "自动化识别",
        "reported": "用户举报",
        "decision": "决定方式",
        "FULLY": "完全自动化",
        "PARTIALLY": "部分自动化",
        "human": "人工审核",
        "redress": "救济途径",
        "none": "无",
        "until": "截至",
    },
}


def statement_text(s: Any, locale: str) -> str:
    """The statement of reasons as the affected uploader reads it (DSA Art. 17)."""
    t = STATEMENT_LABELS.get(locale, STATEMENT_LABELS["en"])
    if s.decision_ground == "DECISION_GROUND_ILLEGAL_CONTENT":
        ground = (
            f"{t['illegal']}: {s.illegal_content_legal_ground}\n{s.illegal_content_explanation}"
        )
    else:
        ground = (
            f"{t['terms']}: {s.incompatible_content_ground}\n{s.incompatible_content_explanation}"
        )
    how = t.get(s.automated_decision.removeprefix("AUTOMATED_DECISION_"), t["human"])
    restrictions = restriction_lines(s.restrictions, t["until"]) or f"- {t['none']}"
    return (
        f"{t['restrictions']}:\n{restrictions}\n\n{ground}\n\n"
        f"{t['facts']}: {s.decision_facts}\n\n"
        f"{t['category']}: {s.category}\n{t['applies']}: {s.application_date}\n"
        f"{t['detection']}: {t['automated'] if s.automated_detection else t['reported']}\n"
        f"{t['decision']}: {how}\n\n{t['redress']}: {s.redress}"
    )
