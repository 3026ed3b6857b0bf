"""Personal text sealed with its person's data key, as a token that fits
wherever the text did (a proto string field, a JSON value, a column).

A token is ASCII: `pd1.` then, in urlsafe base64 without padding, the data
key's id (16 bytes, a version 4 UUID), a nonce (12 bytes) and the AES-256-GCM
ciphertext with its tag. A token has exactly one spelling: its body must
decode strictly and encode back to itself. The key id and the person are the
associated data: a token altered, or presented as another person's, is
refused (`TokenRefused`), never revealed as something else.

`reveal` is the one way back. It gives the clear text; `ERASED` when the
person's key was erased (their data was erased), so the event keeps its
shape and says what happened; and any text that cannot be a token we made
unchanged (data written before sealing existed). A token whose key the key
database never held is not shown as erased: `reveal` raises `UnknownDataKey`.
The empty text seals to itself: there is nothing personal in it.

The single forms (`reveal`, `look`) raise a `PersonalDataError` for a token
they cannot reveal. The batch forms (`look_many`, `reveal_many`) never do:
such a token gives `Disclosure.REFUSED` or `Disclosure.UNKNOWN` and the text
`UNREADABLE`, so that one bad token does not fail a whole page or message
(which a consumer would otherwise retry for ever). Only the key database
being away raises from them.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from casemesh.platform.personal.errors import (
    PersonalDataError,
    TokenRefused,
    UnknownDataKey,
)
from casemesh.platform.personal.keys import DataKey, DataKeys, Lookup

PREFIX = "pd1."
# What a revealed field shows once its person was erased.
ERASED = "[erased]"
# What the batch forms show for a token they cannot reveal (refused, or its
# key unknown).
UNREADABLE = "[unreadable]"

_KEY_ID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_BODY = re.compile(r"[A-Za-z0-9_-]+")


class Disclosure(enum.Enum):
    """What `look` found: text that was never sealed, sealed text revealed,
    text whose person was erased; and, from the batch forms only, a token
    refused (altered, another person's, or its key not unwrapping) or one
    whose key the key database never held."""

    PLAIN = "plain"
    REVEALED = "revealed"
    ERASED = "erased"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Revealed:
    text: str
    disclosure: Disclosure
    # Why a token could not be revealed (REFUSED, UNKNOWN).
    error: PersonalDataError | None = None

    @property
    def erased(self) -> bool:
        return self.disclosure is Disclosure.ERASED

    def checked(self) -> Revealed:
        """Itself, or the error that stopped the token being revealed, raised."""
        if self.error is not None:
            raise self.error
        return self


@dataclass(frozen=True, slots=True)
class _Token:
    key_id: uuid.UUID
    nonce: bytes
    sealed: bytes


def is_token(text: str) -> bool:
    """True for text in the form `seal` writes."""
    return _parse(text) is not None


def is_erased(text: str) -> bool:
    """True for what `reveal` gives for an erased person's text. Someone could
    have written "[erased]" themselves; `look` tells the two apart."""
    return text == ERASED


def _parse(text: str) -> _Token | None:
    """The parts of a token `seal` could have written, else None."""
    if not text.startswith(PREFIX):
        return None
    body = text[len(PREFIX) :]
    if not _BODY.fullmatch(body):
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        return None
    # One spelling per token: no unused bits set in the last character.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != body.encode():
        return None
    # At least one byte of text: the empty text is never sealed.
    if len(raw) <= _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES:
        return None
    key_id = uuid.UUID(bytes=raw[:_KEY_ID_BYTES])
    if key_id.version != 4 or key_id.variant != uuid.RFC_4122:
        return None
    nonce = raw[_KEY_ID_BYTES : _KEY_ID_BYTES + _NONCE_BYTES]
    return _Token(key_id, nonce, raw[_KEY_ID_BYTES + _NONCE_BYTES :])


def _aad(key_id: uuid.UUID, person: str) -> bytes:
    return PREFIX.encode() + key_id.bytes + person.encode()


class Sealer:
    """Seals and reveals personal text with the people's data keys."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    def seal(self, text: str, person: str) -> str:
        """`text`, which is `person`'s personal data, as a token."""
        if not text:
            return text
        if not person:
            raise ValueError("personal text needs the person it belongs to")
        return _seal(self.keys.current(person), text, person)

    def reveal(self, token: str, person: str | None = None) -> str:
        """The clear text of a token, `ERASED` if its person was erased, or
        the text itself if it is no token. Raises `TokenRefused` for an
        altered token, or, given `person`, a token of anyone else's;
        `UnknownDataKey` for a token whose key the key database never held;
        `UnknownMasterKey` or `WrappedKeyRefused` for a key that does not
        unwrap (all `PersonalDataError`)."""
        return self.look(token, person).text

    def look(self, token: str, person: str | None = None) -> Revealed:
        """As `reveal`, also saying which it was; raises as `reveal` does."""
        return self.look_many([token], person)[token].checked()

    def reveal_many(self, tokens: Iterable[str], person: str | None = None) -> dict[str, str]:
        """`reveal` for many tokens (e.g. every personal field of a page of
        events) with one key look-up for all the keys not in memory. A token
        that cannot be revealed gives `UNREADABLE`, not an error; use
        `look_many` to learn why."""
        return {t: r.text for t, r in self.look_many(tokens, person).items()}

    def look_many(self, tokens: Iterable[str], person: str | None = None) -> dict[str, Revealed]:
        """As `reveal_many`, each saying what it was (and for `REFUSED` and
        `UNKNOWN`, why, in `error`)."""
        texts = set(tokens)
        parsed = {t: _parse(t) for t in texts}
        keys = self.keys.find({p.key_id for p in parsed.values() if p is not None})
        return {t: _open(t, parsed[t], keys, person) for t in texts}

    def close(self) -> None:
        """Lets go of the key store's connections."""
        self.keys.close()

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _seal(key: DataKey, text: str, person: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(key.secret).encrypt(nonce, text.encode(), _aad(key.key_id, person))
    body = base64.urlsafe_b64encode(key.key_id.bytes + nonce + sealed).rstrip(b"=")
    return PREFIX + body.decode()


def _open(
    text: str, token: _Token | None, keys: dict[uuid.UUID, Lookup], person: str | None
) -> Revealed:
    if token is None:
        return Revealed(text, Disclosure.PLAIN)
    key = keys[token.key_id]
    if key is None:
        return Revealed(ERASED, Disclosure.ERASED)
    if isinstance(key, UnknownDataKey):
        return Revealed(UNREADABLE, Disclosure.UNKNOWN, key)
    if isinstance(key, PersonalDataError):
        return Revealed(UNREADABLE, Disclosure.REFUSED, key)
    if person is not None and person != key.person:
        refused = TokenRefused("this personal data belongs to someone else")
        return Revealed(UNREADABLE, Disclosure.REFUSED, refused)
    try:
        clear = AESGCM(key.secret).decrypt(token.nonce, token.sealed, _aad(key.key_id, key.person))
    except InvalidTag:
        refused = TokenRefused("a personal data token was altered")
        return Revealed(UNREADABLE, Disclosure.REFUSED, refused)
    return Revealed(clear.decode(), Disclosure.REVEALED)
