"""A case whose personal data a retention timer erases once it has ended.

`ExpiringCase` is the base of a case aggregate (a ticket, a copyright case)
that expires: its service destroys the case's own keys (`personal.keys`,
`CaseApplication.expire_case`) and then calls `expire`, which records
`ExpiringCase.Expired`. From then on the aggregate shows the personal texts
it keeps (`kept_personal`) as erased, whatever a process's memory still
holds of the destroyed keys, and its commands refuse to run
(`require_not_expired`).

The event is the library's one class for every case type (stored under
the topic `casemesh.platform.expiring:ExpiringCase.Expired`): match on
`ExpiringCase.Expired`, not on a subclass the aggregate seems to have.
"""

from __future__ import annotations

from typing import ClassVar

from eventsourcing.domain import Aggregate, event

from casemesh.platform.acts import Act
from casemesh.platform.errors import FailedPrecondition
from casemesh.platform.personal import ERASED, PersonalEvent


class ExpiringCase(Aggregate):
    # Set by `Expired`; cases recorded before retention existed read False.
    expired = False
    # The personal texts the aggregate itself keeps, by path into its state.
    kept_personal: ClassVar[PersonalEvent]

    def has_ended(self) -> bool:
        """Whether the case ended, or ends by itself unless changed (a
        decided case at the end of its window for an appeal)."""
        raise NotImplementedError

    def require_expirable(self) -> None:
        """Refuses to expire a case that has not ended, or expired already
        (asked before its keys are destroyed)."""
        if not self.has_ended():
            raise FailedPrecondition("the case has not ended", reason="CASE_NOT_ENDED")
        self.require_not_expired()

    def expire(self, *, actor: str) -> None:
        """Records that the retention period of this ended case ran out; the
        application destroys its case keys once this is saved
        (`CaseApplication.expire_case`)."""
        self.require_expirable()
        self._expired(actor=actor)

    class Expired(Act):
        """The retention period of the ended case ran out."""

    @event(Expired)
    def _expired(self, actor: str) -> None:
        self.expired = True
        # What its people wrote reads as erased from here on, even in a
        # process whose memory still holds the destroyed keys for a while.
        vars(self).update(self.kept_personal.rewrite(vars(self), lambda _: ERASED))

    def require_not_expired(self) -> None:
        """Refuses a change to an expired case."""
        if self.expired:
            raise FailedPrecondition(
                "the case's retention period ran out and its personal details were erased",
                reason="CASE_EXPIRED",
            )
