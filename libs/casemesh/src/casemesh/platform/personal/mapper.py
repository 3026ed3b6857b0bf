"""Personal fields sealed in the event store: the events' stored state holds
tokens, the application's aggregates see clear text.

`SealingMapper` is the `TracingMapper` that also seals, before an event's
state is encoded, the fields `PersonalFields` names for its class, each with
its owner's key. Reading, it reveals them (`reveal=True`: the writer
services, whose aggregates need the text) or leaves the tokens in place
(`reveal=False`: the relay, so that what it renders onto Kafka carries
tokens, and consumers reveal with `reveal_message`; and `leaving_sealed`,
for the timers, which need an event's structure only).

`TracedApplication` builds one when given a sealer and a `personal_fields`
spec. A spec `per_case` seals each aggregate's texts under its case key too
(the aggregate's id is the case, unless the event names another), as does
an event that names its case; `case_keys_in` finds, in stored events, the
case keys they were sealed under, for a case's retention to destroy.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Cipher, Compressor, Mapper, StoredEvent, Transcoder

from casemesh.platform.eventstore import TracingMapper
from casemesh.platform.personal.errors import PersonalDataError
from casemesh.platform.personal.fields import PersonalFields
from casemesh.platform.personal.sealing import Sealer, case_key_of


class SealingMapper(TracingMapper):
    """Seals events' personal fields on the way into the store and, if
    `reveal`, reveals them on the way out (one key look-up per event).

    Writing leaves the domain event the application holds untouched: the
    sealed state goes into a copy. An event whose person is not known
    (no owner in its state) but that holds personal text raises
    `ValueError` rather than store the text in the clear.

    Revealing, an erased person's fields read as `ERASED`; the event keeps
    its shape and every other field. A token that cannot be revealed
    (altered, another person's, a key the key database never held, or one
    that does not unwrap) raises its `PersonalDataError`: a stored event that
    cannot be read is a fault to fix, not data to skip. Text stored before
    sealing existed is read as it is.
    """

    def __init__(
        self,
        transcoder: Transcoder,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
        *,
        sealer: Sealer,
        fields: PersonalFields,
        reveal: bool = True,
    ) -> None:
        super().__init__(transcoder, compressor, cipher)
        self.sealer = sealer
        self.fields = fields
        self.reveal = reveal

    def to_stored_event(self, domain_event: DomainEventProtocol[Any]) -> StoredEvent:
        personal = self.fields.of(type(domain_event))
        if personal is None:
            return super().to_stored_event(domain_event)
        state = vars(domain_event)
        sealing: list[Callable[[str], str]] = []

        def seal(text: str) -> str:
            # Keys looked up at the first text: an event may hold none.
            if not sealing:
                person = personal.person(state)
                if person is None:
                    raise ValueError(
                        f"{type(domain_event).__qualname__} holds personal text but names no person"
                    )
                case = self.fields.case_of(personal, domain_event)
                sealing.append(self.sealer.sealing(person, case))
            return sealing[0](text)

        rewritten = personal.rewrite(state, seal)
        if not sealing:
            return super().to_stored_event(domain_event)
        sealed = object.__new__(type(domain_event))
        object.__setattr__(sealed, "__dict__", rewritten)
        return super().to_stored_event(sealed)

    def case_keys_in(
        self, stored_events: Iterable[StoredEvent], within: uuid.UUID | None = None
    ) -> tuple[set[uuid.UUID], int]:
        """The case keys the personal texts of these events were sealed
        under, and how many of their texts were sealed under none (stored
        before case keys, or before sealing): destroying keys cannot erase
        those. Given `within`, only the events sealed for that case count."""
        found: set[uuid.UUID] = set()
        unkeyed = 0
        for stored_event in stored_events:
            domain_event = super().to_domain_event(stored_event)
            personal = self.fields.of(type(domain_event))
            if personal is None:
                continue
            if within is not None and self.fields.case_of(personal, domain_event) != within:
                continue
            state = vars(domain_event)
            found.update(k for t in personal.texts(state) if (k := case_key_of(t)) is not None)
            # A request fingerprint stored before they were sealed stays as
            # it is (a hash of what was asked), and does not keep the case
            # from expiring: only the texts themselves count.
            unkeyed += [case_key_of(t) for t in personal.texts(state, hashes=False)].count(None)
        return found, unkeyed

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[Any]:
        domain_event = super().to_domain_event(stored_event)
        personal = self.fields.of(type(domain_event))
        if not self.reveal or personal is None:
            return domain_event
        state = vars(domain_event)
        texts = personal.texts(state)
        if not texts:
            return domain_event
        found = self.sealer.look_many(texts, personal.person(state))
        for looked in found.values():
            if looked.error is not None:
                raise _unreadable(stored_event, looked.error)
        # The decoded event is this mapper's own: its state can be replaced.
        object.__setattr__(
            domain_event, "__dict__", personal.rewrite(state, lambda t: found[t].text)
        )
        return domain_event


def leaving_sealed(mapper: Mapper[Any]) -> Mapper[Any]:
    """A mapper that reads events as `mapper` does, their personal texts
    left sealed: for readers that need an event's structure only (a timer
    scheduling deadlines), which then neither look up keys nor decrypt."""
    if isinstance(mapper, SealingMapper) and mapper.reveal:
        return SealingMapper(
            mapper.transcoder,
            mapper.compressor,
            mapper.cipher,
            sealer=mapper.sealer,
            fields=mapper.fields,
            reveal=False,
        )
    return mapper


def _unreadable(stored_event: StoredEvent, error: PersonalDataError) -> PersonalDataError:
    """The same kind of error, saying which stored event it stopped."""
    unreadable = type(error)(
        f"{error} (in {stored_event.topic} of {stored_event.originator_id}"
        f" at version {stored_event.originator_version})"
    )
    unreadable.__cause__ = error
    return unreadable
