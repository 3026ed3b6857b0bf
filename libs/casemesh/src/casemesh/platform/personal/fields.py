"""Which fields of which domain events are personal data, and whose.

A service declares it once, beside its aggregate:

    TICKET_PERSONAL = PersonalFields(
        {
            Ticket.Created: PersonalEvent(
                "requester", ("subject", "description", "contact.email", "evidence[].name")
            ),
        }
    )

The owner is the name of the event's field that holds the person (or a
function of the event's state, for anything else); it must not be one of
the sealed fields itself, since it is read to reveal them. A path names a
string at the top level (`subject`), inside a dict (`contact.email`), or in
each item of a list (`evidence[].name`; `tags[]` for a list of strings). A
path that is absent, or that leads to anything but a non-empty string, is
left as it is. Paths describe the event's current class version: they are
applied after upcasting when reading. Each event's request fingerprints are
sealed too (`FINGERPRINTS`).

`per_case=True` seals each aggregate's texts under a key of its own too
(the aggregate being a case: see `sealing`), so that a case can be erased
alone when its retention period runs out. An event whose texts belong to
another aggregate's case (a report, to the case it joined) names the field
that holds that case's id (`PersonalEvent(..., case="case_id")`); its
texts are sealed under that case's key, whatever `per_case` says.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# Whose personal data an event holds, from its state.
Owner = str | Callable[[Mapping[str, Any]], object]
# A path's segments: each a field name, and whether it names a list.
Segments = tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class PersonalEvent:
    """One event class's personal fields and the person they belong to."""

    owner: Owner
    paths: tuple[str, ...]
    # The field holding the id of the case its texts are sealed under too
    # ("originator_id": the aggregate's own); "": as `PersonalFields` says.
    case: str = ""
    # Paths sealed with the others when the event names its person, and
    # left as they are when it names none (`FINGERPRINTS`).
    hashes: tuple[str, ...] = ()
    _parsed: tuple[Segments, ...] = field(init=False, repr=False, compare=False)
    _hashes: tuple[Segments, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.paths, str):
            raise TypeError("paths must be a tuple of paths, not one string")
        object.__setattr__(self, "_parsed", tuple(_parse_path(p) for p in self.paths))
        object.__setattr__(self, "_hashes", tuple(_parse_path(p) for p in self.hashes))

    def _paths(self, state: Mapping[str, Any], hashes: bool = True) -> tuple[Segments, ...]:
        if hashes and self._hashes and self.person(state) is not None:
            return self._parsed + self._hashes
        return self._parsed

    def person(self, state: Mapping[str, Any]) -> str | None:
        """The person the event's personal fields belong to, if it names one."""
        found = state.get(self.owner) if isinstance(self.owner, str) else self.owner(state)
        return str(found) if found else None

    def case_of(self, state: Mapping[str, Any]) -> uuid.UUID | None:
        """The case named by the `case` field, if the event names one."""
        found = state.get(self.case) if self.case else None
        return uuid.UUID(str(found)) if found else None

    def texts(self, state: Mapping[str, Any], *, hashes: bool = True) -> list[str]:
        """Every personal text in `state`, in path order (without `hashes`,
        those at the hash paths left out)."""
        found: list[str] = []

        def note(text: str) -> str:
            found.append(text)
            return text

        for segments in self._paths(state, hashes):
            _rewrite(state, segments, note)
        return found

    def rewrite(self, state: Mapping[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
        """A copy of `state` with each personal text replaced by `change(text)`.
        Only the dicts and lists on the paths are copied; `state` and what it
        holds are left untouched (an event's state is shared with its
        aggregate)."""
        copied = dict(state)
        for segments in self._paths(state):
            copied = _rewrite(copied, segments, change)
        return copied


# A request's fingerprint (`cases.fingerprint`, `cases.Retry`), which an
# event made under a request id carries, is a hash of what the request said:
# a short text in it (a reply, a phone number, a rating's words) can be found
# from the hash by trying every candidate. So wherever an event holds a
# person's texts, its fingerprints are sealed with them, under the same key
# (an event that names nobody, a decision naming no uploader, keeps them:
# they hash no one's words then).
FINGERPRINTS = ("request_fingerprint", "change_request_fingerprint")


class PersonalFields:
    """The personal fields of a service's domain events, by event class (and
    their request fingerprints: `FINGERPRINTS`)."""

    def __init__(self, events: Mapping[type, PersonalEvent], *, per_case: bool = False) -> None:
        self._events = {
            kind: replace(personal, hashes=FINGERPRINTS) for kind, personal in events.items()
        }
        self.per_case = per_case

    def of(self, event_class: type) -> PersonalEvent | None:
        """What is personal in events of `event_class`, if anything."""
        return self._events.get(event_class)

    def case_of(self, personal: PersonalEvent, domain_event: Any) -> uuid.UUID | None:
        """The case whose key seals the event's texts too, if any: the one
        the event names (`PersonalEvent.case`), else, `per_case`, its
        aggregate."""
        named = personal.case_of(vars(domain_event))
        if named is not None or not self.per_case:
            return named
        found: uuid.UUID = domain_event.originator_id
        return found


def _parse_path(path: str) -> Segments:
    segments = []
    for segment in path.split("."):
        name = segment.removesuffix("[]")
        if not name or "[" in name or "]" in name:
            raise ValueError(f"not a personal field path: {path!r}")
        segments.append((name, segment.endswith("[]")))
    return tuple(segments)


def _rewrite(value: Any, segments: Segments, change: Callable[[str], str]) -> Any:
    """`value` with the string at `segments` changed, copying only what changes."""
    if not segments:
        return change(value) if isinstance(value, str) and value else value
    # (Events' state is made of dicts; the ABC's check is the slow path.)
    if not isinstance(value, (dict, Mapping)):
        return value
    (name, is_list), rest = segments[0], segments[1:]
    if name not in value:
        return value
    inner = value[name]
    if is_list:
        if not isinstance(inner, list | tuple):
            return value
        items = [_rewrite(item, rest, change) for item in inner]
        changed: Any = type(inner)(items) if isinstance(inner, tuple) else items
        if all(a is b for a, b in zip(items, inner, strict=True)):
            return value
    else:
        changed = _rewrite(inner, rest, change)
        if changed is inner:
            return value
    copied = dict(value)
    copied[name] = changed
    return copied
