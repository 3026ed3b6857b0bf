"""The reports application: filing, triage, decisions and their consequences.

A report and the case it joins are saved in one transaction; a decision is
saved with every report of the case (each reporter's outcome) and the standing
of every reporter judged to have misused reporting, in one transaction too, so
nobody is told something the store does not hold. Races are decided by the
aggregates' versions: a filing that loses retries; an agent who loses gets
ABORTED and reads the case again.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import EnvType

from casemesh.platform.caseindex import Page
from casemesh.platform.cases import (
    CaseApplication,
    fingerprint,
    page_after,
    page_size_of,
    paged,
    same_request,
)
from casemesh.platform.clock import Clock
from casemesh.platform.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Violations,
)
from casemesh.platform.eventstore import postgres_env, schema_lock, side_table
from casemesh.platform.grpcutil import resource_id
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.rules import tickets as rules
from casemesh_reports.domain import (
    OPEN_CASE,
    AbuseReport,
    ReportCase,
    Reporter,
    TrustedFlagger,
)
from casemesh_reports.policy import ReportsPolicy
from casemesh_reports.statement import StatementOfReasons
from casemesh_reports.views import ReportsView

log = get_logger(__name__)

TEXT_LIMIT = 5000
AGENT_WORK = "work report cases"
FILING_ATTEMPTS = 8
TARGET_TYPES = ("VIDEO", "COMMENT", "ACCOUNT", "LIVE_STREAM", "AD")
# Ids the platform gives its items (the DSA's `puid` alphabet).
PUID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Links to items: the last path segments that carry the id, per target type.
LINKS: dict[str, re.Pattern[str]] = {
    "VIDEO": re.compile(r"^/(?:@[^/]+/)?video/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "COMMENT": re.compile(r"^/(?:@[^/]+/)?video/[A-Za-z0-9_-]+/comment/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "ACCOUNT": re.compile(r"^/(?:@|user/)(?P<id>[A-Za-z0-9_-]+)/?$"),
    "LIVE_STREAM": re.compile(r"^/(?:@[^/]+/)?live/(?P<id>[A-Za-z0-9_-]+)/?$"),
    "AD": re.compile(r"^/ad/(?P<id>[A-Za-z0-9_-]+)/?$"),
}


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


class Reports(CaseApplication[ReportCase]):
    """On PostgreSQL, open with `open_reports`, which hands in the view its
    lists are read from; constructed bare, it runs in memory without lists
    (the application tests)."""

    name = "reports"
    collection = "report-cases"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        view: ReportsView | None = None,
        clock: Clock,
        policy: ReportsPolicy,
        link_hosts: tuple[str, ...] = (),
    ) -> None:
        super().__init__(env)
        self.clock = clock
        self.policy = policy
        self.taxonomy = policy.taxonomy
        self.link_hosts = link_hosts
        self.reports_view = view

    def visible_to(self, case: ReportCase, who: Identity) -> bool:
        return who.subject in case_parties(case)

    @property
    def view(self) -> ReportsView:
        if self.reports_view is None:
            raise RuntimeError("the reports view is handed in by open_reports")
        return self.reports_view

    # -- filing ----------------------------------------------------------------

    def file(self, who: Identity, draft: ReportDraft) -> AbuseReport:
        target = self._check_draft(draft)
        draft = ReportDraft(**{**vars(draft), "target": target})
        ident = AbuseReport.create_id(who.subject, draft.request_id)
        existing = self._replayed(ident, draft)
        if existing is not None:
            return existing
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
        for _ in range(FILING_ATTEMPTS):
            case = self._current_case(target, draft.category)
            reason = self.taxonomy.reason(draft.category, draft.subcategory)
            assert reason is not None
            entry = {
                "id": str(ident),
                "reporter": who.subject,
                "at": now,
                "trusted": trusted,
                "dsa": reason.dsa_category,
            }
            if case is None or case.state not in OPEN_CASE:
                round_no = case.round_no + 1 if case else 1
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
            else:
                earlier = case.report_of(who.subject)
                if earlier is not None:
                    raise AlreadyExists(
                        f"you already reported this for {draft.category}: reports/{earlier}"
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
                request_fingerprint=fingerprint(draft),
                target=target,
                category=draft.category,
                subcategory=draft.subcategory,
                explanation=draft.explanation,
                evidence=draft.evidence,
                contact=draft.contact,
                source="TRUSTED_FLAGGER" if trusted else "ARTICLE_16",
                case_id=str(case.id),
            )
            try:
                self.save(report, case)
            except IntegrityError:
                existing = self._replayed(ident, draft)
                if existing is not None:
                    return existing
                continue  # the case moved on under us: look again
            log.info(
                "report.filed",
                report_id=str(report.id),
                case_id=str(case.id),
                category=draft.category,
                trusted=trusted,
            )
            return report
        raise Aborted("the case of this target is changing quickly; retry")

    def _check_draft(self, draft: ReportDraft) -> dict[str, str]:
        v = Violations()
        if not rules.REQUEST_ID.match(draft.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        target = self._check_target(v, draft.target)
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
        if not draft.evidence:
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

    def _check_target(self, v: Violations, target: dict[str, str]) -> dict[str, str]:
        kind, ident, url = target.get("type", ""), target.get("id", ""), target.get("url", "")
        if kind not in TARGET_TYPES:
            v.add("report.target.type", f"must be one of {', '.join(TARGET_TYPES)}")
            return target
        canonical = ""
        if url:
            linked, canonical = self._read_link(v, kind, url)
            if linked and ident and linked != ident:
                v.add(
                    "report.target.url",
                    f"links to {kind.lower()} {linked}, not to report.target.id {ident[:60]}",
                )
            ident = ident or linked
        if not ident:
            if not url:
                v.add("report.target.id", "give the id of what you report, or its link (url)")
            return target
        if not PUID.fullmatch(ident):
            v.add("report.target.id", "must be 1–128 letters, digits, '-' or '_'")
        return {"type": kind, "id": ident, "url": canonical}

    def _read_link(self, v: Violations, kind: str, url: str) -> tuple[str, str]:
        """The item id a link names, and the link without its query (which
        often identifies whoever shared it)."""
        field = "report.target.url"
        problems = Violations()
        rules.text(problems, field, url, limit=2000, single_line=True)
        if problems:
            v.add(field, "must be one line of at most 2000 characters, without control characters")
            return "", ""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            v.add(field, "is not a valid link")
            return "", ""
        if parts.scheme not in ("http", "https") or host not in self.link_hosts:
            v.add(field, f"must be a link to this platform ({', '.join(self.link_hosts)})")
            return "", ""
        found = LINKS[kind].match(parts.path)
        if found is None:
            v.add(field, f"is not a link to a {kind.lower().replace('_', ' ')}")
            return "", ""
        return found["id"], f"https://{host}{parts.path}"

    def _replayed(self, ident: UUID, draft: ReportDraft) -> AbuseReport | None:
        report: AbuseReport | None = self._get(AbuseReport, ident)
        if report is not None and not same_request(report.request_fingerprint, draft):
            raise AlreadyExists(
                f"request_id {draft.request_id!r} was already used for a different report"
            )
        return report

    def _current_case(self, target: dict[str, str], category: str) -> ReportCase | None:
        """The latest round's case of this target and category (None: never reported)."""
        latest = None
        round_no = 1
        while True:
            case = self._get(ReportCase, ReportCase.create_id(target, category, round_no))
            if case is None:
                return latest
            latest = case
            round_no += 1

    # -- agents: triage and decisions ---------------------------------------------

    def assign(self, who: Identity, ident: str, assignee: str) -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        assignee = rules.text(v, "assignee", assignee, limit=128, required=False, single_line=True)
        v.raise_if_any()
        case = self._case(ident)
        case.assign(actor=who.subject, assignee=assignee or who.subject)
        self._save_or_abort(case)
        return case

    def decide(
        self,
        who: Identity,
        ident: str,
        outcome: str,
        statement: dict[str, Any],
        uploader: dict[str, Any] | None,
        unfounded_names: list[str],
        etag: str,
    ) -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        if outcome not in ("ACTION_TAKEN", "NO_VIOLATION"):
            v.add("outcome", "must be ACTION_TAKEN or NO_VIOLATION")
        unfounded = [
            resource_id(n, "reports", f"manifestly_unfounded_reports[{i}]")
            for i, n in enumerate(unfounded_names)
        ]
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
        case = self._case(ident)
        if rules.stale(etag, case.version):
            raise Aborted("the case changed since you read it; read it again and retry")
        in_case = {r["id"] for r in case.reports}
        for i, report_id in enumerate(unfounded):
            if report_id not in in_case:
                raise InvalidArgument.field(
                    f"manifestly_unfounded_reports[{i}]", f"reports/{report_id} is not in this case"
                )
        now = self.clock.now()
        deadline = self.policy.appeal_deadline(now)
        locale = (uploader or {}).get("locale", "en")
        trusted = self._trusted_names(case)
        full = reasons.completed(
            category=reasons.category or dsa_category(case),
            source_type="SOURCE_TRUSTED_FLAGGER" if trusted else "SOURCE_ARTICLE_16",
            source_identity=", ".join(trusted),
            puid=case.target["id"],
            redress=self.policy.redress.get(locale, ""),
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
        changed: list[Aggregate] = [case]
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
                    "redress": self.policy.redress.get(report.contact.get("locale", "en"), ""),
                    "appeal_deadline": deadline.isoformat(),
                    "case_id": str(case.id),
                },
                at=now,
            )
            changed.append(report)
            if is_unfounded:
                standing = self._get(Reporter, Reporter.create_id(report.reporter))
                if standing is None:
                    standing = Reporter(user_id=report.reporter, report_id=entry["id"], at=now)
                    standing.apply_rule(at=now, contact=report.contact, rule=self.policy.misuse)
                else:
                    standing.count_unfounded(
                        report_id=entry["id"],
                        at=now,
                        contact=report.contact,
                        rule=self.policy.misuse,
                    )
                changed.append(standing)
        self._save_or_abort(*changed)
        log.info("report_case.decided", case_id=ident, outcome=outcome, reports=len(changed) - 1)
        return case

    def void(self, who: Identity, ident: str, reason: str) -> ReportCase:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        reason = rules.text(v, "reason", reason, limit=500)
        v.raise_if_any()
        case = self._case(ident)
        case.void(actor=who.subject, reason=reason, at=self.clock.now())
        changed: list[Aggregate] = [case]
        for entry in case.reports:
            report: AbuseReport = self.repository.get(UUID(entry["id"]))
            if report.state.value == "SUBMITTED":
                report.void(actor=who.subject, reason=reason)
                changed.append(report)
        self._save_or_abort(*changed)
        return case

    # -- appeals (from the appeals service's events; idempotent) ----------------------

    def lodge_appeal(self, case_id: str, appeal: str, appellant: str) -> bool:
        case = self._get(ReportCase, UUID(case_id))
        if case is None or not case.lodge_appeal(
            appeal=appeal, appellant=appellant, at=self.clock.now()
        ):
            return False
        self.save(case)  # a lost race raises; the event is consumed again
        return True

    def reverse(self, case_id: str, appeal: str) -> bool:
        """An upheld appeal, in one transaction with its consequences: each
        report's outcome, and, when a no-violation decision is reopened, the
        misuse counts it gave (and any suspension they led to)."""
        case = self._get(ReportCase, UUID(case_id))
        if case is None:
            return False
        was = case.decision
        result = case.reverse(appeal=appeal, at=self.clock.now())
        if result is None:
            return False
        lifted, reopened = result
        changed: list[Aggregate] = [case]
        if lifted or reopened:
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
        if reopened and was is not None:
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

    # -- trusted flaggers ------------------------------------------------------------

    def set_flagger(
        self, who: Identity, user_id: str, display_name: str, areas: list[str]
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
        areas = sorted(set(areas))
        flagger: TrustedFlagger | None = self._get(
            TrustedFlagger, TrustedFlagger.create_id(user_id)
        )
        if flagger is None:
            flagger = TrustedFlagger(
                user_id=user_id, display_name=display_name, areas=areas, actor=who.subject
            )
        elif (flagger.active, flagger.display_name, flagger.areas) != (True, display_name, areas):
            flagger.change(display_name=display_name, areas=areas, actor=who.subject)
        self._save_or_abort(flagger)
        return flagger

    def remove_flagger(self, who: Identity, user_id: str) -> None:
        self.require_agent(who, AGENT_WORK)
        v = Violations()
        user_id = rules.text(v, "user_id", user_id, limit=128, single_line=True)
        v.raise_if_any()
        flagger = self._get(TrustedFlagger, TrustedFlagger.create_id(user_id))
        if flagger is None or not flagger.active:
            raise NotFound(f"{user_id!r} is not a trusted flagger")
        flagger.remove(actor=who.subject)
        self._save_or_abort(flagger)

    def list_flaggers(self, who: Identity) -> list[dict[str, Any]]:
        self.require_agent(who, AGENT_WORK)
        self._caught_up()
        return self.view.flaggers()

    # -- queries -------------------------------------------------------------------------

    def get_report(self, who: Identity, ident: str) -> AbuseReport:
        report: AbuseReport | None = self._get(AbuseReport, UUID(ident))
        if report is None or not (who.is_agent or report.reporter == who.subject):
            raise NotFound(f"reports/{ident} not found")
        return report

    def list_reports(
        self, who: Identity, page_size: int, page_token: str, case_name: str
    ) -> Page[dict[str, Any]]:
        limit = page_size_of(page_size)
        after = page_after(page_token)
        case_id = None
        if case_name:
            if not who.is_agent:
                raise PermissionDenied("listing a case's reports needs the agent role")
            case_id = resource_id(case_name, "report-cases", "report_case")
        self._caught_up()
        docs = self.view.reports(
            reporter=None if who.is_agent else who.subject,
            case_id=case_id,
            after=after,
            limit=limit + 1,
        )
        return paged(docs, limit)

    def get_case(self, who: Identity, ident: str) -> ReportCase:
        return self.load_visible(who, ident)

    def list_cases(
        self,
        who: Identity,
        page_size: int,
        page_token: str,
        lane: str,
        states: list[str],
        category: str,
    ) -> Page[dict[str, Any]]:
        self.require_agent(who, AGENT_WORK)
        limit = page_size_of(page_size)
        try:
            after = decode_queue_token(page_token)
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token this API gave") from None
        if category and category not in self.taxonomy.categories:
            raise InvalidArgument.field("category", "is not a reason category")
        self._caught_up()
        docs = self.view.cases(
            lane=lane,
            states=states or [s.value for s in OPEN_CASE],
            category=category,
            after=after,
            limit=limit + 1,
        )
        token = ""
        if len(docs) > limit:
            docs = docs[:limit]
            last = docs[-1]
            token = encode_queue_token(
                last["ordinary"], datetime.fromisoformat(last["rank_time"]), last["id"]
            )
        return Page(docs, token)

    def my_restrictions(self, who: Identity) -> list[dict[str, Any]]:
        self._caught_up()
        return self.view.restricting(who.subject)

    def transparency(
        self, who: Identity, start: datetime | None, end: datetime | None
    ) -> dict[str, Any]:
        self.require_agent(who, AGENT_WORK)
        if start and end and start >= end:
            raise InvalidArgument.field("end_time", "must be after start_time")
        self._caught_up()
        return self.view.transparency(start, end)

    # -- helpers --------------------------------------------------------------------------

    def _get(self, cls: type[Any], ident: UUID) -> Any:
        try:
            found: Any = self.repository.get(ident)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, cls) else None

    def _case(self, ident: str) -> ReportCase:
        case: ReportCase | None = self._get(ReportCase, UUID(ident))
        if case is None:
            raise NotFound(f"report-cases/{ident} not found")
        return case

    def _trusted_names(self, case: ReportCase) -> list[str]:
        names = []
        for entry in case.reports:
            if entry.get("trusted"):
                flagger = self._get(TrustedFlagger, TrustedFlagger.create_id(entry["reporter"]))
                names.append(flagger.display_name if flagger else entry["reporter"])
        return sorted(set(names))

    def _save_or_abort(self, *aggregates: Aggregate) -> None:
        try:
            self.save(*aggregates)
        except IntegrityError:
            raise Aborted(
                "someone changed the case at the same moment (a new report may have "
                "joined it); read it again and retry"
            ) from None

    def _caught_up(self) -> None:
        try:
            self.view.wait(self.name, self.recorder.max_notification_id(), timeout=3.0)
        except TimeoutError:
            log.warning("reports_view.lagging")


def encode_queue_token(ordinary: bool, rank_time: datetime, ident: str) -> str:
    raw = f"{int(ordinary)}|{rank_time.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_queue_token(token: str) -> tuple[bool, datetime, str] | None:
    """None for the first page; ValueError for a token this API did not give."""
    if not token:
        return None
    try:
        ordinary, ts, ident = base64.urlsafe_b64decode(token.encode()).decode().split("|")
    except (UnicodeDecodeError, binascii.Error) as exc:
        raise ValueError(token) from exc
    if ordinary not in ("0", "1"):
        raise ValueError(token)
    return ordinary == "1", datetime.fromisoformat(ts), str(UUID(ident))


def dsa_category(case: ReportCase) -> str:
    """The DSA category most of the case's reports map to (the first on a tie)."""
    votes = Counter(entry.get("dsa") or case.dsa_category for entry in case.reports)
    return votes.most_common(1)[0][0]


def case_parties(case: ReportCase) -> list[str]:
    """Users who may read a case: its reporters and, once named, the uploader."""
    found = list(case.reporters)
    if case.uploader and case.uploader.get("user_id"):
        found.append(case.uploader["user_id"])
    return found


def open_reports(
    database_url: str,
    *,
    clock: Clock,
    policy: ReportsPolicy,
    link_hosts: tuple[str, ...] = (),
    pool_size: int = 10,
) -> Reports:
    with schema_lock(database_url):
        app = Reports(
            env=postgres_env(database_url, pool_size=pool_size),
            clock=clock,
            policy=policy,
            link_hosts=link_hosts,
        )
        triage = policy.taxonomy.triage
        app.reports_view = side_table(app, lambda datastore: ReportsView(datastore, triage))
    return app
