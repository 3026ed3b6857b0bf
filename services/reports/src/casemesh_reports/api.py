"""gRPC entry point of the reports service: decode, call one application
method (in a worker thread: the event store is synchronous), encode."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, TypeAlias, cast

import grpc
from google.protobuf import json_format

from casemesh.platform.errors import FieldViolation, InvalidArgument
from casemesh.platform.grpcutil import (
    ApplicationServicer,
    enum_filter,
    enum_name,
    from_timestamp,
    resource_id,
    to_timestamp,
)
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import evidence_pb2
from casemesh.v1 import reports_pb2 as pb
from casemesh.v1 import reports_pb2_grpc as pb_grpc
from casemesh.v1 import tickets_pb2 as tpb
from casemesh_reports.application import ReportDraft, Reports
from casemesh_reports.domain import AbuseReport, ReportCase, Reporter, TrustedFlagger
from casemesh_reports.policy import Triage

Ctx: TypeAlias = grpc.aio.ServicerContext

# The four restriction lists of the schema: (field, enum, enum prefix).
RESTRICTIONS: tuple[tuple[str, Any, str], ...] = (
    ("visibility", pb.DecisionVisibility, "DECISION_VISIBILITY_"),
    ("monetary", pb.DecisionMonetary, "DECISION_MONETARY_"),
    ("provision", pb.DecisionProvision, "DECISION_PROVISION_"),
    ("account", pb.DecisionAccount, "DECISION_ACCOUNT_"),
)


ENUMS: dict[str, Any] = {name: enum for name, enum, _ in RESTRICTIONS}

# The most report names a case carries as read (its oldest): in
# GetReportCase, the lists, and the read model's document of it. Each name
# takes about 46 bytes, so a video's 100,000 reports would take 4.6 MB, past
# the 4 MiB a gRPC message may carry: nobody could open the case. A case
# says how many it has (`reporter_count`: a user reports a case once), and
# agents page through all of them with ListReports(report_case=…).
CASE_REPORT_NAMES = 1_000


def _value(enum: Any, value: int, field: str) -> str:
    """An enum value's full name ("" when unspecified); undefined values are refused."""
    if value == 0:
        return ""
    try:
        return str(enum.Name(value))
    except ValueError:
        raise InvalidArgument.field(field, "is not a defined value") from None


def _defined(enum: Any, value: int, field: str) -> str:
    """A list item's enum name: UNSPECIFIED or undefined values are refused."""
    if value == 0:
        raise InvalidArgument.field(field, "must not be UNSPECIFIED")
    return _value(enum, value, field)


def contact_dict(contact: tpb.Contact, locale: str, prefix: str = "report") -> dict[str, Any]:
    return {
        "email": contact.email.strip(),
        "phone": rules.normal_phone(contact.phone),
        "channels": [
            enum_name(tpb.Channel, c, f"{prefix}.contact.channels", "CHANNEL_")
            for c in contact.channels
        ],
        "locale": locale,
    }


def _contact_message(c: dict[str, Any]) -> tpb.Contact:
    return tpb.Contact(
        email=c.get("email", ""),
        phone=c.get("phone", ""),
        channels=[tpb.Channel.Value(f"CHANNEL_{x}") for x in c.get("channels", [])],
    )


def party_dict(p: apb.Party) -> dict[str, Any]:
    c = contact_dict(p.contact, p.locale, "affected_uploader")
    return {
        "legal_name": p.legal_name.strip(),
        "locale": p.locale,
        "user_id": p.user_id.strip(),
        "contact": {k: c[k] for k in ("email", "phone", "channels")},
    }


def _party_message(d: dict[str, Any] | None) -> apb.Party | None:
    if not d:
        return None
    return apb.Party(
        legal_name=d.get("legal_name", ""),
        locale=d.get("locale", ""),
        user_id=d.get("user_id", ""),
        contact=_contact_message(d.get("contact") or {}),
    )


def _unattached(r: pb.Restrictions) -> list[FieldViolation]:
    """A restriction's end time or own words sent without the restriction
    (or the kind) they belong to: refused rather than dropped."""
    faults = []
    for name, enum, prefix in RESTRICTIONS:
        field = f"statement.restrictions.{name}"
        values = list(getattr(r, name)) if name == "visibility" else [getattr(r, name)]
        values = [v for v in values if v]
        if not values and r.HasField(cast(Any, f"{name}_end_time")):
            faults.append(FieldViolation(f"{field}_end_time", f"is set with no {name} restriction"))
        other = f"{name}_other"
        if other in type(r).DESCRIPTOR.fields_by_name and getattr(r, other).strip():
            named = {enum.Name(v) for v in values if v in enum.values()}
            if f"{prefix}OTHER" not in named:
                faults.append(
                    FieldViolation(f"{field}_other", f"is only for a {name} of {prefix}OTHER")
                )
    return faults


def statement_dict(s: pb.DecisionStatement) -> dict[str, Any]:
    """The statement as the service keeps it: the schema's names and values."""
    r = s.restrictions
    if faults := _unattached(r):
        raise InvalidArgument(faults)
    restrictions: list[dict[str, str]] = []
    for name, enum, _ in RESTRICTIONS:
        field = f"statement.restrictions.{name}"
        values = list(getattr(r, name)) if name == "visibility" else [getattr(r, name)]
        end = getattr(r, f"{name}_end_time")
        for i, value in enumerate(values):
            if name == "visibility":
                kind = _defined(enum, value, f"{field}[{i}]")
            elif not (kind := _value(enum, value, field)):
                continue
            restrictions.append(
                {
                    "field": name,
                    "type": kind,
                    "other": getattr(r, f"{name}_other", "").strip()
                    if kind.endswith("_OTHER")
                    else "",
                    "end_time": from_timestamp(end, f"{field}_end_time").isoformat()
                    if r.HasField(cast(Any, f"{name}_end_time"))
                    else "",
                }
            )
    return {
        "decision_ground": _value(
            pb.DecisionGround, s.decision_ground, "statement.decision_ground"
        ),
        "illegal_content_legal_ground": s.illegal_content_legal_ground.strip(),
        "illegal_content_explanation": s.illegal_content_explanation.strip(),
        "incompatible_content_ground": s.incompatible_content_ground.strip(),
        "incompatible_content_explanation": s.incompatible_content_explanation.strip(),
        "incompatible_content_illegal": s.incompatible_content_illegal,
        "category": _value(pb.StatementCategory, s.category, "statement.category"),
        "category_specification": [k.strip() for k in s.category_specification],
        "category_specification_other": s.category_specification_other.strip(),
        "content_type": [
            _defined(pb.ContentType, c, f"statement.content_type[{i}]")
            for i, c in enumerate(s.content_type)
        ],
        "content_type_other": s.content_type_other.strip(),
        "content_date": s.content_date.strip(),
        "application_date": s.application_date.strip(),
        "decision_facts": s.decision_facts.strip(),
        "automated_detection": s.automated_detection,
        "automated_decision": _value(
            pb.AutomatedDecision, s.automated_decision, "statement.automated_decision"
        ),
        "restrictions": restrictions,
        "territorial_scope": [t.strip() for t in s.territorial_scope],
        "content_language": s.content_language.strip(),
        "account_type": _value(pb.AccountType, s.account_type, "statement.account_type"),
        "decision_ground_reference_url": s.decision_ground_reference_url.strip(),
    }


def restrictions_message(items: list[dict[str, Any]]) -> pb.Restrictions:
    """Restrictions as a statement keeps them (`Restriction.to_dict`), in the
    schema's four lists."""
    restrictions = pb.Restrictions()
    for r in items:
        name = r["field"]
        if name == "visibility":
            restrictions.visibility.append(pb.DecisionVisibility.Value(r["type"]))
        else:
            setattr(restrictions, name, ENUMS[name].Value(r["type"]))
        if r.get("other"):
            setattr(restrictions, f"{name}_other", r["other"])
        if r.get("end_time"):
            getattr(restrictions, f"{name}_end_time").CopyFrom(to_timestamp(r["end_time"]))
    return restrictions


def statement_message(d: dict[str, Any]) -> pb.DecisionStatement:
    restrictions = restrictions_message(d.get("restrictions", []))

    def enum(e: Any, value: str) -> Any:
        return e.Value(value) if value else 0

    return pb.DecisionStatement(
        decision_ground=enum(pb.DecisionGround, d.get("decision_ground", "")),
        illegal_content_legal_ground=d.get("illegal_content_legal_ground", ""),
        illegal_content_explanation=d.get("illegal_content_explanation", ""),
        incompatible_content_ground=d.get("incompatible_content_ground", ""),
        incompatible_content_explanation=d.get("incompatible_content_explanation", ""),
        incompatible_content_illegal=bool(d.get("incompatible_content_illegal")),
        category=enum(pb.StatementCategory, d.get("category", "")),
        category_specification=d.get("category_specification", []),
        category_specification_other=d.get("category_specification_other", ""),
        content_type=[pb.ContentType.Value(c) for c in d.get("content_type", [])],
        content_type_other=d.get("content_type_other", ""),
        content_date=d.get("content_date", ""),
        application_date=d.get("application_date", ""),
        decision_facts=d.get("decision_facts", ""),
        automated_detection=bool(d.get("automated_detection")),
        automated_decision=enum(pb.AutomatedDecision, d.get("automated_decision", "")),
        restrictions=restrictions,
        territorial_scope=d.get("territorial_scope", []),
        content_language=d.get("content_language", ""),
        account_type=enum(pb.AccountType, d.get("account_type", "")),
        decision_ground_reference_url=d.get("decision_ground_reference_url", ""),
        source_type=d.get("source_type", ""),
        source_identity=d.get("source_identity", ""),
        puid=d.get("puid", ""),
        redress=d.get("redress", ""),
        appeal_deadline=to_timestamp(d.get("appeal_deadline")),
    )


def _target_message(t: dict[str, str]) -> pb.ReportTarget:
    return pb.ReportTarget(
        type=pb.TargetType.Value(f"TARGET_TYPE_{t['type']}"),
        id=t.get("id", ""),
        url=t.get("url", ""),
    )


def report_message(r: AbuseReport) -> pb.Report:
    msg = pb.Report(
        name=f"reports/{r.id}",
        target=_target_message(r.target),
        reason=pb.ReportReasonRef(category=r.category, subcategory=r.subcategory),
        explanation=r.explanation,
        evidence=[evidence_pb2.EvidenceRef(name=e["name"], sha256=e["sha256"]) for e in r.evidence],
        good_faith_statement=True,
        contact=_contact_message(r.contact),
        locale=r.contact.get("locale", ""),
        reporter=r.reporter,
        source=pb.REPORT_SOURCE_TRUSTED_FLAGGER
        if r.source == "TRUSTED_FLAGGER"
        else pb.REPORT_SOURCE_NOTICE,
        report_case=f"report-cases/{r.case_id}",
        state=pb.ReportState.Value(f"REPORT_STATE_{r.state.value}"),
        create_time=to_timestamp(r.created_on),
        update_time=to_timestamp(r.modified_on),
    )
    o = r.outcome
    if o and o.get("outcome") != "VOID":
        msg.outcome.CopyFrom(
            pb.ReportOutcome(
                restrictions=o.get("restrictions", []),
                decision_facts=o.get("decision_facts", ""),
                manifestly_unfounded=bool(o.get("manifestly_unfounded")),
                redress=o.get("redress", ""),
                appeal_deadline=to_timestamp(o.get("appeal_deadline")),
                decide_time=to_timestamp(r.decided_at),
                reversed=bool(o.get("reversed")),
                # Absent from outcomes recorded before they were kept: unset.
                automated_detection=o.get("automated_detection"),
                automated_decision=pb.AutomatedDecision.Value(o["automated_decision"])
                if o.get("automated_decision")
                else pb.AUTOMATED_DECISION_UNSPECIFIED,
                restriction_terms=restrictions_message(o["restriction_terms"])
                if o.get("restriction_terms")
                else None,
            )
        )
    return msg


def case_message(c: ReportCase) -> pb.ReportCase:
    """The case as agents see it, naming its first `CASE_REPORT_NAMES`
    reports (`priority` is set at read time)."""
    msg = pb.ReportCase(
        name=f"report-cases/{c.id}",
        target=_target_message(c.target),
        category=c.category,
        lane=pb.QueueLane.Value(f"QUEUE_LANE_{c.lane}"),
        state=pb.ReportCaseState.Value(f"REPORT_CASE_STATE_{c.state.value}"),
        reporter_count=len(c.reporters),
        trusted_flagger=c.trusted,
        reports=[f"reports/{r['id']}" for r in c.reports[:CASE_REPORT_NAMES]],
        assignee=c.assignee,
        affected_uploader=_party_message(c.uploader),
        appeals=list(c.appeals),
        first_report_time=to_timestamp(c.first_report_at),
        decide_time=to_timestamp(c.decision["at"]) if c.decision else None,
        void_reason=c.void_reason,
        create_time=to_timestamp(c.created_on),
        update_time=to_timestamp(c.modified_on),
        etag=str(c.version),
    )
    if c.decision:
        msg.decision.CopyFrom(statement_message(c.decision["statement"]))
    return msg


def for_viewer(
    msg: pb.ReportCase, who: Identity, own_reports: set[str], appellants: Mapping[str, str]
) -> pb.ReportCase:
    """Agents see the whole case. The uploader sees the decision about them,
    not who reported it; a reporter sees the decision and their own report,
    not the uploader's account or the other reporters. Neither sees how the
    queue ranks it (its priority counts a trusted flagger's report and how
    many reported it). Each party sees only the appeals they lodged
    themselves (`appellants`: appeal → who)."""
    if who.is_agent:
        return msg
    del msg.reports[:]
    msg.reports.extend(sorted(own_reports))
    mine = [a for a in msg.appeals if appellants.get(a) == who.subject]
    del msg.appeals[:]
    msg.appeals.extend(mine)
    msg.assignee = ""
    if msg.HasField("decision"):  # (setting a field would make an empty one)
        msg.decision.source_identity = ""
    msg.trusted_flagger = False
    msg.priority = 0.0
    if msg.affected_uploader.user_id != who.subject:
        msg.ClearField("affected_uploader")
    return msg


def standing_message(r: Reporter | None, now: datetime, window: timedelta) -> pb.ReportingStanding:
    """A reporter's standing as they see it `now`: whether a suspension
    holds, and which unfounded reports still count towards the next measure
    (`Reporter.counting`, within `window`, the misuse rule's)."""
    if r is None:
        return pb.ReportingStanding(state=pb.REPORTING_STANDING_STATE_GOOD)
    if r.suspended(now) is not None:
        state = pb.REPORTING_STANDING_STATE_SUSPENDED
    elif r.warned_at is not None:
        state = pb.REPORTING_STANDING_STATE_WARNED
    elif r.counted:
        state = pb.REPORTING_STANDING_STATE_COUNTED
    else:  # every report that counted was reversed on appeal
        state = pb.REPORTING_STANDING_STATE_GOOD
    return pb.ReportingStanding(
        state=state,
        counting_reports=[
            f"reports/{u['report_id']}" for u in r.counting() if u["at"] >= now - window
        ],
        unfounded_reports=[f"reports/{i}" for i in r.counted],
        warn_time=to_timestamp(r.warned_at),
        suspended_until=to_timestamp(r.suspended(now)),
        suspensions=[
            pb.ReportingSuspension(
                suspend_time=to_timestamp(s["at"]),
                end_time=to_timestamp(s["until"]),
                reports=[f"reports/{i}" for i in s["reports"]],
            )
            for s in r.suspensions
        ],
    )


def index_doc(aggregate: Any) -> dict[str, Any] | None:
    """What the read model keeps of an aggregate (reports and cases)."""
    if isinstance(aggregate, AbuseReport):
        return {
            "id": str(aggregate.id),
            "create_time": aggregate.created_on.isoformat(),
            "report": json_format.MessageToDict(report_message(aggregate)),
        }
    if isinstance(aggregate, ReportCase):
        return {
            "id": str(aggregate.id),
            "create_time": aggregate.created_on.isoformat(),
            "case": json_format.MessageToDict(case_message(aggregate)),
            # Who lodged each appeal, for `for_viewer` (not in the message).
            "appellants": appellants(aggregate),
            # Since when it waits, which its listed priority grows with
            # (`queue_priority`; not in the message).
            "waiting_since": aggregate.waiting_since.isoformat(),
        }
    return None


def queue_priority(doc: dict[str, Any], triage: Triage, now: datetime) -> float:
    """The priority now of an open case listed from the queue view, as
    GetReportCase gives it: grown since the case began waiting (its first
    report, or its reopening on appeal)."""
    since = doc.get("waiting_since")
    if since:
        waiting = datetime.fromisoformat(since)
    else:  # a row projected before it kept it: its queue rank was computed from it
        waiting = triage.waiting_since(
            datetime.fromisoformat(doc["rank_time"]), doc["base_priority"]
        )
    return triage.priority(waiting, doc["base_priority"], now)


def case_of_row(doc: dict[str, Any]) -> pb.ReportCase:
    """The case a read-model row keeps, as agents see it. A row projected
    before cases named at most CASE_REPORT_NAMES reports names every one
    until its case changes again."""
    case = json_format.ParseDict(doc["case"], pb.ReportCase())
    del case.reports[CASE_REPORT_NAMES:]
    return case


def listed_case(doc: dict[str, Any], who: Identity) -> pb.ReportCase:
    """A case as a list read from the view shows it to `who` (`for_viewer`)."""
    return for_viewer(case_of_row(doc), who, set(), doc.get("appellants", {}))


def appellants(case: ReportCase) -> dict[str, str]:
    """Who lodged each appeal of the case (`appeals/{id}` → user id)."""
    return {appeal: record["by"] for appeal, record in case.appeals.items()}


def _flagger_message(f: TrustedFlagger | dict[str, Any]) -> pb.TrustedFlagger:
    if isinstance(f, TrustedFlagger):
        return pb.TrustedFlagger(
            user_id=f.user_id,
            display_name=f.display_name,
            areas=f.areas,
            designate_time=to_timestamp(f.created_on),
        )
    return pb.TrustedFlagger(
        user_id=f["user_id"],
        display_name=f["display_name"],
        areas=f["areas"],
        designate_time=to_timestamp(f["designate_time"]),
    )


class ReportServicer(ApplicationServicer, pb_grpc.ReportServiceServicer):
    def __init__(self, app: Reports) -> None:
        self.app = app

    def _case_view(self, context: Ctx, case: ReportCase) -> pb.ReportCase:
        who = self._who(context)
        msg = case_message(case)
        msg.priority = (
            self.app.taxonomy.triage.priority(
                case.waiting_since, case.base_priority, self.app.clock.now()
            )
            if case.state.value in ("OPEN", "IN_REVIEW")
            else 0.0
        )
        own = {f"reports/{r['id']}" for r in case.reports if r["reporter"] == who.subject}
        return for_viewer(msg, who, own, appellants(case))

    async def FileReport(self, request: pb.FileReportRequest, context: Ctx) -> pb.Report:
        r = request.report
        draft = ReportDraft(
            request_id=request.request_id,
            target={
                "type": _value(pb.TargetType, r.target.type, "report.target.type").removeprefix(
                    "TARGET_TYPE_"
                ),
                "id": r.target.id.strip(),
                "url": r.target.url.strip(),
            },
            category=r.reason.category.strip(),
            subcategory=r.reason.subcategory.strip(),
            explanation=r.explanation.strip(),
            evidence=[{"name": e.name, "sha256": e.sha256} for e in r.evidence],
            good_faith=r.good_faith_statement,
            contact=contact_dict(r.contact, r.locale),
        )
        report = await self._call(self.app.file, self._who(context), draft)
        return report_message(report)

    async def GetReport(self, request: pb.GetReportRequest, context: Ctx) -> pb.Report:
        ident = resource_id(request.name, "reports")
        return report_message(await self._call(self.app.get_report, self._who(context), ident))

    async def ListReportEvents(
        self, request: pb.ListReportEventsRequest, context: Ctx
    ) -> pb.ListReportEventsResponse:
        ident = resource_id(request.name, "reports")
        steps = await self._call(self.app.report_history, self._who(context), ident)
        return pb.ListReportEventsResponse(
            events=[
                pb.ReportEvent(
                    sequence=s.sequence,
                    type=s.type,
                    time=to_timestamp(s.time),
                    state=pb.ReportState.Value(f"REPORT_STATE_{s.state.upper()}"),
                )
                for s in steps
            ]
        )

    async def ListReports(
        self, request: pb.ListReportsRequest, context: Ctx
    ) -> pb.ListReportsResponse:
        page = await self._page(self.app.list_reports, context, request, request.report_case)
        return pb.ListReportsResponse(
            reports=[json_format.ParseDict(d["report"], pb.Report()) for d in page.items],
            next_page_token=page.next_token,
        )

    async def ListReportReasons(
        self, request: pb.ListReportReasonsRequest, context: Ctx
    ) -> pb.ListReportReasonsResponse:
        self._who(context)
        return pb.ListReportReasonsResponse(
            reasons=[
                pb.ReportReason(
                    category=c.code,
                    subcategory=r.code,
                    label_zh=f"{c.zh} / {r.zh}",
                    label_en=f"{c.en} / {r.en}",
                    statement_category=pb.StatementCategory.Value(r.dsa_category),
                    keyword=r.keyword,
                    child_safety=c.child_safety,
                )
                for c in self.app.taxonomy.categories.values()
                for r in c.reasons.values()
            ]
        )

    async def GetReportCase(self, request: pb.GetReportCaseRequest, context: Ctx) -> pb.ReportCase:
        ident = resource_id(request.name, "report-cases")
        case = await self._call(self.app.get_case, self._who(context), ident)
        return self._case_view(context, case)

    async def ListReportCases(
        self, request: pb.ListReportCasesRequest, context: Ctx
    ) -> pb.ListReportCasesResponse:
        lane = _value(pb.QueueLane, request.lane, "lane").removeprefix("QUEUE_LANE_")
        states = enum_filter(pb.ReportCaseState, request.states, "states", "REPORT_CASE_STATE_")
        page = await self._page(
            self.app.list_cases, context, request, lane, states, request.category.strip()
        )
        now = self.app.clock.now()
        cases = []
        for d in page.items:
            msg = case_of_row(d)
            if msg.state in (pb.REPORT_CASE_STATE_OPEN, pb.REPORT_CASE_STATE_IN_REVIEW):
                msg.priority = queue_priority(d, self.app.taxonomy.triage, now)
            cases.append(msg)
        return pb.ListReportCasesResponse(report_cases=cases, next_page_token=page.next_token)

    async def AssignReportCase(
        self, request: pb.AssignReportCaseRequest, context: Ctx
    ) -> pb.ReportCase:
        ident = resource_id(request.name, "report-cases")
        case = await self._call(
            self.app.assign, self._who(context), ident, request.assignee, request.request_id
        )
        return self._case_view(context, case)

    async def DecideReportCase(
        self, request: pb.DecideReportCaseRequest, context: Ctx
    ) -> pb.ReportCase:
        ident = resource_id(request.name, "report-cases")
        outcome = _value(pb.ReportDecisionOutcome, request.outcome, "outcome").removeprefix(
            "REPORT_DECISION_OUTCOME_"
        )
        statement = statement_dict(request.statement)
        uploader = (
            party_dict(request.affected_uploader) if request.HasField("affected_uploader") else None
        )
        case = await self._call(
            self.app.decide,
            self._who(context),
            ident,
            outcome,
            statement,
            uploader,
            list(request.manifestly_unfounded_reports),
            request.etag,
            request.request_id,
        )
        return self._case_view(context, case)

    async def VoidReportCase(
        self, request: pb.VoidReportCaseRequest, context: Ctx
    ) -> pb.ReportCase:
        ident = resource_id(request.name, "report-cases")
        case = await self._call(
            self.app.void, self._who(context), ident, request.reason, request.request_id
        )
        return self._case_view(context, case)

    async def SetTrustedFlagger(
        self, request: pb.SetTrustedFlaggerRequest, context: Ctx
    ) -> pb.TrustedFlagger:
        f = request.flagger
        flagger = await self._call(
            self.app.set_flagger,
            self._who(context),
            f.user_id,
            f.display_name,
            [a.strip() for a in f.areas],
            request.request_id,
        )
        return _flagger_message(flagger)

    async def RemoveTrustedFlagger(
        self, request: pb.RemoveTrustedFlaggerRequest, context: Ctx
    ) -> pb.RemoveTrustedFlaggerResponse:
        await self._call(
            self.app.remove_flagger,
            self._who(context),
            request.user_id.strip(),
            request.request_id,
        )
        return pb.RemoveTrustedFlaggerResponse()

    async def ListTrustedFlaggers(
        self, request: pb.ListTrustedFlaggersRequest, context: Ctx
    ) -> pb.ListTrustedFlaggersResponse:
        rows = await self._call(self.app.list_flaggers, self._who(context))
        return pb.ListTrustedFlaggersResponse(flaggers=[_flagger_message(f) for f in rows])

    async def ListMyRestrictions(
        self, request: pb.ListMyRestrictionsRequest, context: Ctx
    ) -> pb.ListReportCasesResponse:
        who = self._who(context)
        docs = await self._call(self.app.my_restrictions, who)
        return pb.ListReportCasesResponse(report_cases=[listed_case(d, who) for d in docs])

    async def ListMyReportCases(
        self, request: pb.ListMyReportCasesRequest, context: Ctx
    ) -> pb.ListReportCasesResponse:
        who = self._who(context)
        page = await self._call(self.app.my_cases, who, request.page_size, request.page_token)
        return pb.ListReportCasesResponse(
            report_cases=[listed_case(d, who) for d in page.items],
            next_page_token=page.next_token,
        )

    async def GetMyReportingStanding(
        self, request: pb.GetMyReportingStandingRequest, context: Ctx
    ) -> pb.ReportingStanding:
        standing = await self._call(self.app.my_standing, self._who(context))
        window = timedelta(days=self.app.policy.misuse.window_days)
        return standing_message(standing, self.app.clock.now(), window)

    async def GetTransparencyReport(
        self, request: pb.GetTransparencyReportRequest, context: Ctx
    ) -> pb.TransparencyReport:
        start = (
            from_timestamp(request.start_time, "start_time")
            if request.HasField("start_time")
            else None
        )
        end = from_timestamp(request.end_time, "end_time") if request.HasField("end_time") else None
        f = await self._call(self.app.transparency, self._who(context), start, end)
        return pb.TransparencyReport(
            start_time=to_timestamp(start),
            end_time=to_timestamp(end),
            reports_received=f["received"],
            reports_by_category=[
                pb.TransparencyCount(key=c, source=s, count=n) for c, s, n in f["by_category"]
            ],
            cases_decided=f["decided"],
            decisions_by_restriction=[
                pb.TransparencyCount(key=k, count=n) for k, n in f["by_restriction"]
            ],
            median_seconds_to_decision=f["median_seconds"],
            cases_void=f["void"],
            appeals=f["appeals"],
            reversals=f["reversals"],
            reporters_suspended=f["suspended"],
        )
