"""Personal text sealed with its person's data key, as a token that fits
wherever the text did (a proto string field, a JSON value, a column).

A token is ASCII: `pd1.` then, in urlsafe base64 without padding, the data
key's id (16 bytes), a nonce (12 bytes) and the AES-256-GCM ciphertext with
its tag. The key id and the person are the associated data: a token altered,
or presented as another person's, is refused (`TokenRefused`), never revealed
as something else.

`reveal` is the one way back. It gives the clear text; `ERASED` when the
person's key was deleted (their data was erased), so the event keeps its
shape and says what happened; and any text that is not a token unchanged
(data written before sealing existed). The empty text seals to itself: there
is nothing personal in it.
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

from casemesh.platform.personal.keys import DataKey, DataKeys

PREFIX = "pd1."
# What a revealed field shows once its person was erased.
ERASED = "[erased]"

_KEY_ID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_BODY = re.compile(r"^[A-Za-z0-9_-]+$")


class TokenRefused(ValueError):
    """A token that was altered, or that belongs to another person."""


class Disclosure(enum.Enum):
    """What `look` found: text that was never sealed, sealed text revealed,
    or text whose person was erased."""

    PLAIN = "plain"
    REVEALED = "revealed"
    ERASED = "erased"


@dataclass(frozen=True, slots=True)
class Revealed:
    text: str
    disclosure: Disclosure

    @property
    def erased(self) -> bool:
        return self.disclosure is Disclosure.ERASED


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
    if not text.startswith(PREFIX):
        return None
    body = text[len(PREFIX) :]
    if not _BODY.match(body):
        return None
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) < _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES:
        return None
    key_id = uuid.UUID(bytes=raw[:_KEY_ID_BYTES])
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
        key = self.keys.current(person)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(key.secret).encrypt(nonce, text.encode(), _aad(key.key_id, person))
        body = base64.urlsafe_b64encode(key.key_id.bytes + nonce + sealed).rstrip(b"=")
        return PREFIX + body.decode()

    def reveal(self, token: str, person: str | None = None) -> str:
        """The clear text of a token, `ERASED` if its person was erased, or
        the text itself if it is no token. Given `person`, a token of anyone
        else's is refused (TokenRefused)."""
        return self.look(token, person).text

    def look(self, token: str, person: str | None = None) -> Revealed:
        """As `reveal`, also saying which of the three it was."""
        return self.look_many([token], person)[token]

    def reveal_many(self, tokens: Iterable[str], person: str | None = None) -> dict[str, str]:
        """`reveal` for many tokens (e.g. every personal field of a page of
        events) with one key look-up for all the keys not in memory."""
        return {t: r.text for t, r in self.look_many(tokens, person).items()}

    def look_many(self, tokens: Iterable[str], person: str | None = None) -> dict[str, Revealed]:
        texts = set(tokens)
        parsed = {t: _parse(t) for t in texts}
        keys = self.keys.find({p.key_id for p in parsed.values() if p is not None})
        return {t: _open(t, parsed[t], keys, person) for t in texts}


def _open(
    text: str, token: _Token | None, keys: dict[uuid.UUID, DataKey], person: str | None
) -> Revealed:
    if token is None:
        return Revealed(text, Disclosure.PLAIN)
    key = keys.get(token.key_id)
    if key is None:
        return Revealed(ERASED, Disclosure.ERASED)
    if person is not None and person != key.person:
        raise TokenRefused("this personal data belongs to someone else")
    try:
        clear = AESGCM(key.secret).decrypt(token.nonce, token.sealed, _aad(key.key_id, key.person))
    except InvalidTag:
        raise TokenRefused("a personal data token was altered") from None
    return Revealed(clear.decode(), Disclosure.REVEALED)
