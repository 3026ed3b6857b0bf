"""The statement of reasons a decision on a copyright appeal carries: the
ground and the facts it rests on, whether automated means found the content
or made the decision, and, once the decision is recorded, the redress open to
the parties and the deadline to appeal it (none for the decision on an appeal,
which is final on the platform).

A statement is built by `StatementOfReasons.check`, which names every field
that is wrong at once (as `reasons.<field>`), so a statement the rules refuse
never exists. The service completes it when the decision is recorded
(`completed`), and the case's `Decided` event keeps it as a plain dict
(`to_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from casemesh.platform.errors import Violations
from casemesh.rules import tickets as rules

# The statement's texts and their limits.
TEXTS = (("ground", 500), ("facts", 5000))


@dataclass(frozen=True)
class StatementOfReasons:
    ground: str
    facts: str
    automated_detection: bool = False
    automated_decision: bool = False
    # Filled in by the service when the decision is recorded (`completed`);
    # no deadline for the decision on an appeal.
    redress: str = ""
    appeal_deadline: datetime | None = None

    @classmethod
    def check(cls, v: Violations, reasons: Mapping[str, Any]) -> StatementOfReasons | None:
        """The statement an agent gave, or None when it breaks a rule: then
        each violation, named by its field, is added to `v`."""
        found = Violations()
        for key, limit in TEXTS:
            rules.text(found, f"reasons.{key}", reasons.get(key, ""), limit=limit)
        if found:
            v.extend(found)
            return None
        return cls(
            ground=reasons.get("ground", ""),
            facts=reasons.get("facts", ""),
            automated_detection=bool(reasons.get("automated_detection")),
            automated_decision=bool(reasons.get("automated_decision")),
        )

    def completed(self, *, redress: str, appeal_deadline: datetime | None) -> StatementOfReasons:
        """The statement as the decision records it: with the redress open to
        the parties and the deadline to appeal (None when the decision is
        final on the platform)."""
        return replace(self, redress=redress, appeal_deadline=appeal_deadline)

    def to_dict(self) -> dict[str, Any]:
        """The dict a `Decided` event keeps, the deadline in ISO 8601."""
        d: dict[str, Any] = {
            "ground": self.ground,
            "facts": self.facts,
            "automated_detection": self.automated_detection,
            "automated_decision": self.automated_decision,
        }
        if self.redress or self.appeal_deadline is not None:
            d["redress"] = self.redress
        if self.appeal_deadline is not None:
            d["appeal_deadline"] = self.appeal_deadline.isoformat()
        return d
