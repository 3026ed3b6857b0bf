"""Translation of stored appeal events into the public messages of
`casemesh.appeals.v1` (proto/casemesh/events/v1/appeals.proto)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from casemesh import topics
from casemesh.events.v1 import appeals_pb2 as ev
from casemesh.events.v1 import tickets_pb2 as tev
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.history import header_basics
from casemesh.platform.relay import EventTranslator
from casemesh_appeals.application import PUBLIC_NAMES
from casemesh_appeals.domain import CopyrightAppeal, Kind, State, removed_items

TOPIC = topics.APPEALS
SOURCE = "casemesh/appeals"


def _party(d: dict[str, Any] | None) -> ev.AppealParty | None:
    if not d:
        return None
    c = d.get("contact") or {}
    return ev.AppealParty(
        user_id=d.get("user_id", ""),
        legal_name=d.get("legal_name", ""),
        contact=tev.ContactPreferences(
            email=c.get("email", ""),
            phone=c.get("phone", ""),
            channels=[
                tev.ContactChannel.Value(f"CONTACT_CHANNEL_{x}") for x in c.get("channels", [])
            ],
            locale=d.get("locale", ""),
        ),
        postal_address=d.get("postal_address", ""),
    )


def _attachments(*lists: list[dict[str, str]] | None) -> list[tev.EvidenceAttachment]:
    return [
        tev.EvidenceAttachment(name=r["name"], sha256=r["sha256"])
        for items in lists
        for r in items or []
    ]


def public_message(domain_event: Any, after: CopyrightAppeal) -> Message:
    a = vars(domain_event)
    header = ev.AppealEventHeader(
        appeal_id=str(domain_event.originator_id),
        **header_basics(domain_event, creator="filer_id"),
        state=State(after.state).value,
        next_step=str(after.next_step),
        next_step_due=to_timestamp(after.next_step_due),
    )
    content = after.content
    notice = content.get("notice") or {}
    counter = content.get("counter_notice") or {}
    match domain_event:
        case CopyrightAppeal.Filed():
            return ev.AppealFiled(
                header=header,
                kind=str(a["kind"]),
                jurisdiction=a["jurisdiction"],
                filer=_party(a["content"].get("filer")),
                work_title=notice.get("work", {}).get("title", ""),
                infringing_items=notice.get("infringing_items", []),
                removed_item=next(iter(removed_items(counter)), ""),
                removed_items=removed_items(counter),
                appeal_of=content.get("appeal_of", ""),
                evidence=_attachments(
                    notice.get("originality_evidence"),
                    notice.get("infringement_evidence"),
                    counter.get("evidence"),
                ),
                missing_elements=a["missing"],
            )
        case CopyrightAppeal.Assigned():
            return ev.AppealAssigned(header=header, assignee=a["assignee"])
        case CopyrightAppeal.InfoRequested():
            return ev.AppealInfoRequested(
                header=header, message=a["message"], missing_elements=after.missing
            )
        case CopyrightAppeal.InfoAdded():
            added = a["completion"]
            added_notice = added.get("notice") or {}
            added_counter = added.get("counter_notice") or {}
            return ev.AppealInfoAdded(
                header=header,
                message=a["message"],
                missing_elements=a["missing"],
                filer=_party(content.get("filer")) if "filer" in added else None,
                evidence=_attachments(
                    added_notice.get("originality_evidence"),
                    added_notice.get("infringement_evidence"),
                    added_counter.get("evidence"),
                ),
                # All the case names, once: what this one adds may repeat them.
                removed_items=removed_items(counter) if removed_items(added_counter) else [],
            )
        case CopyrightAppeal.Decided() | CopyrightAppeal.UpheldOnAppeal():
            r = a["reasons"]
            return ev.AppealDecided(
                header=header,
                outcome=a.get("outcome", "UPHOLD"),  # upheld on appeal
                reasons=ev.StatementOfReasons(
                    ground=r.get("ground", ""),
                    facts=r.get("facts", ""),
                    automated_detection=bool(r.get("automated_detection")),
                    automated_decision=bool(r.get("automated_decision")),
                    redress=r.get("redress", ""),
                    appeal_deadline=to_timestamp(r.get("appeal_deadline")),
                ),
                affected_uploader=_party(a["uploader"]),
                appeal_of=content.get("appeal_of", ""),
                outcome_of=a.get("appeal", ""),
            )
        case CopyrightAppeal.CounterNoticeFiled():
            c = a["counter_notice"]
            return ev.CounterNoticeFiled(
                header=header,
                uploader=_party(a["uploader"]),
                removed_item=next(iter(removed_items(c)), ""),
                removed_items=removed_items(c),
                reason=c.get("reason", ""),
                evidence=_attachments(c.get("evidence")),
                restore_time=to_timestamp(a["restore_due"]),
                restores_at=to_timestamp(a["restores_at"]),
                consent_to_jurisdiction=bool(c.get("consent_to_jurisdiction")),
                accepts_service_of_process=bool(c.get("accepts_service_of_process")),
                signature=c.get("signature", ""),
            )
        case CopyrightAppeal.CourtActionRecorded():
            return ev.CourtActionRecorded(
                header=header, details=a["details"], evidence=_attachments(a.get("evidence"))
            )
        case CopyrightAppeal.Restored():
            held = a["held_elsewhere"]
            items = [item for item in _removed_items(after) if item not in held]
            return ev.ContentRestored(
                header=header,
                removed_item=next(iter(items), ""),
                restored_items=items,
                held_elsewhere=_held_elsewhere(held),
            )
        case CopyrightAppeal.RestoredOnAppeal():
            # What the platform's decision alone kept down: every item the
            # notice took down, or those a counter-notice did not name (it
            # brought the others back, or a court holds them); not those
            # another notice keeps down.
            held = a["held_elsewhere"]
            items = [item for item in after.restored_on_appeal if item not in held]
            named = [item for item in _removed_items(after) if item in items]
            return ev.ContentRestored(
                header=header,
                # As a consumer reading only this field has always had it.
                removed_item=next(iter(named + items), ""),
                restored_items=items,
                outcome_of=a["appeal"],
                held_elsewhere=_held_elsewhere(held),
            )
        case CopyrightAppeal.RestoredOnWithdrawal():
            held = a["held_elsewhere"]
            items = [item for item in a["items"] if item not in held]
            return ev.ContentRestored(
                header=header,
                removed_item=next(iter(items), ""),
                restored_items=items,
                held_elsewhere=_held_elsewhere(held),
            )
        case CopyrightAppeal.CourtOutcomeRecorded():
            held = a["held_elsewhere"]
            restored = _removed_items(after) if a["outcome"] == "CONTENT_RESTORED" else []
            restored = [item for item in restored if item not in held]
            return ev.CourtOutcomeRecorded(
                header=header,
                outcome=a["outcome"],
                details=a["details"],
                evidence=_attachments(a.get("evidence")),
                removed_item=next(iter(restored), ""),
                restored_items=restored,
                held_elsewhere=_held_elsewhere(held),
            )
        case CopyrightAppeal.OverlapChanged():
            return ev.TakedownOverlapChanged(
                header=header,
                other_notice=a["notice"],
                items=a["items"],
                keeps_down=a["keeps_down"],
            )
        case CopyrightAppeal.Withdrawn():
            return ev.AppealWithdrawn(header=header, reason=a["reason"])
        case CopyrightAppeal.Abandoned():
            return ev.AppealAbandoned(header=header)
        case ExpiringCase.Expired():
            return ev.AppealExpired(header=header)
    raise ValueError(f"no public event for {type(domain_event).__name__}")


def _held_elsewhere(held: dict[str, list[str]]) -> list[ev.ItemHeldElsewhere]:
    """Items a case let go of that other notices keep down, with those notices."""
    return [ev.ItemHeldElsewhere(item=item, held_by=by) for item, by in held.items()]


def _removed_items(after: CopyrightAppeal) -> list[str]:
    """The items a restoration brings back: the counter-notice's, filed as a
    case of its own or by the uploader on the notice's stream (never a part
    the claimant put in the notice)."""
    if after.kind is Kind.COUNTER_NOTICE:
        counter = after.content.get("counter_notice") or {}
    else:
        counter = after.counter_notice or {}
    return removed_items(counter)


def Translator(after: Callable[[Any], CopyrightAppeal]) -> EventTranslator:
    """The relay's translation; `after(event)` is the case right after it."""
    return EventTranslator("appeals", "appeals", PUBLIC_NAMES, public_message, after)
