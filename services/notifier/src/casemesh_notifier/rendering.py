"""What a party is told at each step, in their language (zh-CN, en), from the
Jinja2 files translators edit: `templates/<locale>/<step>.txt`.

A step's file has the blocks `subject` and `body` of its e-mail and `sms`
(a step sent only by SMS has no body); each is rendered on its own, all
from one context. The body is written once and laid out twice, with the
signature (`<locale>/_signature.txt`): as plain text (`_email.txt`) and as
HTML (`_email.html`: the text escaped whole, so nothing a person wrote
becomes markup, then made into paragraphs). The SMS is rendered from the
values of `Step.sms` and the case number alone: no text a person wrote can
reach an SMS, and a template that asks for one fails to render
(`StrictUndefined`).

In a template: `{{ due | date }}` writes a moment in the reader's locale and
time zone (`date("short")` for SMS), `{{ due | deadline }}` a moment by
which, or until which, something holds (one at midnight is 24:00 of the day
before: `labels.local_time`), `{{ code | label("restriction") }}` the
reader's words for a code (`labels.py`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, meta, pass_context
from jinja2.runtime import Context
from jinja2.utils import concat
from markupsafe import Markup, escape

from casemesh_notifier.labels import LOCALES, TEMPLATES, label, local_time, supported
from casemesh_notifier.steps import Step


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


@pass_context
def _date(ctx: Context, moment: date, style: str = "long") -> str:
    return local_time(moment, ctx["locale"], ctx["zone"], style, named=ctx.get("zone_named", False))


@pass_context
def _deadline(ctx: Context, moment: date, style: str = "long") -> str:
    return local_time(
        moment, ctx["locale"], ctx["zone"], style, named=ctx.get("zone_named", False), ends=True
    )


@pass_context
def _label(ctx: Context, code: str, kind: str) -> str:
    return label(kind, code, ctx["locale"])


def _paragraphs(body: str) -> Markup:
    """Escaped text as HTML: paragraphs at blank lines, a paragraph whose
    every line starts with `- ` as a list."""
    html = []
    for block in re.split(r"\n\s*\n", str(escape(body)).strip()):
        lines = block.splitlines()
        if all(line.startswith("- ") for line in lines):
            html.append("<ul>" + "".join(f"<li>{line[2:]}</li>" for line in lines) + "</ul>")
        else:
            html.append("<p>" + "<br>\n".join(lines) + "</p>")
    return Markup("\n".join(html))


_LOADER = FileSystemLoader(TEMPLATES)


def _environment(*, html: bool) -> Environment:
    env = Environment(
        loader=_LOADER,
        autoescape=html,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # The files ship with the service: read once, not checked on every message.
        auto_reload=False,
    )
    env.filters.update(date=_date, deadline=_deadline, label=_label, paragraphs=_paragraphs)
    return env


_TEXT = _environment(html=False)
_HTML = _environment(html=True)


@functools.cache
def shows_subject(step: str) -> bool:
    """Whether a message of `step`, in any locale and on any channel, shows
    the case's subject (the words of the party who named it), including
    through the files it includes; a file it names only at run time counts
    as showing it."""

    def shows(name: str) -> bool:
        source = _LOADER.get_source(_TEXT, name)[0]
        parsed = _TEXT.parse(source)
        if "subject" in meta.find_undeclared_variables(parsed):
            return True
        return any(
            included is None or shows(included)
            for included in meta.find_referenced_templates(parsed)
        )

    return any(shows(f"{locale}/{step}.txt") for locale in LOCALES)


def names() -> list[str]:
    """Every step's template, by the files of the default locale."""
    return sorted(
        p.name.removesuffix(".txt")
        for p in (TEMPLATES / supported("")).glob("*.txt")
        if not p.name.startswith("_")
    )


def _blocks(step: str, values: Mapping[str, Any], *names: str) -> list[str]:
    """The step's blocks `names` for `values`, rendered in one context (a
    block the step lacks is an error: an SMS-only step has no e-mail)."""
    template = _TEXT.get_template(f"{values['locale']}/{step}.txt")
    missing = [name for name in names if name not in template.blocks]
    if missing:
        raise TemplateError(f"{template.name} has no block {', '.join(missing)}")
    context = template.new_context(dict(values))
    return [concat(template.blocks[name](context)) for name in names]


def sms_values(step: Step, ref: str, email_chosen: bool) -> dict[str, Any]:
    """All an SMS may show: the case number, the next step's date, the
    step's SMS values, and whether the party also hears by e-mail (only
    then may a message point to their mailbox)."""
    return {"ref": ref, "due": step.due, "email_chosen": email_chosen, **step.sms}


def email_values(step: Step, ref: str, subject: str) -> dict[str, Any]:
    """What an e-mail shows: the SMS's values, the step's and the case's subject."""
    return {**step.values, **sms_values(step, ref, True), "subject": subject}


def one_line(text: str) -> str:
    return " ".join(text.split())


def render_email(step: str, locale: str, zone: ZoneInfo, values: Mapping[str, Any]) -> Email:
    """The e-mail of `step` for a reader of `locale` in `zone`."""
    shown = supported(locale)
    given = {"replies": False, **values, "locale": shown, "zone": zone}
    subject, body = _blocks(step, given, "subject", "body")
    signature = _TEXT.get_template(f"{shown}/_signature.txt").render(given)
    return Email(
        subject=one_line(subject),
        text=_TEXT.get_template("_email.txt").render(body=body, signature=signature).strip() + "\n",
        html=_HTML.get_template("_email.html").render(
            locale=shown, subject=subject, body=body, signature=signature
        ),
    )


def render_sms(
    step: str, locale: str, zone: ZoneInfo, values: Mapping[str, Any], *, zone_named: bool = False
) -> str:
    """The SMS of `step`: only the values given here are there to show.
    `zone_named`: its times say their offset (the zone is not known to be
    the reader's: their number tells none)."""
    given = {**values, "locale": supported(locale), "zone": zone, "zone_named": zone_named}
    (sms,) = _blocks(step, given, "sms")
    return one_line(sms)
