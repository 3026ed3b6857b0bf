"""How an event of each kind of case becomes notification jobs: record the
parties the event names, bring the case's status up to date, then tell each
party the step that concerns them (`steps.py`), in their language, on each
channel they chose.

Planning is in memory: the planner reads the parties of a batch's cases
once (`CaseParties`), each event's plan updates them and returns its jobs,
and the planner writes both back once (`store.py`).

A party an event names anew with other contacts (a filer's changed details,
a decision naming the uploader again, a reporter's measure given with a
later report's contact) is reached so from that event on, and so is what
was planned for them before it and is not yet sent (`ContactChange`): a
message for the person the party was until then, or on a channel they gave
up, is not sent; the others go to their new address, an SMS written again
in its new number's time (`phone_changes.written_for`). An event older
than what the party's record holds (heard late) changes neither. A
reporter's standing is named by each measure with the contact given with
the report just counted (`PER_REPORT_CONTACTS`): one without a channel is
not the reporter giving it up, and an earlier measure (a warning, which
must reach them before a suspension) still goes there.

A case an event ends (`ENDED`: a ticket cancelled or closed, a copyright
case withdrawn or abandoned) is noted (`CaseParties.ended`): what it still
had to ask of its parties is not sent (`store.cancel_requests`). So is a
case an event moves out of the state in which it waits for its parties'
answer (`WAITING`: the requester replied, the filer sent what was missing,
the case was solved or decided): what it asked of them until then is not
sent (`CaseParties.answered`), as it no longer waits for it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from casemesh.events.v1 import appeals_pb2 as aev
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.events.v1 import reports_pb2 as rev
from casemesh.events.v1 import tickets_pb2 as ev
from casemesh.platform.envelope import CloudEvent
from casemesh.platform.logging import get_logger
from casemesh.platform.personal import is_erased, person_key_of
from casemesh_notifier.labels import case_zone, jurisdiction_zone, label, phone_zone
from casemesh_notifier.phone_changes import sms_in
from casemesh_notifier.policy import REQUEST_TEMPLATES
from casemesh_notifier.rendering import email_values, render_email, sms_values
from casemesh_notifier.steps import (
    NO_REPLY_STEPS,
    Step,
    appeal_steps,
    case_number,
    code_step,
    for_report_appeal,
    report_steps,
    ticket_step,
)
from casemesh_notifier.store import COPIES, ContactChange, NewJob, Party

log = get_logger(__name__)

# The final states of each kind of case that asks its parties to act: it
# takes nothing from them after these.
ENDED = {
    "tickets": frozenset({"CLOSED", "CANCELLED"}),
    "appeals": frozenset({"WITHDRAWN", "ABANDONED"}),
}
# The cases whose party each event names with the contact given with
# another report (a reporter's standing): a contact lacking a channel says
# nothing of it, and what was planned on it still goes where it was going.
PER_REPORT_CONTACTS = frozenset({"reporters"})
# The state in which each kind of case that asks its parties to act waits
# for their answer: a request it made is answered (or moot) once it leaves it.
WAITING = {"tickets": "PENDING", "appeals": "INFO_REQUESTED"}


class CaseParties:
    """The parties of a batch's cases as its events describe them, by case
    and role: what the table held when the batch began, and what the batch's
    events have changed since (`changed`, to be written back)."""

    def __init__(self, known: Mapping[str, Mapping[str, Party]]) -> None:
        self._cases = {name: dict(parties) for name, parties in known.items()}
        self._changed: set[tuple[str, str]] = set()
        # The parties the event being planned named anew with other contacts
        # (for the batch's jobs planned before it: `follow`), and all the
        # batch's, by case and role (for the jobs planned before the batch).
        self._moved: list[ContactChange] = []
        self._contact_changes: dict[tuple[str, str], ContactChange] = {}
        # The time of the event being planned (`Party.named_at` of whom it names).
        self.at: datetime | None = None
        # The event being planned as it was published, its personal fields
        # still sealed (None: not known), for the key its contacts were
        # sealed under (`key_of`).
        self.sealed: Any = None
        # The cases the batch's events ended (`ENDED`).
        self._ended: set[str] = set()
        # The cases the batch's events moved out of waiting (`WAITING`): all
        # of them, and those of the event being planned (for `unasked`).
        self._answered: set[str] = set()
        self._answered_now: set[str] = set()
        # The rows an erasure blanked (a user, no address) when the batch began.
        self._blanked = {
            (name, role): party.user_id
            for name, parties in known.items()
            for role, party in parties.items()
            if party.user_id and not party.email and not party.phone
        }

    def blanked_for(self, people: Collection[str]) -> set[tuple[str, str]]:
        """The parties (case, role) of these (erased) people that their
        erasure blanked (the others are held only for what was written
        before it: `Planner`)."""
        return {row for row, user_id in self._blanked.items() if user_id in people}

    def sealed_under(
        self, people: Collection[str], keys: Collection[uuid.UUID]
    ) -> set[tuple[str, str]]:
        """The parties (case, role) of these people whose contact was sealed
        under one of `keys`."""
        return {
            (name, role)
            for name, parties in self._cases.items()
            for role, party in parties.items()
            if party.user_id in people and party.key_id in keys
        }

    def keys_of(self, people: Collection[str]) -> set[uuid.UUID | None]:
        """The keys the contacts of these people's parties were sealed under
        (None: one in clear)."""
        return {
            party.key_id
            for parties in self._cases.values()
            for party in parties.values()
            if party.user_id in people
        }

    def key_of(self, contact_in: Callable[[Any], ev.ContactPreferences | str]) -> uuid.UUID | None:
        """The id of the data key that the contact (or address) `contact_in`
        finds in the event being planned was sealed under, as it was
        published (None: given in clear, or not known)."""
        return None if self.sealed is None else contact_key(contact_in(self.sealed))

    def parties_of(self, people: Collection[str]) -> list[tuple[str, str, str]]:
        """The parties (case, role, user id) of these people, as they are now."""
        return [
            (name, role, party.user_id)
            for name, parties in self._cases.items()
            for role, party in parties.items()
            if party.user_id in people
        ]

    def of(self, case_name: str) -> dict[str, Party]:
        """The case's parties by role, as they are now."""
        return dict(self._cases.get(case_name, {}))

    def name(
        self,
        case_name: str,
        role: str,
        user_id: str,
        contact: ev.ContactPreferences,
        subject: str,
        status: str,
        version: int,
        *,
        replace: bool = False,
        key_id: uuid.UUID | None = None,
        time_zone: str = "",
        items: Sequence[str] = (),
    ) -> None:
        """Records a party of a case as an event names them, their contact
        sealed under `key_id` (`key_of`), the zone the case counts its
        deadlines in (`time_zone`, "" not known) and the items it names
        (`Party.items`). A party already known is kept, or with `replace`
        takes the new user and contact details (its subject, status and
        items stay, and its zone unless it had none), unless the event is
        older than what the party's record holds. A new person or other
        addresses are a contact change (`follow`)."""
        parties = self._cases.setdefault(case_name, {})
        known = parties.get(role)
        if known is not None and (not replace or version < known.version):
            return
        channels = [
            ev.ContactChannel.Name(c).removeprefix("CONTACT_CHANNEL_") for c in contact.channels
        ]
        named = Party(
            role=role,
            locale=contact.locale or "en",
            # An erased person's address is gone: nobody is told.
            email=address(contact.email),
            phone=address(contact.phone),
            channels=channels,
            subject=subject,
            status=status,
            user_id=user_id,
            version=version,
            named_at=self.at,
            key_id=key_id,
            time_zone=time_zone,
            items=tuple(items),
        )
        if known is not None:  # replaced: the case's subject and status stay
            named = dataclasses.replace(
                named,
                subject=known.subject,
                status=known.status,
                version=known.version,
                time_zone=known.time_zone or time_zone,
                items=known.items,
                # The same person named anew (or a row from before user ids
                # were kept): since they were first.
                named_at=known.named_at if known.user_id in (user_id, "") else self.at,
            )
            self._contact_changed(case_name, known, named)
        parties[role] = named
        self._changed.add((case_name, role))

    def _contact_changed(self, case_name: str, known: Party, named: Party) -> None:
        """Notes a change of the party's person or of where they are reached."""

        def reached(channel: str) -> str:
            if channel not in named.channels and case_name.partition("/")[0] in PER_REPORT_CONTACTS:
                return reach(known, channel)
            return reach(named, channel)

        before = (known.user_id, reach(known, "EMAIL"), reach(known, "SMS"))
        after = (named.user_id, reached("EMAIL"), reached("SMS"))
        if before == after:
            return
        change = ContactChange(case_name, named.role, known.user_id, *after, named.key_id)
        self._moved.append(change)
        key = (case_name, named.role)
        earlier = self._contact_changes.get(key)
        self._contact_changes[key] = change if earlier is None else earlier.then(change)

    def follow(self, jobs: list[NewJob]) -> list[NewJob]:
        """The batch's jobs planned before the event just planned, as the
        contacts it changed leave them (`ContactChange.follow`: an SMS
        given another number written in its time, as of that event)."""
        moved, self._moved = self._moved, []
        for change in moved:
            followed = []
            for job in jobs:
                if (job.case_name, job.party) != (change.case_name, change.party):
                    followed.append(job)
                elif (job_now := change.follow(job, self.at)) is not None:
                    followed.append(job_now)
            jobs = followed
        return jobs

    def contact_changes(self) -> list[ContactChange]:
        """The batch's contact changes, each party's in one, in a stable order:
        what they leave of the jobs planned before the batch."""
        return [self._contact_changes[key] for key in sorted(self._contact_changes)]

    def items_unknown(self, case_name: str, role: str, version: int) -> None:
        """The items the party's row kept for its case (`Party.items`) are
        no longer known to be all of them as of `version`: none are told."""
        party = self._cases.get(case_name, {}).get(role)
        if party is not None and party.items and party.version < version:
            self._cases[case_name][role] = dataclasses.replace(party, items=())
            self._changed.add((case_name, role))

    def status(self, case_name: str, status: str, version: int) -> None:
        """The case's status as of `version`; an older event does not turn it back."""
        for role, party in self._cases.get(case_name, {}).items():
            if party.version < version:
                self._cases[case_name][role] = dataclasses.replace(
                    party, status=status, version=version
                )
                self._changed.add((case_name, role))

    def leave(self, case_name: str, status: str, version: int) -> None:
        """Notes the case no longer waits for its parties' answer if `status`
        (an event's, newer than what is known) takes it out of the state in
        which it did (`WAITING`), to a state that does not end it (`end`
        cancels those requests). Called before `status` records it."""
        collection = case_name.partition("/")[0]
        waiting = WAITING.get(collection)
        if waiting is None or status == waiting or status in ENDED[collection]:
            return
        parties = self._cases.get(case_name, {}).values()
        if any(p.status == waiting and p.version < version for p in parties):
            self._answered.add(case_name)
            self._answered_now.add(case_name)

    def unasked(self, jobs: list[NewJob]) -> list[NewJob]:
        """The batch's jobs planned before the event just planned, without
        the requests of a case it took out of waiting (`leave`)."""
        answered, self._answered_now = self._answered_now, set()
        return [
            job
            for job in jobs
            if not (job.case_name in answered and job.template in REQUEST_TEMPLATES)
        ]

    def answered(self) -> list[str]:
        """The cases the batch's events took out of waiting, in a stable
        order: what they asked before the batch is not sent."""
        return sorted(self._answered)

    def end(self, case_name: str, status: str) -> None:
        """Notes the case ended if `status` (an event's) is final (`ENDED`)."""
        if status in ENDED.get(case_name.partition("/")[0], ()):
            self._ended.add(case_name)

    def ended(self) -> list[str]:
        """The cases the batch's events ended, in a stable order."""
        return sorted(self._ended)

    def user_ids(self) -> set[str]:
        """The users named as parties of the batch's cases."""
        return {p.user_id for parties in self._cases.values() for p in parties.values()} - {""}

    def forget(self, gone: Collection[tuple[str, str]]) -> None:
        """These parties (case, role) of erased people keep no address and no
        subject, whatever the events said: nobody is told. Nor do other
        parties keep a subject that is their words (`COPIES`)."""
        for name, role in gone:
            # Their jobs are the erasure's to cancel, not a change's to follow.
            self._contact_changes.pop((name, role), None)
            parties = self._cases[name]
            party = parties[role]
            if party.email or party.phone or party.subject:
                parties[role] = dataclasses.replace(party, email="", phone="", subject="")
                self._changed.add((name, role))
            for copy in COPIES:
                holder = parties.get(copy.holder)
                if (
                    not copy.template
                    and copy.owner == role
                    and name.startswith(copy.collection + "/")
                    and holder is not None
                    and holder.subject
                ):
                    parties[copy.holder] = dataclasses.replace(holder, subject="")
                    self._changed.add((name, copy.holder))

    def erased(self, job: NewJob, gone: Collection[tuple[str, str]]) -> bool:
        """Whether the job is for one of these parties (case, role) of erased
        people, or is a copy for another party of what they wrote (`COPIES`
        of one template; a subject that is their words reads as erased once
        revealed, and `forget` blanks the one a party row kept)."""
        if (job.case_name, job.party) in gone:
            return True
        return any(
            copy.template == job.template
            and job.case_name.startswith(copy.collection + "/")
            and job.party == copy.holder
            and (job.case_name, copy.owner) in gone
            for copy in COPIES
        )

    def changed(self) -> list[tuple[str, Party]]:
        """The parties the events changed, by case name, in a stable order."""
        return [(name, self._cases[name][role]) for name, role in sorted(self._changed)]


@dataclass(frozen=True)
class Planning:
    """When an event is planned, and the time zone dates are written in where
    neither a reader's phone number (`labels.phone_zone`) nor their case
    (`Party.time_zone`) tells one: the service's (`CASEMESH_TIME_ZONE`)."""

    now: datetime
    zone: ZoneInfo
    # Whether ticket e-mails can be answered by e-mail (Reply-To set).
    replies: bool = False


def plan_ticket(book: CaseParties, event: CloudEvent, message: Any, at: Planning) -> list[NewJob]:
    """The requester is named when the ticket is created."""
    header = message.header
    name = f"tickets/{header.ticket_id}"
    status = ev.TicketStatus.Name(header.status).removeprefix("TICKET_STATUS_")
    if isinstance(message, ev.TicketCreated):
        book.name(
            name,
            "requester",
            message.requester,
            message.contact,
            message.subject,
            status,
            header.version,
            key_id=book.key_of(lambda sealed: sealed.contact),
        )
    parties = book.of(name)
    requester = parties.get("requester")
    if requester is None:
        return unknown_case(event, name)
    book.leave(name, status, header.version)
    book.status(name, status, header.version)
    book.end(name, status)
    # Read before the update above: what the ticket was when this event came.
    step = ticket_step(message, requester.status)
    if step is None:
        return []
    return tell(event, name, header.ticket_id, {"requester": step}, parties, at)


def plan_appeal(book: CaseParties, event: CloudEvent, message: Any, at: Planning) -> list[NewJob]:
    """The filer is named when the case is filed (and again when they change
    their contact details); the uploader by a decision that removes their
    content or by their counter-notice, and they share the filer's subject."""
    header = message.header
    name = f"appeals/{header.appeal_id}"
    state, version = header.state, header.version
    if isinstance(message, aev.AppealFiled):
        # A report decision's appeal is known by the case it appeals (and told
        # in its own words: `for_report_appeal`); a copyright case's id would
        # read as code in a subject line, so such an appeal goes without one.
        appealed = message.appeal_of if message.appeal_of.startswith("report-cases/") else ""
        subject = message.work_title or message.removed_item or appealed
        filer = message.filer
        key = book.key_of(lambda sealed: sealed.filer.contact)
        # Only this event says the case's jurisdiction, and a notice's items:
        # its parties keep its zone, its filer the items for the uploader.
        zone = jurisdiction_zone(message.jurisdiction)
        items = message.infringing_items if message.kind == "TAKEDOWN_NOTICE" else ()
        book.name(
            name,
            "filer",
            filer.user_id,
            filer.contact,
            subject,
            state,
            version,
            key_id=key,
            time_zone=zone,
            items=items,
        )
    if isinstance(message, aev.AppealInfoAdded) and message.HasField("filer"):
        filer = message.filer
        key = book.key_of(lambda sealed: sealed.filer.contact)
        book.name(
            name,
            "filer",
            filer.user_id,
            filer.contact,
            "",
            state,
            version,
            replace=True,
            key_id=key,
        )
    if isinstance(message, aev.AppealInfoAdded):
        # What the filer added may name more items, and the event does not
        # carry them: the uploader is told none rather than some as all.
        book.items_unknown(name, "filer", version)
    uploader = named_uploader(message)
    if uploader is not None:
        parties = book.of(name)
        filer_row = parties.get("filer")
        title = filer_row.subject if filer_row is not None else ""
        book.name(
            name,
            "uploader",
            uploader.user_id,
            uploader.contact,
            title,
            state,
            version,
            replace=True,
            key_id=book.key_of(lambda sealed: sealed_uploader(sealed).contact),
            time_zone=filer_row.time_zone if filer_row is not None else "",
        )
    parties = book.of(name)
    if "filer" not in parties:
        return unknown_case(event, name)
    book.leave(name, state, version)
    book.status(name, state, version)
    book.end(name, state)
    party = parties["filer"]  # as it was until this event
    steps = appeal_steps(message, party.status, taken_down=party.items)
    steps = for_report_appeal(steps, party.subject)
    return tell(event, name, header.appeal_id, steps, parties, at)


def named_uploader(message: Any) -> aev.AppealParty | None:
    match message:
        case aev.AppealDecided() if message.HasField("affected_uploader"):
            return message.affected_uploader
        case aev.CounterNoticeFiled():
            return message.uploader
    return None


def sealed_uploader(sealed: Any) -> aev.AppealParty:
    """The uploader an event as published names (`named_uploader` found one
    in it once revealed)."""
    uploader = named_uploader(sealed)
    return aev.AppealParty() if uploader is None else uploader


def plan_report(book: CaseParties, event: CloudEvent, message: Any, at: Planning) -> list[NewJob]:
    """The event's subject is the case: a report (`reports/…`) has its
    reporter, a report case (`report-cases/…`) the uploader a decision names,
    a standing (`reporters/…`) the reporter. A case hears only of steps: an
    event without one leaves its status as it was."""
    header = message.header
    name = event.subject
    named = named_in_report(message)
    if named is not None:
        role, user_id, contact, subject = named
        book.name(
            name,
            role,
            user_id,
            contact,
            subject,
            header.state,
            header.version,
            replace=True,
            key_id=book.key_of(lambda sealed: sealed_contact(named_in_report(sealed))),
        )
    steps = report_steps(message)
    if not steps:
        return []
    parties = book.of(name)
    if not parties:
        return unknown_case(event, name)
    book.status(name, header.state, header.version)
    return tell(event, name, header.aggregate_id, steps, parties, at)


def sealed_contact(
    named: tuple[str, str, ev.ContactPreferences, str] | None,
) -> ev.ContactPreferences:
    """The contact of the party an event as published names (`named_in_report`)."""
    return ev.ContactPreferences() if named is None else named[2]


def named_in_report(message: Any) -> tuple[str, str, ev.ContactPreferences, str] | None:
    """The party this event names: role, user id, contact and subject."""
    match message:
        case rev.ReportFiled():
            word = label("target", message.target.type, message.contact.locale)
            return ("reporter", message.reporter, message.contact, f"{word} {message.target.id}")
        case rev.ReportCaseDecided() if message.HasField("affected_uploader"):
            u = message.affected_uploader
            return ("uploader", u.user_id, u.contact, message.statement.puid)
        case rev.ReporterWarned() | rev.ReporterSuspended() | rev.ReporterSuspensionLifted():
            return ("reporter", message.reporter, message.contact, "")
    return None


def plan_code(
    book: CaseParties, event: CloudEvent, message: hev.VerificationCodeIssued, at: Planning
) -> list[NewJob]:
    """A one-time code, by SMS to the number it proves (nobody else's party)."""
    holder = Party(
        role="holder",
        user_id=message.user_id,
        locale=message.locale or "zh-CN",
        email="",
        phone=message.phone,
        channels=["SMS"],
        subject="",
        status="",
        key_id=book.key_of(lambda sealed: sealed.phone),
    )
    request = event.subject.rpartition("/")[2]
    steps = {"holder": code_step(message)}
    return tell(event, event.subject, request, steps, {"holder": holder}, at)


def address(text: str) -> str:
    """An address as an event carries it, "" for an erased person's."""
    return "" if is_erased(text) else text


def contact_key(found: ev.ContactPreferences | str) -> uuid.UUID | None:
    """The id of the person's data key a contact's addresses (or one
    address) were sealed under, as an event carries them; None for
    addresses given in clear. (The addresses of one contact are sealed
    together, under one key.)"""
    texts = (found,) if isinstance(found, str) else (found.email, found.phone)
    for text in texts:
        key = person_key_of(text)
        if key is not None:
            return key
    return None


def reach(party: Party, channel: str) -> str:
    """Where the party is told on `channel`: its address there, "" when they
    did not choose the channel or have no address on it."""
    if channel not in party.channels:
        return ""
    return address(party.email if channel == "EMAIL" else party.phone)


def unknown_case(event: CloudEvent, name: str) -> list[NewJob]:
    log.warning("event.unknown_case", event_id=event.id, case=name)
    return []


def tell(
    event: CloudEvent,
    name: str,
    ident: str,
    steps: dict[str, Step],
    parties: dict[str, Party],
    at: Planning,
) -> list[NewJob]:
    """A job for each step, on each channel its party chose and has an
    address for, written in their language, its times in the zone their
    number tells, else their case's (a copyright case's jurisdiction's),
    else the service's (`Planning`); an SMS not in its number's zone says
    which (`phone_changes.sms_in`)."""
    jobs: list[NewJob] = []
    ref = case_number(ident)
    for role, step in steps.items():
        party = parties.get(role)
        if party is None:
            continue
        email_chosen = bool(reach(party, "EMAIL"))
        for channel in party.channels:
            recipient = reach(party, channel)
            if not recipient:
                continue
            # What the provider's approved template is filled with, and in
            # which language (a provider keeps one template per language).
            params = {"ref": ref, "party": role, "locale": party.locale}
            own = phone_zone(party.phone, at.now)
            zone = own or case_zone(party.time_zone) or at.zone
            if channel == "EMAIL":
                values = email_values(step, ref, party.subject)
                # The signature says a reply is read exactly where it is (the
                # sender sets Reply-To on ticket e-mails when replies are set up).
                values["replies"] = (
                    at.replies
                    and name.startswith("tickets/")
                    and step.template not in NO_REPLY_STEPS
                )
                email = render_email(step.template, party.locale, zone, values)
                subject, body, html = email.subject, email.text, email.html
            else:
                subject, html = "", ""
                # A reader whose number tells no zone (a country spanning
                # several) is told times in their case's or the service's,
                # saying so.
                body, shown = sms_in(
                    zone,
                    step.template,
                    party.locale,
                    sms_values(step, ref, email_chosen),
                    named=own is None,
                )
                # What the provider's approved template is filled with (and
                # what writes it again for another number: `written_for`).
                params.update(step.sms)
                params.update(shown)
            job = NewJob(
                cause_event_id=event.id,
                case_name=name,
                party=role,
                channel=channel,
                recipient=recipient,
                template=step.template,
                locale=party.locale,
                subject=subject,
                body=body,
                params=params,
                html=html,
                user_id=party.user_id,
                expires_at=step.expires,
                # Only an e-mail shows what a person wrote (an SMS never does).
                words_of=step.words_of if channel == "EMAIL" else "",
                written_at=event.time if step.words_of and channel == "EMAIL" else None,
                key_id=party.key_id,
            )
            jobs.append(job)
    return jobs
