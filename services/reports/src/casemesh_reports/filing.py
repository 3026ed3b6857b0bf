"""Filing a report: check what the reporter sent, refuse a suspended
reporter, and save the report together with the case it joins (or opens).

The case of a target and reason category is found by its derived id, round
after round; a report and its case are saved in one transaction (a report
that opens the next round with the round before, which records it), and a
filing that loses a race with another report of the same case, or with an
upheld appeal reopening the round before, pauses a moment and looks again,
from the round it last saw."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from casemesh.platform.cases import same_request
from casemesh.platform.errors import Aborted, AlreadyExists, FailedPrecondition, Violations
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.rules import tickets as rules
from casemesh_reports.base import ReportsBase
from casemesh_reports.domain import OPEN_CASE, AbuseReport, ReportCase, Reporter, TrustedFlagger
from casemesh_reports.policy import Category
from casemesh_reports.targets import check_target

log = get_logger(__name__)

TEXT_LIMIT = 5000
# Why a child-safety report's evidence is refused (`_check_draft`).
CHILD_SAFETY_EVIDENCE = (
    "must be empty for a child-safety reason: the reported item's id or link"
    " identifies the content; do not capture or upload a copy of it"
)
# A filing that loses a race to another report of its case pauses, then
# looks again, up to FILING_ATTEMPTS times in all: at random up to a ceiling
# that doubles with each loss (full jitter, in seconds), so that the reports
# crowding onto a popular target spread out instead of colliding again at
# once. Capped, as the filing holds a worker thread while it waits: at most
# about 1.3 s of pauses in all before the caller is told to retry.
FILING_ATTEMPTS = 12
FIRST_PAUSE, LONGEST_PAUSE = 0.005, 0.2
# The longest a filing waits for its target's turn (`_TURNS`) in one attempt.
TURN_WAIT_S = 0.5


@dataclass(frozen=True)
class ReportDraft:
    request_id: str
    target: dict[str, str]
    category: str
    subcategory: str
    explanation: str
    evidence: list[dict[str, str]]
    good_faith: bool
    contact: dict[str, Any]


class Filing(ReportsBase):
    def file(self, who: Identity, draft: ReportDraft) -> AbuseReport:
        ident = AbuseReport.create_id(who.subject, draft.request_id)
        # A retry gets the report it filed, even where the checks would now
        # refuse it (the reasons offered changed since).
        existing = self._replayed(ident, draft)
        if existing is not None:
            return existing
        target = self._check_draft(draft)
        draft = ReportDraft(**{**vars(draft), "target": target})
        now = self.clock.now()
        standing = self._get(Reporter, Reporter.create_id(who.subject))
        until = standing.suspended(now) if standing else None
        if until is not None:
            raise FailedPrecondition(
                "reporting is suspended until "
                f"{until.astimezone(UTC).isoformat(timespec='minutes')} after repeated "
                "manifestly unfounded reports",
                reason="REPORTING_SUSPENDED",
                metadata={"until": until.astimezone(UTC).isoformat()},
            )
        flagger = self._get(TrustedFlagger, TrustedFlagger.create_id(who.subject))
        trusted = bool(flagger and flagger.covers(draft.category))
        category = self.taxonomy.categories[draft.category]
        seen_round = 1
        # Filings of one target in this process take turns to read and save
        # its case: on a viral video they would otherwise race each other and
        # lose. The turn is let go for the pauses (those are for races with
        # other replicas), and waited for a bounded time: the filings share
        # the service's worker threads with every other call.
        turn = _turn_of(target, draft.category)
        for attempt in range(FILING_ATTEMPTS):
            if attempt:
                time.sleep(retry_pause(attempt))
            if not turn.acquire(timeout=TURN_WAIT_S):
                continue  # counted as a lost race: ABORTED once all are spent
            try:
                filed = self._attempt(who, draft, ident, target, category, trusted, now, seen_round)
            finally:
                turn.release()
            if isinstance(filed, AbuseReport):
                return filed
            seen_round = filed
        raise Aborted(
            "the case of this target is changing quickly; retry", reason="CONCURRENT_CHANGE"
        )

    def _attempt(
        self,
        who: Identity,
        draft: ReportDraft,
        ident: UUID,
        target: dict[str, str],
        category: Category,
        trusted: bool,
        now: datetime,
        since: int,
    ) -> AbuseReport | int:
        """One try at filing: the report filed (or found filed under its
        request id), or, having lost a race to another filing, the round to
        look again from."""
        case = self._current_case(target, draft.category, since)
        reason = self.taxonomy.reason(draft.category, draft.subcategory)
        assert reason is not None
        entry = {
            "id": str(ident),
            "reporter": who.subject,
            "at": now,
            "trusted": trusted,
            "dsa": reason.dsa_category,
        }
        # The round before the one this report opens, which records it.
        previous: ReportCase | None = None
        if case is None or case.state not in OPEN_CASE:
            round_no = case.round_no + 1 if case else 1
            previous = case
            case = ReportCase(
                target=target,
                category=draft.category,
                round_no=round_no,
                lane="CHILD_SAFETY" if category.child_safety else "ORDINARY",
                severity=category.severity,
                dsa_category=reason.dsa_category,
                first_report=entry,
                base_priority=self.taxonomy.triage.base(category.severity, 1, trusted),
            )
            if previous is not None:
                previous.record_next_round(next_case_id=str(case.id))
        else:
            earlier = case.report_of(who.subject)
            # This very request, filed by a call that was still saving it when
            # this one looked (a client's retry that overtook the answer).
            filed = self._replayed(ident, draft) if earlier == str(ident) else None
            if filed is not None:
                return filed
            if earlier is not None:
                raise AlreadyExists(
                    f"you already reported this for {draft.category}: reports/{earlier}",
                    reason="ALREADY_REPORTED",
                )
            reporters = len(case.reporters) + 1
            case.add_report(
                report=entry,
                base_priority=self.taxonomy.triage.base(
                    category.severity, reporters, trusted or case.trusted
                ),
            )
        report = AbuseReport(
            reporter=who.subject,
            request_id=draft.request_id,
            request_fingerprint=self.fingerprint(draft),
            target=target,
            category=draft.category,
            subcategory=draft.subcategory,
            explanation=draft.explanation,
            evidence=draft.evidence,
            contact=draft.contact,
            source="TRUSTED_FLAGGER" if trusted else "ARTICLE_16",
            case_id=str(case.id),
            filed_at=now,
        )
        try:
            self.save(report, case, *([previous] if previous is not None else []))
        except IntegrityError:
            existing = self._replayed(ident, draft)
            if existing is not None:
                return existing
            # The case moved on under us (or its round was opened by another
            # report, or the round before was reopened on appeal, which this
            # report then joins): look again, from the last round seen.
            return (case if previous is None else previous).round_no
        log.info(
            "report.filed",
            report_id=str(report.id),
            case_id=str(case.id),
            category=draft.category,
            trusted=trusted,
        )
        return report

    def _check_draft(self, draft: ReportDraft) -> dict[str, str]:
        v = Violations()
        if not rules.REQUEST_ID.match(draft.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        target = check_target(v, draft.target, self.link_hosts)
        if draft.category in self.taxonomy.elsewhere:
            v.add("report.reason.category", self.taxonomy.elsewhere[draft.category])
        elif self.taxonomy.reason(draft.category, draft.subcategory) is None:
            if draft.category not in self.taxonomy.categories:
                v.add("report.reason.category", "is not a reason category (ListReportReasons)")
            else:
                v.add(
                    "report.reason.subcategory",
                    f"is not a reason of {draft.category} (ListReportReasons)",
                )
        rules.text(v, "report.explanation", draft.explanation, limit=TEXT_LIMIT)
        category = self.taxonomy.categories.get(draft.category)
        # The child-safety lane takes no copy: its target (id or link)
        # identifies the content, and capturing and uploading child sexual
        # abuse material is itself an offence in most jurisdictions; nor is
        # one to be kept on the platform's evidence store, shown to agents
        # or exported with the reporter's data.
        if category and category.child_safety:
            if draft.evidence:
                v.add("report.evidence", CHILD_SAFETY_EVIDENCE)
        elif not draft.evidence:
            v.add("report.evidence", "attach at least one piece of evidence you uploaded")
        elif len(draft.evidence) > rules.MAX_EVIDENCE:
            v.add("report.evidence", f"at most {rules.MAX_EVIDENCE} pieces of evidence")
        if not draft.good_faith:
            v.add(
                "report.good_faith_statement",
                "a report states that it is accurate and made in good faith",
            )
        if draft.contact.get("locale") not in rules.LOCALES:
            v.add("report.locale", f"must be one of {', '.join(rules.LOCALES)}")
        rules.check_contact(v, draft.contact, prefix="report.contact.")
        v.raise_if_any()
        return target

    def _replayed(self, ident: UUID, draft: ReportDraft) -> AbuseReport | None:
        """The report filed under this request id (None: none is), if it
        asked the same: its target as kept (a link without its query);
        another request under the id is ALREADY_EXISTS."""
        report: AbuseReport | None = self._get(AbuseReport, ident)
        if report is None:
            return None
        kept = check_target(Violations(), draft.target, self.link_hosts)
        if not same_request(report.request_fingerprint, replace(draft, target=kept)):
            raise AlreadyExists(
                f"request_id {draft.request_id!r} was already used for a different report",
                reason="REQUEST_ID_REUSED",
            )
        return report

    def _current_case(
        self, target: dict[str, str], category: str, since: int = 1
    ) -> ReportCase | None:
        """The latest round's case of this target and category (None: never
        reported), looked for from round `since` on (1, or a round seen
        opened). Rounds open one after another, so the latest is the one
        before the first never opened; it is read last, just before the
        filing saves it: the less time between reading a case and saving it,
        the fewer races a filing on a popular target loses."""
        latest = since
        while self._get(ReportCase, ReportCase.create_id(target, category, latest + 1)) is not None:
            latest += 1
        found: ReportCase | None = self._get(
            ReportCase, ReportCase.create_id(target, category, latest)
        )
        if found is not None and found.next_case_id:  # opened since the look above
            return self._current_case(target, category, latest + 1)
        return found


# Turns taken by filings in this process, by a hash of target and category
# (two targets may share one: a few milliseconds' wait).
_TURNS = [threading.Lock() for _ in range(64)]


def _turn_of(target: dict[str, str], category: str) -> threading.Lock:
    return _TURNS[hash((tuple(sorted(target.items())), category)) % len(_TURNS)]


def retry_pause(attempt: int) -> float:
    """Seconds to pause before attempt number `attempt` (1: the first retry)."""
    return random.uniform(0, min(LONGEST_PAUSE, FIRST_PAUSE * 2 ** (attempt - 1)))
