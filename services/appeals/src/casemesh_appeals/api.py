"""gRPC entry point of the appeals service: decode, call one application
method (in a worker thread: the event store is synchronous), encode."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from google.protobuf import json_format

from casemesh.platform.callers import vouched
from casemesh.platform.errors import PermissionDenied, Unavailable, Violations
from casemesh.platform.fields import fields_of
from casemesh.platform.grpcutil import (
    ApplicationServicer,
    enum_filter,
    enum_name,
    from_timestamp,
    to_timestamp,
)
from casemesh.platform.identity import Identity
from casemesh.rules import tickets as rules
from casemesh.v1 import appeals_pb2 as pb
from casemesh.v1 import appeals_pb2_grpc as pb_grpc
from casemesh.v1 import evidence_pb2
from casemesh.v1 import tickets_pb2 as tpb
from casemesh_appeals.application import (
    REPORT_CASES,
    AppealDraft,
    Appeals,
    appeal_id_from_name,
)
from casemesh_appeals.domain import (
    TOOK_DOWN,
    CopyrightAppeal,
    Kind,
    State,
    removed_items,
)

Ctx: TypeAlias = grpc.aio.ServicerContext

# Vouched for by the gateway on an appeal of a report decision: that
# decision's appeal deadline, or "" when it has none to appeal.
APPEALABLE_UNTIL = "appealable_until"
# Where the appealed report decision applies (`Appeals.file`).
APPEALED_SCOPE = "appealed_scope"
# The report case the gateway read those two from: they hold for an appeal
# of that case alone (`report_decision`).
APPEAL_OF = "appeal_of"
# What a case is, which AddAppealInfo's completion may not change.
FIXED_WHEN_FILED = ("kind", "jurisdiction", "appeal_of")


def _refs(items: Any) -> list[dict[str, str]]:
    return [{"name": r.name, "sha256": r.sha256} for r in items]


def _ref_messages(items: list[dict[str, str]] | None) -> list[evidence_pb2.EvidenceRef]:
    return [evidence_pb2.EvidenceRef(name=r["name"], sha256=r["sha256"]) for r in items or []]


def report_decision(appeal_of: str, facts: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The appeal deadline and territorial scope of the report decision
    `appeal_of` names, as the gateway vouched for them (`Appeals.file`).
    Read from another case, they are refused (PERMISSION_DENIED), as a
    token that names another ticket is (`callers.the_ticket_named`): a token
    taken off the wire cannot lend one case's window to another.

    Facts naming no case come from a gateway of an older release, while a
    rollout is under way: they are refused as UNAVAILABLE, for the client
    to retry (a filing is idempotent on its request id), rather than taken
    for whatever case the request names. Roll the gateway before appeals
    and nobody meets it."""
    if not appeal_of.startswith(REPORT_CASES):
        return facts.get(APPEALABLE_UNTIL), facts.get(APPEALED_SCOPE)
    read_from = facts.get(APPEAL_OF)
    if read_from is None:
        raise Unavailable(
            f"the decision of {appeal_of} cannot be checked while the gateway is being"
            " upgraded; retry shortly"
        )
    if read_from != appeal_of:
        raise PermissionDenied(
            f"the gateway vouched for the decision of {read_from}, not of {appeal_of}"
        )
    return facts.get(APPEALABLE_UNTIL), facts.get(APPEALED_SCOPE)


def party_dict(p: pb.Party, field: str) -> dict[str, Any]:
    """A party as the service keeps it; `field` is where the request holds it."""
    party: dict[str, Any] = {
        "legal_name": p.legal_name.strip(),
        "locale": p.locale,
        "contact": {
            "email": p.contact.email.strip(),
            "phone": rules.normal_phone(p.contact.phone),
            "channels": [
                enum_name(tpb.Channel, c, f"{field}.contact.channels", "CHANNEL_")
                for c in p.contact.channels
            ],
        },
    }
    # Only when sent: a retry from before it existed matches its request.
    if p.postal_address.strip():
        party["postal_address"] = p.postal_address.strip()
    return party


def party_message(d: dict[str, Any] | None) -> pb.Party | None:
    if not d:
        return None
    c = d.get("contact") or {}
    return pb.Party(
        legal_name=d.get("legal_name", ""),
        locale=d.get("locale", ""),
        user_id=d.get("user_id", ""),
        postal_address=d.get("postal_address", ""),
        contact=tpb.Contact(
            email=c.get("email", ""),
            phone=c.get("phone", ""),
            channels=[tpb.Channel.Value(f"CHANNEL_{x}") for x in c.get("channels", [])],
        ),
    )


def content_dict(a: pb.Appeal, prefix: str = "appeal") -> dict[str, Any]:
    """The case's elements as the service keeps them (empty ones left out)."""
    content: dict[str, Any] = {}
    if a.HasField("notice"):
        n = a.notice
        content["notice"] = {
            "relationship": enum_name(
                pb.RightsRelationship,
                n.relationship,
                f"{prefix}.notice.relationship",
                "RIGHTS_RELATIONSHIP_",
            )
            if n.relationship
            else "",
            "work": {
                "title": n.work.title.strip(),
                "creation_time": from_timestamp(
                    n.work.creation_time, f"{prefix}.notice.work.creation_time"
                ).isoformat()
                if n.work.HasField("creation_time")
                else "",
            },
            "originality_evidence": _refs(n.originality_evidence),
            "infringing_items": [i.strip() for i in n.infringing_items if i.strip()],
            "infringement_evidence": _refs(n.infringement_evidence),
        }
    if a.HasField("counter_notice"):
        content["counter_notice"] = counter_dict(a.counter_notice)
    if a.grounds:
        content["grounds"] = a.grounds.strip()
    if a.good_faith_statement:
        content["good_faith_statement"] = True
    if a.accuracy_statement:
        content["accuracy_statement"] = True
    return content


def counter_dict(c: pb.CounterNotice) -> dict[str, Any]:
    counter = {
        "removed_item": c.removed_item.strip(),
        "reason": c.reason.strip(),
        "evidence": _refs(c.evidence),
        "consent_to_jurisdiction": c.consent_to_jurisdiction,
    }
    # Only when sent: a retry from before they existed matches its request.
    if c.removed_items:
        counter["removed_items"] = [item.strip() for item in c.removed_items]
    if c.accepts_service_of_process:
        counter["accepts_service_of_process"] = True
    if c.signature.strip():
        counter["signature"] = c.signature.strip()
    return counter


def _items_came_back_and_down(a: CopyrightAppeal) -> tuple[list[str], list[str]]:
    """A notice's items that came back so far and those still down, once
    its decision took them down; none for a notice that took nothing down
    (open, rejected) or a case of another kind. A withdrawn one lists what
    came back when it was. Both parties may see them: they name the
    content the notice is about, not a person."""
    if a.kind is not Kind.TAKEDOWN_NOTICE:
        return [], []
    if a.state not in TOOK_DOWN and not a.restored_items:
        return [], []
    return a.came_back(), a.still_down() if a.state in TOOK_DOWN else []


def _held_elsewhere(a: CopyrightAppeal) -> list[pb.ItemHeldElsewhere]:
    """The items a notice let go of that other notices kept down then. The
    parties see which cases (not whose): the item is theirs to follow."""
    return [pb.ItemHeldElsewhere(item=item, held_by=by) for item, by in a.held_elsewhere.items()]


def appeal_message(a: CopyrightAppeal) -> pb.Appeal:
    content = a.content
    came_back, down = _items_came_back_and_down(a)
    msg = pb.Appeal(
        name=f"appeals/{a.id}",
        kind=pb.AppealKind.Value(f"APPEAL_KIND_{a.kind}"),
        jurisdiction=a.jurisdiction,
        filer=party_message(content.get("filer")),
        appeal_of=content.get("appeal_of", ""),
        grounds=content.get("grounds", ""),
        good_faith_statement=bool(content.get("good_faith_statement")),
        accuracy_statement=bool(content.get("accuracy_statement")),
        state=pb.AppealState.Value(f"APPEAL_STATE_{State(a.state).value}"),
        missing_elements=a.missing,
        next_step=str(a.next_step),
        next_step_due=to_timestamp(a.next_step_due),
        uploader=party_message(a.uploader),
        assignee=a.assignee,
        create_time=to_timestamp(a.created_on),
        update_time=to_timestamp(a.modified_on),
        etag=str(a.version),
        restored_items=came_back,
        still_down_items=down,
        held_elsewhere=_held_elsewhere(a),
    )
    if "notice" in content:
        n = content["notice"]
        msg.notice.CopyFrom(
            pb.TakedownNotice(
                relationship=pb.RightsRelationship.Value(f"RIGHTS_RELATIONSHIP_{n['relationship']}")
                if n.get("relationship")
                else pb.RIGHTS_RELATIONSHIP_UNSPECIFIED,
                work=pb.CopyrightWork(
                    title=n.get("work", {}).get("title", ""),
                    creation_time=to_timestamp(n.get("work", {}).get("creation_time")),
                ),
                originality_evidence=_ref_messages(n.get("originality_evidence")),
                infringing_items=n.get("infringing_items", []),
                infringement_evidence=_ref_messages(n.get("infringement_evidence")),
            )
        )
    counter = a.counter_notice or content.get("counter_notice")
    if counter:
        items = removed_items(counter)
        msg.counter_notice.CopyFrom(
            pb.CounterNotice(
                removed_item=next(iter(items), ""),
                removed_items=items,
                reason=counter.get("reason", ""),
                evidence=_ref_messages(counter.get("evidence")),
                consent_to_jurisdiction=bool(counter.get("consent_to_jurisdiction")),
                accepts_service_of_process=bool(counter.get("accepts_service_of_process")),
                signature=counter.get("signature", ""),
            )
        )
    if a.decision:
        r = a.decision["reasons"]
        msg.decision_reasons.CopyFrom(
            pb.StatementOfReasons(
                ground=r.get("ground", ""),
                facts=r.get("facts", ""),
                automated_detection=bool(r.get("automated_detection")),
                automated_decision=bool(r.get("automated_decision")),
                redress=r.get("redress", ""),
                appeal_deadline=to_timestamp(r.get("appeal_deadline")),
            )
        )
    return msg


# The states a notice is in once its counter-notice was forwarded (a notice
# also ends RESTORED on appeal without one).
_FORWARDED = frozenset(
    {
        pb.APPEAL_STATE_FORWARDED_TO_CLAIMANT,
        pb.APPEAL_STATE_RESTORED,
        pb.APPEAL_STATE_HELD,
        pb.APPEAL_STATE_UPHELD_BY_COURT,
    }
)


def for_viewer(msg: pb.Appeal, who: Identity) -> pb.Appeal:
    """The case as `who` may see it: agents see everything; a party sees the
    other party's name but not their account or private contact details.
    The claimant receives the uploader's contact and address (those the
    counter-notice gives) once a counter-notice is forwarded, as the law
    requires (17 U.S.C. 512(g)(2)(B)); content restored otherwise, on
    appeal, forwards none."""
    if who.is_agent:
        return msg
    if msg.filer.user_id and msg.filer.user_id != who.subject:
        msg.filer.CopyFrom(pb.Party(legal_name=msg.filer.legal_name))
    if msg.HasField("uploader") and msg.uploader.user_id != who.subject:
        shown = pb.Party(legal_name=msg.uploader.legal_name)
        if msg.HasField("counter_notice") and msg.state in _FORWARDED:
            shown.contact.CopyFrom(msg.uploader.contact)
            shown.postal_address = msg.uploader.postal_address
        msg.uploader.CopyFrom(shown)
    return msg


def index_doc(a: CopyrightAppeal) -> dict[str, Any]:
    return {
        "id": str(a.id),
        "create_time": a.created_on.isoformat(),
        "appeal": json_format.MessageToDict(appeal_message(a)),
    }


def _either(value: int, yes: int, no: int) -> bool | None:
    """A two-way choice sent as an enum: True for `yes`, False for `no`,
    None for anything else (the service refuses it, naming the field)."""
    return {yes: True, no: False}.get(value)


class AppealServicer(ApplicationServicer, pb_grpc.AppealServiceServicer):
    def __init__(self, app: Appeals) -> None:
        self.app = app

    def _view(self, context: Ctx, appeal: CopyrightAppeal) -> pb.Appeal:
        return for_viewer(appeal_message(appeal), self._who(context))

    async def FileAppeal(self, request: pb.FileAppealRequest, context: Ctx) -> pb.Appeal:
        a = request.appeal
        draft = AppealDraft(
            request_id=request.request_id,
            kind=enum_name(pb.AppealKind, a.kind, "appeal.kind", "APPEAL_KIND_"),
            jurisdiction=a.jurisdiction,
            filer=party_dict(a.filer, "appeal.filer"),
            content=content_dict(a),
            appeal_of=a.appeal_of,
        )
        until, scope = report_decision(draft.appeal_of, vouched().facts)
        appeal = await self._call(self.app.file, self._who(context), draft, until, scope)
        return self._view(context, appeal)

    async def GetAppeal(self, request: pb.GetAppealRequest, context: Ctx) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(context, await self._call(self.app.get, self._who(context), ident))

    async def ListAppeals(
        self, request: pb.ListAppealsRequest, context: Ctx
    ) -> pb.ListAppealsResponse:
        states = enum_filter(pb.AppealState, request.states, "states", "APPEAL_STATE_")
        page = await self._page(self.app.list_appeals, context, request, states)
        return pb.ListAppealsResponse(
            appeals=[
                for_viewer(json_format.ParseDict(d["appeal"], pb.Appeal()), self._who(context))
                for d in page.items
            ],
            next_page_token=page.next_token,
        )

    async def ListAppealEvents(
        self, request: pb.ListAppealEventsRequest, context: Ctx
    ) -> pb.ListAppealEventsResponse:
        ident = appeal_id_from_name(request.name)
        page = await self._call(
            self.app.history, self._who(context), ident, request.page_size, request.page_token
        )
        return pb.ListAppealEventsResponse(
            next_page_token=page.next_token,
            events=[
                pb.AppealEvent(
                    **fields_of(e, "sequence", "type", "actor", "text"),
                    time=to_timestamp(e.time),
                    state=pb.AppealState.Value(f"APPEAL_STATE_{e.state}"),
                    next_step_due=to_timestamp(e.next_step_due),
                )
                for e in page.items
            ],
        )

    async def AddAppealInfo(self, request: pb.AddAppealInfoRequest, context: Ctx) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        fixed = Violations()
        for field in FIXED_WHEN_FILED:
            if getattr(request.completion, field):
                fixed.add(f"completion.{field}", "cannot be changed once the case is filed")
        fixed.raise_if_any()
        completion = content_dict(request.completion, prefix="completion")
        if request.completion.HasField("filer"):
            completion["filer"] = party_dict(request.completion.filer, "completion.filer")
        return self._view(
            context,
            await self._call(
                self.app.add_info,
                self._who(context),
                ident,
                request.message,
                completion,
                request.etag,
                request.request_id,
            ),
        )

    async def WithdrawAppeal(self, request: pb.WithdrawAppealRequest, context: Ctx) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.withdraw, self._who(context), ident, request.reason, request.request_id
            ),
        )

    async def FileCounterNotice(
        self, request: pb.FileCounterNoticeRequest, context: Ctx
    ) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.file_counter_notice,
                self._who(context),
                ident,
                party_dict(request.uploader, "uploader"),
                counter_dict(request.counter_notice),
                request.good_faith_statement,
                request.accuracy_statement,
                request.request_id,
            ),
        )

    async def AssignAppeal(self, request: pb.AssignAppealRequest, context: Ctx) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.assign, self._who(context), ident, request.assignee, request.request_id
            ),
        )

    async def RequestAppealInfo(
        self, request: pb.RequestAppealInfoRequest, context: Ctx
    ) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.request_info,
                self._who(context),
                ident,
                request.message,
                request.etag,
                request.request_id,
            ),
        )

    async def DecideAppeal(self, request: pb.DecideAppealRequest, context: Ctx) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        r = request.reasons
        reasons = {
            "ground": r.ground.strip(),
            "facts": r.facts.strip(),
            "automated_detection": r.automated_detection,
            "automated_decision": r.automated_decision,
        }
        uploader = None
        if request.HasField("affected_uploader"):
            uploader = {
                **party_dict(request.affected_uploader, "affected_uploader"),
                "user_id": request.affected_uploader.user_id.strip(),
            }
        return self._view(
            context,
            await self._call(
                self.app.decide,
                self._who(context),
                ident,
                _either(request.outcome, pb.APPEAL_OUTCOME_UPHOLD, pb.APPEAL_OUTCOME_REJECT),
                reasons,
                uploader,
                request.etag,
                request.request_id,
            ),
        )

    async def RecordCourtAction(
        self, request: pb.RecordCourtActionRequest, context: Ctx
    ) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.record_court_action,
                self._who(context),
                ident,
                request.details,
                _refs(request.evidence),
                request.request_id,
            ),
        )

    async def RecordCourtOutcome(
        self, request: pb.RecordCourtOutcomeRequest, context: Ctx
    ) -> pb.Appeal:
        ident = appeal_id_from_name(request.name)
        return self._view(
            context,
            await self._call(
                self.app.record_court_outcome,
                self._who(context),
                ident,
                _either(
                    request.outcome,
                    pb.COURT_OUTCOME_CONTENT_STAYS_DOWN,
                    pb.COURT_OUTCOME_CONTENT_RESTORED,
                ),
                request.details,
                _refs(request.evidence),
                request.request_id,
            ),
        )
