"""The statement of reasons an appeal's decision carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from casemesh.platform.errors import InvalidArgument, Violations
from casemesh_appeals.reasons import StatementOfReasons

DEADLINE = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)


def test_each_missing_text_is_named_by_its_request_field() -> None:
    v = Violations()
    assert StatementOfReasons.check(v, {"ground": "", "facts": " "}) is None
    with pytest.raises(InvalidArgument) as refused:
        v.raise_if_any()
    assert [f.field for f in refused.value.violations] == ["reasons.ground", "reasons.facts"]


def test_a_completed_statement_keeps_the_dict_decisions_have_always_recorded() -> None:
    given = {
        "ground": "著作权法第十条",
        "facts": "同一支舞",
        "automated_detection": False,
        "automated_decision": True,
    }
    statement = StatementOfReasons.check(Violations(), given)
    assert statement is not None
    recorded = statement.completed(redress="court", appeal_deadline=DEADLINE).to_dict()
    before = {**given, "redress": "court", "appeal_deadline": DEADLINE.isoformat()}
    assert json.dumps(recorded) == json.dumps(before)
