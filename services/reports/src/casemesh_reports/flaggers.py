"""The trusted-flagger list (DSA Art. 22), kept by agents: a flagger's
reports in their areas of expertise are marked as theirs and weigh more in
triage (see `filing`), so no agent may put themselves on it. Both changes
are safe to retry under a request id: a retry answers as the first call did
(a repeated remove too, not NOT_FOUND), and the id sent for another change
is ALREADY_EXISTS (`Retry`; ids are per flagger, only the flagger's own
events carry them)."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import IntegrityError

from casemesh.platform.cases import Retry, stamp
from casemesh.platform.errors import Aborted, NotFound, PermissionDenied, Violations
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh_reports.base import AGENT_WORK, ReportsBase
from casemesh_reports.domain import TrustedFlagger

# In messages: "… a different change to this trusted flagger".
FLAGGER = "trusted flagger"


class Flaggers(ReportsBase):
    def set_flagger(
        self,
        who: Identity,
        user_id: str,
        display_name: str,
        areas: list[str],
        request_id: str = "",
    ) -> TrustedFlagger:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        user_id = rules.text(v, "flagger.user_id", user_id, limit=128, single_line=True)
        display_name = rules.text(
            v, "flagger.display_name", display_name, limit=200, single_line=True
        )
        if not areas:
            v.add("flagger.areas", "name at least one reason category of their expertise")
        for i, area in enumerate(areas):
            if area not in self.taxonomy.categories:
                v.add(f"flagger.areas[{i}]", f"{area[:60]!r} is not a reason category")
        v.raise_if_any()
        if user_id == who.subject:
            # Their own reports would weigh more in the triage they work.
            raise PermissionDenied(
                "an agent may not make themselves a trusted flagger; another agent may",
                metadata={"field": "flagger.user_id"},
            )
        areas = sorted(set(areas))
        retry = Retry.of(
            request_id, who, "set_flagger", user_id=user_id, display_name=display_name, areas=areas
        )
        flagger: TrustedFlagger | None = self._get(
            TrustedFlagger, TrustedFlagger.create_id(user_id)
        )
        answered = flagger and retry and self.answered(flagger, retry, FLAGGER)
        if answered:
            return answered
        if flagger is None:
            flagger = TrustedFlagger(
                user_id=user_id, display_name=display_name, areas=areas, actor=who.subject
            )
        else:
            same = flagger.active and (flagger.display_name, flagger.areas) == (display_name, areas)
            # Under a request id, a change that repeats the entry is recorded
            # all the same: a retry finds its id (`answered`) rather than
            # making it again over the changes since.
            if retry is not None or not same:
                flagger.change(display_name=display_name, areas=areas, actor=who.subject)
        stamp(flagger, retry)
        return self._save_flagger(flagger, retry)

    def remove_flagger(self, who: Identity, user_id: str, request_id: str = "") -> None:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        user_id = rules.text(v, "user_id", user_id, limit=128, single_line=True)
        v.raise_if_any()
        retry = Retry.of(request_id, who, "remove_flagger", user_id=user_id)
        flagger = self._get(TrustedFlagger, TrustedFlagger.create_id(user_id))
        if flagger and retry and self.answered(flagger, retry, FLAGGER) is not None:
            return
        if flagger is None or not flagger.active:
            raise NotFound(f"{user_id!r} is not a trusted flagger")
        flagger.remove(actor=who.subject)
        stamp(flagger, retry)
        self._save_flagger(flagger, retry)

    def _save_flagger(self, flagger: TrustedFlagger, retry: Retry | None) -> TrustedFlagger:
        """Saves the change; one that lost a race to its own first send (a retry
        under the same request id) answers as that one did."""
        try:
            self.save(flagger)
        except IntegrityError:
            now = self._get(TrustedFlagger, flagger.id) if retry else None
            earlier = self.answered(now, retry, FLAGGER) if now and retry else None
            if earlier is not None:
                return earlier  # type: ignore[no-any-return]
            raise Aborted(
                "someone changed the trusted flagger at the same moment; read it again and retry",
                reason="CONCURRENT_CHANGE",
            ) from None
        return flagger

    def list_flaggers(self, who: Identity) -> list[dict[str, Any]]:
        self.require_agent(who, AGENT_WORK)
        self._caught_up()
        return self.view.flaggers()
