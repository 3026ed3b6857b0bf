"""Every refusal a client may act on carries a stable reason: each
FAILED_PRECONDITION, ABORTED, ALREADY_EXISTS and RESOURCE_EXHAUSTED raised in
any service or the shared platform names one (it travels as
google.rpc.ErrorInfo)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [
    "services/tickets/src",
    "services/appeals/src",
    "services/reports/src",
    "services/gateway/src",
    "services/helpcenter/src",
    "services/casequeue/src",
    "services/evidence/src",
    "libs/casemesh/src/casemesh/platform",
]
ACTIONABLE = {"FailedPrecondition", "Aborted", "AlreadyExists", "ResourceExhausted"}


def raised() -> list[tuple[str, ast.Call]]:
    calls = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                # `Aborted(...)` or `errors.Aborted(...)`
                name = getattr(node.func, "id", "") or getattr(node.func, "attr", "")
                if name in ACTIONABLE:
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return calls


def test_every_actionable_refusal_names_a_stable_reason() -> None:
    calls = raised()
    assert len(calls) > 25  # the scan finds them
    missing = [where for where, call in calls if not any(k.arg == "reason" for k in call.keywords)]
    assert missing == []


def test_reasons_are_upper_snake_literals() -> None:
    for where, call in raised():
        (reason,) = [k.value for k in call.keywords if k.arg == "reason"]
        assert isinstance(reason, ast.Constant) and isinstance(reason.value, str), where
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", reason.value), where
