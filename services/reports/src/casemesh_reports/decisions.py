"""Agents' work on a case: assigning it, deciding it with a statement of
reasons, voiding it; and the consequences of an appeal the appeals service
upheld (`lodge_appeal` and `reverse`, idempotent on the appeal id, called by
the `consume` command).

A decision is saved with every report of the case (each reporter's outcome)
and the standing of every reporter judged to have misused reporting, in one
transaction, so nobody is told something the store does not hold; a reversal
likewise with the reports and standings it changes. An agent who loses a race
gets ABORTED and reads the case again; an agent's change sent under a request
id is safe to retry (`CaseApplication.change`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from casemesh.platform.cases import Retry
from casemesh.platform.errors import InvalidArgument, Violations, own_case
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.rules import tickets as rules
from casemesh_reports.base import AGENT_WORK, ReportsBase, case_parties
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, TrustedFlagger
from casemesh_reports.statement import StatementOfReasons, source_identity

log = get_logger(__name__)

# A reversal that loses a race on its case reads it again, up to this many
# times in all: the winner has committed, so the next read sees it.
REVERSAL_ATTEMPTS = 3


class Decisions(ReportsBase):
    def assign(self, who: Identity, ident: str, assignee: str, request_id: str = "") -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        assignee = rules.assignee(v, assignee)
        v.raise_if_any()

        def assign(case: ReportCase) -> None:
            # Handing one's own case to a colleague is what a party should do.
            refuse_own_case(assignee or who.subject, case, by=who.subject)
            case.assign(actor=who.subject, assignee=assignee or who.subject)

        return self.change_under(who, ident, "", request_id, assign, "assign", assignee=assignee)

    def decide(
        self,
        who: Identity,
        ident: str,
        outcome: str,
        statement: dict[str, Any],
        uploader: dict[str, Any] | None,
        unfounded_names: list[str],
        etag: str,
        request_id: str = "",
    ) -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        if outcome not in ("ACTION_TAKEN", "NO_VIOLATION"):
            v.add("outcome", "must be ACTION_TAKEN or NO_VIOLATION")
        unfounded = [
            resource_id(n, "reports", f"manifestly_unfounded_reports[{i}]")
            for i, n in enumerate(unfounded_names)
        ]
        seen: set[str] = set()  # linear: a case may hold thousands of reports
        for i, report in enumerate(unfounded):
            if report in seen:
                v.add(f"manifestly_unfounded_reports[{i}]", "names a report already named")
            seen.add(report)
        if uploader is not None and outcome == "NO_VIOLATION":
            v.add("affected_uploader", "is only for ACTION_TAKEN: no violation names nobody")
        retry = Retry.of(
            request_id,
            who,
            "decide",
            outcome=outcome,
            statement=statement,
            uploader=uploader,
            unfounded=unfounded,
        )
        # A decision sent again gets its first answer, even where the statement's
        # date checks would no longer pass (a retry just after midnight, UTC).
        if (earlier := self.changed_before(who, ident, retry)) is not None:
            return earlier
        if outcome == "ACTION_TAKEN":
            if unfounded:
                v.add(
                    "manifestly_unfounded_reports",
                    "only reports of a case decided NO_VIOLATION can be manifestly unfounded",
                )
            if not uploader:
                v.add(
                    "affected_uploader",
                    "action taken names the uploader who receives the statement",
                )
            else:
                rules.check_party(v, uploader, "affected_uploader")
                if not uploader.get("user_id"):
                    v.add("affected_uploader.user_id", "is required")
        reasons = StatementOfReasons.check(
            v, statement, outcome=outcome, keywords=self.taxonomy.keywords, now=self.clock.now()
        )
        v.raise_if_any()
        assert reasons is not None  # no violations: the statement was built
        made: list[list[Aggregate]] = []  # what the decision changed, once made

        def decide(case: ReportCase) -> list[Aggregate]:
            # Naming themselves the uploader, they would decide on their own content.
            named = (uploader or {}).get("user_id")
            refuse_own_case(who.subject, case, also=[named] if named else [])
            made.append(self._decided(who, case, outcome, reasons, uploader, unfounded))
            return made[0]

        case = self.change(who, ident, etag, decide, retry)
        if made:  # not an earlier answer given again
            log.info("report_case.decided", case_id=ident, outcome=outcome, reports=len(made[0]))
        return case

    def _decided(
        self,
        who: Identity,
        case: ReportCase,
        outcome: str,
        reasons: StatementOfReasons,
        uploader: dict[str, Any] | None,
        unfounded: list[str],
    ) -> list[Aggregate]:
        """Decides the case; the reports and reporters' standings it changed."""
        in_case = {r["id"] for r in case.reports}
        for i, report_id in enumerate(unfounded):
            if report_id not in in_case:
                raise InvalidArgument.field(
                    f"manifestly_unfounded_reports[{i}]", f"reports/{report_id} is not in this case"
                )
        # A case has one uploader: the one an earlier decision named stays its
        # party (their restrictions, statement and listing hang on it), so a
        # decision of the case reopened on appeal may not move it to someone
        # else. (A case not open is refused as such by `decide`.)
        named = (case.uploader or {}).get("user_id", "")
        if (
            uploader is not None
            and named
            and uploader.get("user_id") != named
            and not case.has_ended()
        ):
            raise InvalidArgument.field(
                "affected_uploader.user_id",
                f"must be {named}, the uploader an earlier decision of this case named",
            )
        now = self.clock.now()
        deadline = self.policy.appeal_deadline(now)
        locale = (uploader or {}).get("locale", "en")
        trusted = self._trusted_names(case)
        # The statement as the decision records it: what the service knows and
        # the agent did not write.
        full = replace(
            reasons,
            category=reasons.category or dsa_category(case),
            source_type="SOURCE_TRUSTED_FLAGGER" if trusted else "SOURCE_ARTICLE_16",
            source_identity=source_identity(trusted),
            puid=case.target["id"],
            redress=self.policy.redress_for(reasons.territorial_scope, locale),
            appeal_deadline=deadline,
        )
        case.decide(
            actor=who.subject,
            outcome=outcome,
            statement=full,
            uploader=uploader if outcome == "ACTION_TAKEN" else None,
            unfounded=unfounded,
            at=now,
        )
        # What the reporter is told of automation and of each restriction's end
        # (DSA Art. 16(6)); a no-violation statement says nothing of automation.
        told = {
            "restriction_terms": [r.to_dict() for r in full.restrictions],
            **(
                {
                    "automated_detection": full.automated_detection,
                    "automated_decision": full.automated_decision,
                }
                if full.action_taken
                else {}
            ),
        }
        changed: list[Aggregate] = []
        for entry in case.reports:
            report: AbuseReport = self.repository.get(UUID(entry["id"]))
            if report.state.value != "SUBMITTED":
                continue
            is_unfounded = entry["id"] in unfounded
            report.resolve(
                actor=who.subject,
                outcome={
                    "outcome": outcome,
                    "restrictions": [r.type for r in full.restrictions],
                    "decision_facts": full.decision_facts,
                    "manifestly_unfounded": is_unfounded,
                    "redress": self.policy.redress_for(
                        full.territorial_scope, report.contact.get("locale", "en")
                    ),
                    "appeal_deadline": deadline.isoformat(),
                    "case_id": str(case.id),
                    **told,
                },
                at=now,
            )
            changed.append(report)
            if is_unfounded:
                standing = self._get(Reporter, Reporter.create_id(report.reporter))
                if standing is None:
                    standing = Reporter(
                        user_id=report.reporter,
                        report_id=entry["id"],
                        at=now,
                        filed_at=report.received_at,
                    )
                    standing.apply_rule(at=now, contact=report.contact, rule=self.policy.misuse)
                else:
                    standing.count_unfounded(
                        report_id=entry["id"],
                        at=now,
                        filed_at=report.received_at,
                        contact=report.contact,
                        rule=self.policy.misuse,
                    )
                changed.append(standing)
        return changed

    def void(self, who: Identity, ident: str, reason: str, request_id: str = "") -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        reason = rules.text(v, "reason", reason, limit=500)
        v.raise_if_any()

        def void(case: ReportCase) -> list[Aggregate]:
            refuse_own_case(who.subject, case)
            case.void(actor=who.subject, reason=reason, at=self.clock.now())
            changed: list[Aggregate] = []
            for entry in case.reports:
                report: AbuseReport = self.repository.get(UUID(entry["id"]))
                if report.state.value == "SUBMITTED":
                    report.void(actor=who.subject, reason=reason)
                    changed.append(report)
            return changed

        return self.change_under(who, ident, "", request_id, void, "void", reason=reason)

    # -- appeals (from the appeals service's events; idempotent) ----------------------

    def lodge_appeal(
        self, case_id: str, appeal: str, appellant: str, filed_at: datetime | None = None
    ) -> bool:
        """Records the appeal, filed at `filed_at` (its event's time; when it
        is heard, if not given): it appeals the decision standing then, however
        late it is heard."""
        case = self._get(ReportCase, UUID(case_id))
        if case is None or not case.lodge_appeal(
            appeal=appeal, appellant=appellant, at=filed_at or self.clock.now()
        ):
            return False
        self.save(case)  # a lost race raises; the event is consumed again
        return True

    def reverse(self, case_id: str, appeal: str) -> bool:
        """An upheld appeal, in one transaction with its consequences: when it
        overturns the decision standing, each report's outcome, and the misuse
        counts a no-violation decision gave (and any suspension they led to),
        whether or not the case goes back to review. A reversal that loses a
        race on the case (a report opened the next round, which the case
        records, or another appeal was applied) reads it again; after
        REVERSAL_ATTEMPTS the event is consumed again."""
        for _ in range(REVERSAL_ATTEMPTS - 1):
            try:
                return self._reverse(case_id, appeal)
            except IntegrityError:
                log.info("report_case.reversal_raced", case_id=case_id, appeal=appeal)
        return self._reverse(case_id, appeal)  # a lost race raises: consumed again

    def _reverse(self, case_id: str, appeal: str) -> bool:
        case = self._get(ReportCase, UUID(case_id))
        if case is None:
            return False
        was = case.decision
        result = case.reverse(
            appeal=appeal, at=self.clock.now(), reported_since=self._reported_since(case)
        )
        if result is None:
            return False
        lifted, reopened, overturned = result
        changed: list[Aggregate] = [case]
        if overturned:
            for entry in case.reports:
                report: AbuseReport = self.repository.get(UUID(entry["id"]))
                if report.state.value in ("ACTION_TAKEN", "NO_VIOLATION"):
                    report.reverse(
                        actor="system",
                        appeal=appeal,
                        lifted=[r["type"] for r in lifted],
                        reopened=reopened,
                    )
                    changed.append(report)
        if overturned and was is not None:
            now = self.clock.now()
            for entry in case.reports:
                if entry["id"] in was["unfounded"]:
                    standing = self._get(Reporter, Reporter.create_id(entry["reporter"]))
                    if standing is not None and standing.withdraw(report_id=entry["id"], now=now):
                        changed.append(standing)
        self.save(*changed)
        log.info(
            "report_case.reversed",
            case_id=case_id,
            appeal=appeal,
            reopened=reopened,
            lifted=len(lifted),
        )
        return True

    def _reported_since(self, case: ReportCase) -> bool:
        """Whether the case's target was reported since, in the next round:
        as the case records it (`ReportCase.next_case_id`), or, for a round
        stored before rounds recorded their next one, as that round's case
        is found."""
        if case.next_case_id:
            return True
        later = ReportCase.create_id(case.target, case.category, case.round_no + 1)
        return self._get(ReportCase, later) is not None

    def _trusted_names(self, case: ReportCase) -> list[str]:
        names = []
        for entry in case.reports:
            if entry.get("trusted"):
                flagger = self._get(TrustedFlagger, TrustedFlagger.create_id(entry["reporter"]))
                names.append(flagger.display_name if flagger else entry["reporter"])
        return sorted(set(names))


def refuse_own_case(
    agent: str, case: ReportCase, *, by: str = "", also: list[str] | None = None
) -> None:
    """Refuses (PERMISSION_DENIED, OWN_CASE) work on the case by `agent`
    when they are a party to it (`case_parties`: one of its reporters, or the
    uploader a decision named) or one of `also`. A reporter deciding their
    own report, or an uploader their own content, is no review: they could
    lift their own restrictions, or count other reporters' reports as
    manifestly unfounded (the appeals service refuses its parties alike).
    `by` is the agent giving them the case: when that is someone else, the
    refusal names the party it would go to."""
    if agent in {*case_parties(case), *(also or [])}:
        raise own_case(agent, by, "this case (one of its reporters or the uploader)")


def dsa_category(case: ReportCase) -> str:
    """The DSA category most of the case's reports map to (the first on a tie)."""
    votes = Counter(entry.get("dsa") or case.dsa_category for entry in case.reports)
    return votes.most_common(1)[0][0]
