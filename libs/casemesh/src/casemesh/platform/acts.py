"""The events that record only who acted (`Act`), or who acted and the
reason they gave (`ReasonedAct`): a ticket closed or reopened, an appeal
withdrawn, a case expired.

A case aggregate declares such an event as a subclass with a docstring
saying what happened, and applies it as it would any other:

    class Reopened(ReasonedAct):
        \"\"\"A solved ticket opened again.\"\"\"

    @event(Reopened)
    def _reopened(self, actor: str, reason: str) -> None: ...

The aggregate's metaclass redefines the subclass under the aggregate, so an
event's topic (`module:Aggregate.Name`) and its stored fields are what they
would be had it declared them itself. Whether a reason is personal data is
the aggregate's to say, in its table of personal fields: a requester's
reason for reopening a ticket is, and sealed; an agent's for voiding a
report is not.
"""

from __future__ import annotations

from eventsourcing.domain import Aggregate


class Act(Aggregate.Event):
    """Something a person (or `system`, for a timer) did to the aggregate."""

    actor: str


class ReasonedAct(Act):
    """An act and the reason its actor gave for it."""

    reason: str
