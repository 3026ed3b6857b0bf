"""Masking of contact details, so logs and public events never carry them whole."""

from __future__ import annotations

import re
from typing import Any

# Any local part (Unicode too) up to the @.
_EMAIL = re.compile(r"([^\s@<>(),;:\"'])[^\s@<>(),;:\"']*@([\w.-]+\.\w{2,})")
# Chinese, Japanese and Korean characters: word characters to a regular
# expression, yet such text runs on without spaces, so a number touching them
# stands alone ("电话13800138000"), as one after a space does.
_SPACELESS = (
    "\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
)
# A phone-like run of digits that is not part of a longer token: no letter,
# digit, '_' or '-' of a word written with spaces on either side (ids such as
# UUIDs and order numbers like ORD20251201001 stay readable).
_IN_TOKEN = rf"[^\W{_SPACELESS}]"
_PHONE = re.compile(rf"(?<!{_IN_TOKEN})(?<!-)\+?\d[\d\s-]{{6,}}\d(?!{_IN_TOKEN})(?!-)")


# A date written with dashes is a phone-like run to `_PHONE`, and no contact.
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")


def holds_contact(text: str) -> bool:
    """Whether free text holds an e-mail address or a phone-like number
    (what `mask_text` masks, but a date such as 2026-12-01)."""
    if _EMAIL.search(text):
        return True
    return any(not _DATE.fullmatch(m.group(0)) for m in _PHONE.finditer(text))


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    if not domain:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(number: str) -> str:
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= 4:
        return "*" * len(digits)
    prefix = "+" if number.startswith("+") else ""
    keep_head = 2 if prefix else 0
    head = "".join(digits[:keep_head])
    tail = "".join(digits[-4:])
    return f"{prefix}{head}{'*' * (len(digits) - keep_head - 4)}{tail}"


def mask_text(text: str) -> str:
    """Masks every e-mail address and phone-like number inside free text."""
    text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v) for v in value]
    return value
