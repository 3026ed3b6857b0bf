"""What every case service's application shares: idempotent creation keyed
by the caller's request id, changes guarded by an etag and made safe to retry
by a request id (`Retry`), who may see a case, and pages of the case index.

A subclass names its collection and says who may see a case; its commands
stay its own. The case index is handed in (`CaseIndex` on PostgreSQL from
the composition root); without one the application keeps an in-memory index,
so it runs whole on the library's in-memory store, as the application tests
run it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypedDict, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from casemesh.platform import errors
from casemesh.platform.caseindex import (
    CaseIndex,
    CaseIndexLike,
    CaseRow,
    Created,
    MemoryCaseIndex,
    Page,
    decode_page_token,
)
from casemesh.platform.eventstore import TracedApplication, postgres_env, schema_lock, side_table
from casemesh.platform.expiring import ExpiringCase
from casemesh.platform.identity import Identity
from casemesh.platform.logging import get_logger
from casemesh.platform.paging import document_bytes, fitting, page_of, page_size_of
from casemesh.platform.personal.mapper import SealingMapper
from casemesh.rules import tickets as rules

if TYPE_CHECKING:
    from casemesh.platform.personal.sealing import Sealer

log = get_logger(__name__)

C = TypeVar("C", bound=Aggregate)
G = TypeVar("G", bound=Aggregate)


class Draft(Protocol):
    """What a client asked to create: its request id and the rest."""

    @property
    def request_id(self) -> str: ...


def fingerprint(draft: Draft, *, ascii_only: bool = False) -> str:
    """The request without its id: a retry with the same id must match it."""
    body = {k: v for k, v in vars(draft).items() if k != "request_id"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=ascii_only, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def same_request(stored: str, draft: Draft) -> bool:
    # Either form matches: tickets store theirs with non-ASCII characters as
    # they are, appeals and reports escaped (`ascii_fingerprints`).
    return stored in (fingerprint(draft), fingerprint(draft, ascii_only=True))


@dataclass(frozen=True)
class Retry:
    """A change sent under a request id: the id, and a fingerprint of who
    asked what, that a retry under the same id must match."""

    request_id: str
    fingerprint: str

    @classmethod
    def of(cls, request_id: str, who: Identity, command: str, **arguments: Any) -> Retry | None:
        """None when no request id was sent (the change is then made each time
        it arrives); a malformed id is INVALID_ARGUMENT naming `request_id`."""
        if not request_id:
            return None
        if not rules.REQUEST_ID.match(request_id):
            raise errors.InvalidArgument.field(
                "request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'"
            )
        body = {"caller": who.subject, "command": command, **arguments}
        text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
        return cls(request_id, hashlib.sha256(text.encode()).hexdigest())


# Attributes stamped on the events a change under a request id recorded (the
# library stores an event's attributes and hands a command method only its own).
RETRY_ID = "change_request_id"
RETRY_FINGERPRINT = "change_request_fingerprint"


def stamp(aggregate: Aggregate, retry: Retry | None) -> None:
    """Marks the aggregate's pending events as made under `retry`'s request id
    (`CaseApplication.answered` finds them)."""
    if retry is None:
        return
    for pending in aggregate.pending_events:
        object.__setattr__(pending, RETRY_ID, retry.request_id)
        object.__setattr__(pending, RETRY_FINGERPRINT, retry.fingerprint)


class CaseOptions(TypedDict, total=False):
    """What every case application is constructed with besides its own
    settings (`CaseApplication.__init__` says what each does); a subclass
    takes them as `**options: Unpack[CaseOptions]` and passes them on."""

    index: CaseIndexLike | None
    sealer: Sealer | None
    reveal_personal: bool


class CaseApplication(TracedApplication, Generic[C]):
    case_type: type[C]  # the aggregate a case is (a store may hold others too)
    collection: ClassVar[str]  # in resource names: "tickets" of tickets/{id}
    noun: ClassVar[str] = "case"  # in messages: "the case changed since …"
    # Said of a lost race (`change`): what else may have changed the case.
    race_hint: ClassVar[str] = ""
    # How this service's stored fingerprints were made (see `fingerprint`):
    # kept, so that a retry landing on a replica of the previous release
    # during a rolling deploy still matches.
    ascii_fingerprints: ClassVar[bool] = False
    # The only events that set deadlines (`deadlines_of`), so that its timer
    # reads no other (`casemesh.platform.timers`); empty: any event may.
    deadline_events: ClassVar[tuple[type, ...]] = ()

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        index: CaseIndexLike | None = None,
        sealer: Sealer | None = None,
        reveal_personal: bool = True,
    ) -> None:
        super().__init__(env, sealer=sealer, reveal_personal=reveal_personal)
        self.index: CaseIndexLike = index if index is not None else MemoryCaseIndex()
        # The cases created here, for the case index projector (`IndexProjector`).
        self.created = Created()

    def visible_to(self, case: C, who: Identity) -> bool:
        """Whether `who` may see the case (agents see every case)."""
        raise NotImplementedError

    def forget_keys(self, person: str) -> None:
        """Drops an erased person's keys from this process's memory, and the
        cases it created lately, which hold their text revealed."""
        if self.sealer is not None:
            self.sealer.keys.forget(person)
        self.created.clear()

    def expire_case(self, case: ExpiringCase, parts: Sequence[ExpiringCase] = ()) -> bool:
        """Erases a case whose retention period ran out: records it expired,
        so that it takes no change from then on, then destroys every case key
        its stored events were sealed under (`PersonalFields(per_case=True)`),
        so that its personal fields read as erased, in every event, other
        cases of the same people untouched. `parts` are aggregates of the
        case's own whose texts are sealed under its keys (a report case's
        reports): recorded expired with it, in one transaction, their keys
        destroyed with its. Refused, before anything is recorded or
        destroyed, for a case (or part) that has not ended. A change that
        reached the case after it was read makes the record fail (the
        version moved on): nothing is destroyed, and the deadline stays due.
        A case already recorded expired (a crash came before its keys were
        destroyed) has its keys destroyed now; destroying twice is harmless.

        A case with personal text sealed under no case key (stored before
        case keys came in) cannot be erased this way: it is left as it is,
        logged (`case.not_expirable`), and False returned."""
        whole = [case, *parts]
        if not case.expired:
            for each in whole:
                each.require_expirable()

        def mark() -> None:
            for each in whole:
                each.expire(actor="system")

        name = f"{self.collection}/{case.id}"
        return self.erase_sealed(name, whole, None if case.expired else mark)

    def erase_sealed(
        self,
        name: str,
        aggregates: Sequence[Aggregate],
        mark: Callable[[], None] | None,
        within: UUID | None = None,
    ) -> bool:
        """Destroys the case keys the aggregates' stored events were sealed
        under (given `within`, those of the events sealed for that case
        alone), once `mark` (None: marked before) has recorded why on them
        and they are saved, in one transaction; True if it did. Left as it
        is, logged (`case.not_expirable`), when personal data is not sealed,
        or when any of those texts was sealed under no case key: destroying
        keys would not erase those. `name` names it in the log."""
        if self.sealer is None or not isinstance(self.mapper, SealingMapper):
            log.warning("case.not_expirable", case=name, why="personal data not sealed")
            return False
        stored = chain.from_iterable(self.recorder.select_events(each.id) for each in aggregates)
        keys, unkeyed = self.mapper.case_keys_in(stored, within)
        if unkeyed and mark is not None:
            log.warning("case.not_expirable", case=name, texts_without_case_key=unkeyed)
            return False
        if mark is not None:
            mark()
            self.save(*aggregates)  # refused if any changed since `keys` were read
        destroyed = self.sealer.keys.destroy(keys) if keys else 0
        log.info(
            "case.expired",
            case=name,
            parts=len(aggregates) - 1,
            case_keys=destroyed,
            again=mark is None,
        )
        return True

    def forget_person(
        self, person: str, to_row: Callable[[C], CaseRow], *, lately: bool = True
    ) -> int:
        """After `person` was erased: drops their keys from this process's
        memory, then renders the index rows of their cases again (`to_row`),
        their fields now erased. Returns how many cases. Idempotent. Not
        `lately` (an erasure heard long after it was written), no key is
        dropped: none of theirs from before it is left in memory, and
        dropping refuses the person, who may have come back, for a while."""
        if lately:
            self.forget_keys(person)
        cases: list[C] = [self.repository.get(UUID(i)) for i in self.index.cases_of(person)]
        self.index.rewrite([to_row(case) for case in cases])
        return len(cases)

    # -- creating ---------------------------------------------------------

    def fingerprint(self, draft: Draft) -> str:
        return fingerprint(draft, ascii_only=self.ascii_fingerprints)

    def replayed(self, ident: UUID, draft: Draft) -> C | None:
        """The case an earlier call with this request id created (None: none
        did); a different request under the same id is ALREADY_EXISTS."""
        try:
            case: C = self.repository.get(ident)
        except AggregateNotFoundError:
            return None
        if not same_request(case.request_fingerprint, draft):  # type: ignore[attr-defined]
            raise errors.AlreadyExists(
                f"request_id {draft.request_id!r} was already used for a different {self.noun}",
                reason="REQUEST_ID_REUSED",
            )
        return case

    def create(self, case: C, draft: Draft) -> C:
        """Saves a new case; a concurrent retry of the same create that won the
        race answers with its case. The case saved is kept for the case index
        (`created`): the caller does not change it, nor anything it holds, from
        then on (a change loads the case afresh, as `change` does)."""
        clears = self.created.clears
        try:
            self.save(case)
        except IntegrityError:
            existing = self.replayed(case.id, draft)
            if existing is None:
                raise errors.Aborted(
                    f"the {self.noun} is being created by a concurrent request",
                    reason="CONCURRENT_CHANGE",
                ) from None
            return existing
        self.created.add(case, clears)
        return case

    # -- reading and changing -----------------------------------------------

    def load_visible(self, who: Identity, ident: str, *, version: int | None = None) -> C:
        """The case, if `who` may see it; NOT_FOUND otherwise, so that nobody
        learns that someone else's case exists. Given a `version`, the case
        as it was then, read no further (1: as it was opened, for a caller
        that reads its events itself and needs only whose it is)."""
        try:
            case: Aggregate = self.repository.get(UUID(ident), version=version)
        except (AggregateNotFoundError, ValueError):
            raise errors.NotFound(f"{self.collection}/{ident} not found") from None
        if not isinstance(case, self.case_type):  # another kind of aggregate's id
            raise errors.NotFound(f"{self.collection}/{ident} not found")
        if not (who.is_agent or self.visible_to(case, who)):
            raise errors.NotFound(f"{self.collection}/{ident} not found")
        return case

    def change(
        self,
        who: Identity,
        ident: str,
        etag: str,
        command: Callable[[C], Iterable[Aggregate] | None],
        retry: Retry | None = None,
    ) -> C:
        """Loads, runs one domain command and saves the case, with any other
        aggregates the command returns, in one transaction; a stale etag, or a
        change by someone else at the same moment, is ABORTED. Under a request
        id (`retry`), a change the case already recorded with that id answers
        as it did the first time, before the etag (which it made stale) is
        read; another change under the same id is ALREADY_EXISTS. Request ids
        are per case (only the case's own events carry them)."""
        case = self.load_visible(who, ident)
        if retry is not None and (earlier := self.answered(case, retry)) is not None:
            return earlier
        if rules.stale(etag, self.version_shown(case, who)):
            raise errors.Aborted(
                f"the {self.noun} changed since you read it; read it again and retry",
                reason="STALE_ETAG",
            )
        others = command(case) or ()
        stamp(case, retry)
        try:
            self.save(case, *others)
        except IntegrityError:
            # A concurrent retry of this very change may have won the race.
            if retry is not None:
                earlier = self.answered(self.load_visible(who, ident), retry)
                if earlier is not None:
                    return earlier
            raise errors.Aborted(
                f"someone else changed the {self.noun} at the same moment{self.race_hint};"
                " read it again and retry",
                reason="CONCURRENT_CHANGE",
            ) from None
        return case

    def version_shown(self, case: C, who: Identity) -> int:
        """The case's version as `who` is shown it, which their etag names
        (a service that hides some events from some callers shows them a
        version without those)."""
        return int(case.version)

    def change_under(
        self,
        who: Identity,
        ident: str,
        etag: str,
        request_id: str,
        command: Callable[[C], Iterable[Aggregate] | None],
        name: str,
        /,
        **arguments: Any,
    ) -> C:
        """`change` with `command`, retried safely under `request_id`: a retry
        must send the same command `name` and `arguments` (see `Retry.of`)."""
        return self.change(who, ident, etag, command, Retry.of(request_id, who, name, **arguments))

    def run(
        self,
        who: Identity,
        ident: str,
        etag: str,
        request_id: str,
        method: Callable[..., Iterable[Aggregate] | None],
        /,
        **arguments: Any,
    ) -> C:
        """`change_under` with the case's own command `method` (e.g.
        `Ticket.solve`), called by `who` (its `actor`) with `arguments`; the
        method's name is the command's in a retry's fingerprint."""
        return self.change_under(
            who,
            ident,
            etag,
            request_id,
            lambda case: method(case, actor=who.subject, **arguments),
            method.__name__,
            **arguments,
        )

    def changed_before(self, who: Identity, ident: str, retry: Retry | None) -> C | None:
        """The case as an earlier change under `retry`'s request id left it, or
        None: for a command whose checks may not pass again later (they depend
        on the date, say), asked before them, so a retry gets its first answer."""
        return self.answered(self.load_visible(who, ident), retry) if retry else None

    def answered(self, case: G, retry: Retry, noun: str = "") -> G | None:
        """The case (or another aggregate of the store, called `noun` in the
        message) as the change made under `retry`'s request id left it (None: no
        change was made under it); another change under it is ALREADY_EXISTS."""
        version = None
        for recorded in self.repository.event_store.get(case.id):
            if vars(recorded).get(RETRY_ID) != retry.request_id:
                continue
            if vars(recorded).get(RETRY_FINGERPRINT) != retry.fingerprint:
                raise errors.AlreadyExists(
                    f"request_id {retry.request_id!r} was already used for a different change"
                    f" to this {noun or self.noun}",
                    reason="REQUEST_ID_REUSED",
                )
            version = recorded.originator_version
        if version is None:
            return None
        earlier: G = self.repository.get(case.id, version=version)
        return earlier

    def page_cases(
        self, who: Identity, statuses: list[str], page_size: int, page_token: str
    ) -> Page[dict[str, Any]]:
        """The cases `who` may list (an agent: all), newest first, as the index
        renders them. Reads its own writes: waits briefly for the index."""
        party = None if who.is_agent else who.subject
        return self.find_cases(party, statuses, page_size, page_token)

    def find_cases(
        self,
        party: str | None,
        statuses: list[str],
        page_size: int,
        page_token: str,
        *,
        matches: Mapping[str, str] | None = None,
        text: str = "",
        text_fields: Sequence[str] = (),
    ) -> Page[dict[str, Any]]:
        """Cases of `party` (None: every case) with these statuses, document
        fields and words (see CaseIndex.page), newest first; the caller has
        checked who may see them."""
        limit = page_size_of(page_size)
        after = page_after(page_token)
        try:
            self.index.wait(self.name, self.recorder.max_notification_id(), timeout=3.0)
        except TimeoutError:
            log.warning("case_index.lagging", application=self.name)
        docs = self.index.page(
            party=party,
            statuses=statuses,
            after=after,
            limit=limit + 1,
            matches=matches,
            text=text,
            text_fields=text_fields,
        )
        return paged(docs, limit)

    # -- checks ---------------------------------------------------------------

    @staticmethod
    def require_agent(who: Identity, what: str) -> None:
        if not who.is_agent:
            raise errors.PermissionDenied(f"only agents may {what}")

    @staticmethod
    def require_text(field: str, value: str, limit: int, *, required: bool = True) -> str:
        v = errors.Violations()
        value = rules.text(v, field, value, limit=limit, required=required)
        v.raise_if_any()
        return value


def page_after(page_token: str) -> tuple[datetime, str] | None:
    try:
        return decode_page_token(page_token)
    except ValueError:
        raise errors.InvalidArgument.field("page_token", "is not a token this API gave") from None


def paged(docs: list[dict[str, Any]], limit: int) -> Page[dict[str, Any]]:
    """A page of `limit` from `limit + 1` documents, newest first, or fewer
    should they not fit `PAGE_BYTES`; the token names the last one ("" when
    nothing follows)."""
    kept = fitting((document_bytes(d) for d in docs), limit)
    rows, token = page_of(docs[: kept + 1], kept, _created)
    return Page(rows, token)


def _created(doc: dict[str, Any]) -> tuple[datetime, str]:
    """A case document's creation time and id: where its page ends."""
    return datetime.fromisoformat(doc["create_time"]), doc["id"]


A = TypeVar("A", bound=CaseApplication[Any])


def open_indexed(
    database_url: str,
    table: str,
    make: Callable[..., A],
    *,
    pool_size: int,
    index: Callable[[Any, str], CaseIndex] = CaseIndex,
) -> A:
    """`make(env=env)` with `env` the database at `database_url` (a pool of
    `pool_size` connections), its case index in the table `table` (an
    `index`: a `CaseIndex`, or a kind of its own); `make` is the
    application's class, its other arguments bound (`functools.partial`).
    Given a `sealer` (`CaseOptions`), personal fields are stored sealed, and
    read back clear (`reveal_personal=False`: as tokens, for the relay)."""
    with schema_lock(database_url):
        app = make(env=postgres_env(database_url, pool_size=pool_size))
        app.index = side_table(app, lambda datastore: index(datastore, table))
    return app
