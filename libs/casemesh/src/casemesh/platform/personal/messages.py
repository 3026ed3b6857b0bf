"""Revealing a protobuf event message: the one function a consumer calls
before it reads personal fields.

The relay publishes events with their personal fields as tokens, in the
same string fields that held the text. `reveal_message` finds every string
field holding a token, anywhere in the message (nested messages, repeated
fields, map values), reveals them together, and gives a copy with the
texts in place. It never fails for one bad field: an erased person's field
reads `ERASED`, a token that cannot be revealed reads `UNREADABLE`, and the
result says which fields those were, for the consumer to log or count.
Only the key database being away raises. Other strings, and bytes fields,
are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from casemesh.platform.personal.aio import AsyncSealer
from casemesh.platform.personal.errors import PersonalDataError
from casemesh.platform.personal.sealing import Disclosure, Revealed, Sealer, is_token

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class RevealedMessage(Generic[M]):
    """A message with its personal fields revealed, and which could not be.

    Fields are named by path, e.g. `contact.email`, `evidence[0].name`,
    `labels["team"]`."""

    message: M
    # The fields whose person was erased (they read `ERASED`).
    erased: tuple[str, ...] = ()
    # The fields whose token could not be revealed (they read `UNREADABLE`),
    # with why.
    unreadable: Mapping[str, PersonalDataError] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Slot:
    path: str
    token: str
    put: Callable[[str], None]


def reveal_message(sealer: Sealer, message: M) -> RevealedMessage[M]:
    """A copy of `message` with every personal field revealed (one key
    look-up for all of them)."""
    copy, slots = _copy_with_slots(message)
    if not slots:
        return RevealedMessage(copy)
    return _fill(copy, slots, sealer.look_many(s.token for s in slots))


async def reveal_message_async(sealer: AsyncSealer, message: M) -> RevealedMessage[M]:
    """As `reveal_message`, from asyncio code."""
    copy, slots = _copy_with_slots(message)
    if not slots:
        return RevealedMessage(copy)
    return _fill(copy, slots, await sealer.look_many(s.token for s in slots))


async def reveal_messages_async(
    sealer: AsyncSealer, messages: Sequence[M]
) -> list[RevealedMessage[M]]:
    """As `reveal_message_async` for each of `messages`, with one key look-up
    for them all (a consumer's batch)."""
    copies = [_copy_with_slots(message) for message in messages]
    tokens = {slot.token for _, slots in copies for slot in slots}
    found = await sealer.look_many(tokens) if tokens else {}
    return [_fill(copy, slots, found) if slots else RevealedMessage(copy) for copy, slots in copies]


def token_paths(message: Message) -> list[str]:
    """The paths of the fields `reveal_message` would take for tokens (any
    text in a token's form, at any depth), e.g. `notice.infringing_items[1]`,
    `labels["en"]`."""
    slots: list[_Slot] = []
    _find(message, "", slots)
    return [slot.path for slot in slots]


def _copy_with_slots(message: M) -> tuple[M, list[_Slot]]:
    copy = type(message)()
    copy.CopyFrom(message)
    slots: list[_Slot] = []
    _find(copy, "", slots)
    return copy, slots


def _fill(copy: M, slots: list[_Slot], found: Mapping[str, Revealed]) -> RevealedMessage[M]:
    erased: list[str] = []
    unreadable: dict[str, PersonalDataError] = {}
    for slot in slots:
        looked = found[slot.token]
        slot.put(looked.text)
        if looked.disclosure is Disclosure.ERASED:
            erased.append(slot.path)
        elif looked.error is not None:
            unreadable[slot.path] = looked.error
    return RevealedMessage(copy, tuple(erased), unreadable)


def _find(message: Message, prefix: str, slots: list[_Slot]) -> None:
    for fd, value in message.ListFields():
        path = prefix + fd.name
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            entry = fd.message_type
            if entry is not None and entry.GetOptions().map_entry:
                _find_in_map(entry, value, path, slots)
            elif fd.is_repeated:
                for i, item in enumerate(value):
                    _find(item, f"{path}[{i}].", slots)
            else:
                _find(value, path + ".", slots)
        elif fd.type == FieldDescriptor.TYPE_STRING:
            if fd.is_repeated:
                for i, item in enumerate(value):
                    if is_token(item):
                        slots.append(_Slot(f"{path}[{i}]", item, _item_setter(value, i)))
            elif is_token(value):
                slots.append(_Slot(path, value, _field_setter(message, fd.name)))


def _find_in_map(entry: Descriptor, entries: Any, path: str, slots: list[_Slot]) -> None:
    value_fd = entry.fields_by_name["value"]
    for key in entries:
        where = f"{path}[{key!r}]" if not isinstance(key, str) else f'{path}["{key}"]'
        if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
            _find(entries[key], where + ".", slots)
        elif value_fd.type == FieldDescriptor.TYPE_STRING and is_token(entries[key]):
            slots.append(_Slot(where, entries[key], _item_setter(entries, key)))


def _field_setter(message: Message, name: str) -> Callable[[str], None]:
    return lambda text: setattr(message, name, text)


def _item_setter(container: Any, key: object) -> Callable[[str], None]:
    return lambda text: container.__setitem__(key, text)
