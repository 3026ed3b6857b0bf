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

Text of one case (`seal(text, person, case=...)`) is sealed under two keys:
its person's and a key of the case's own (`DataKeys.for_case`). The token
is `pd2.` then the person's key id, the case key's id, a nonce and the
ciphertext, under a key derived (HKDF-SHA256) from both keys' secrets, so
that destroying either one erases the text: erasing the person, or the
case's retention running out (`DataKeys.destroy`), the person's other cases
untouched.

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
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from casemesh.platform.personal import randomness
from casemesh.platform.personal.errors import (
    PersonalDataError,
    TokenRefused,
    UnknownDataKey,
)
from casemesh.platform.personal.keys import DataKey, DataKeys, Lookup, is_case_key

PREFIX = "pd1."
# A token of one case's text, sealed under its person's key and the case's.
CASE_PREFIX = "pd2."
# What a revealed field shows once its person was erased.
ERASED = "[erased]"
# What the batch forms show for a token they cannot reveal (refused, or its
# key unknown).
UNREADABLE = "[unreadable]"

_KEY_ID_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_BODY = re.compile(r"[A-Za-z0-9_-]+")
_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")


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


class _Token(NamedTuple):
    # The person's key id, and the case key's too for a `pd2.` token.
    key_ids: tuple[uuid.UUID, ...]
    nonce: bytes
    sealed: bytes

    @property
    def case_key_id(self) -> uuid.UUID | None:
        return self.key_ids[1] if len(self.key_ids) == 2 else None


def is_token(text: str) -> bool:
    """True for text in the form `seal` writes."""
    return _parse(text) is not None


def person_key_of(text: str) -> uuid.UUID | None:
    """The id of the person's data key a token was sealed under (None: no token)."""
    token = _parse(text)
    return None if token is None else token.key_ids[0]


def case_key_of(text: str) -> uuid.UUID | None:
    """The id of the case key a token was sealed under (None: none, or no token)."""
    token = _parse(text)
    return None if token is None else token.case_key_id


def is_erased(text: str) -> bool:
    """True for what `reveal` gives for an erased person's text. Someone could
    have written "[erased]" themselves; `look` tells the two apart."""
    return text == ERASED


def _parse(text: str) -> _Token | None:
    """The parts of a token `seal` could have written, else None."""
    if text.startswith(PREFIX):
        ids, body = 1, text[len(PREFIX) :]
    elif text.startswith(CASE_PREFIX):
        ids, body = 2, text[len(CASE_PREFIX) :]
    else:
        return None
    if not _BODY.fullmatch(body):
        return None
    # The alphabet checked above; as the standard one, for binascii.
    standard = body.encode().translate(_STANDARD_ALPHABET)
    try:
        raw = binascii.a2b_base64(standard + b"=" * (-len(standard) % 4), strict_mode=True)
    except binascii.Error:
        return None
    # One spelling per token: no unused bits set in the last character.
    if binascii.b2a_base64(raw, newline=False).rstrip(b"=") != standard:
        return None
    # At least one byte of text: the empty text is never sealed.
    head = ids * _KEY_ID_BYTES
    if len(raw) <= head + _NONCE_BYTES + _TAG_BYTES:
        return None
    # Each key id a version 4 UUID of the RFC 4122 variant (bytes 6 and 8).
    for at in range(0, head, _KEY_ID_BYTES):
        if raw[at + 6] >> 4 != 4 or raw[at + 8] >> 6 != 0b10:
            return None
    key_ids = tuple(
        uuid.UUID(bytes=raw[at : at + _KEY_ID_BYTES]) for at in range(0, head, _KEY_ID_BYTES)
    )
    return _Token(key_ids, raw[head : head + _NONCE_BYTES], raw[head + _NONCE_BYTES :])


def _aad(token_ids: tuple[uuid.UUID, ...], person: str) -> bytes:
    prefix = PREFIX if len(token_ids) == 1 else CASE_PREFIX
    return prefix.encode() + b"".join(k.bytes for k in token_ids) + person.encode()


def _case_secret(key: DataKey, case_key: DataKey) -> bytes:
    """The key a case's text is sealed with: destroying either key loses it."""
    info = b"casemesh-case-text\x00" + key.key_id.bytes + case_key.key_id.bytes
    return HKDF(SHA256(), 32, salt=None, info=info).derive(key.secret + case_key.secret)


class Sealer:
    """Seals and reveals personal text with the people's data keys."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys

    def seal(self, text: str, person: str, case: uuid.UUID | None = None) -> str:
        """`text`, which is `person`'s personal data, as a token; given the
        `case` it belongs to, sealed under the case's key too."""
        if not text:
            return text
        return self.sealing(person, case)(text)

    def sealing(self, person: str, case: uuid.UUID | None = None) -> Callable[[str], str]:
        """`seal` for the texts of one person (and case), their keys looked
        up once (the fields of one event)."""
        if not person:
            raise ValueError("personal text needs the person it belongs to")
        key = self.keys.current(person)
        return _sealing_with(key, person, None if case is None else self.keys.for_case(case))

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
        parsed = _parse_all(tokens)
        return _open_all(parsed, self.keys.find(_key_ids(parsed)), person)

    def close(self) -> None:
        """Lets go of the key store's connections."""
        self.keys.close()

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _seal(key: DataKey, text: str, person: str, case_key: DataKey | None = None) -> str:
    return _sealing_with(key, person, case_key)(text)


def _sealing_with(
    key: DataKey, person: str, case_key: DataKey | None = None
) -> Callable[[str], str]:
    """Seals texts of `person` (and of a case) with these keys."""
    if case_key is None:
        ids: tuple[uuid.UUID, ...] = (key.key_id,)
        secret, prefix = key.secret, PREFIX
    else:
        ids = (key.key_id, case_key.key_id)
        secret, prefix = _case_secret(key, case_key), CASE_PREFIX
    aead, aad, head = AESGCM(secret), _aad(ids, person), b"".join(i.bytes for i in ids)

    def seal(text: str) -> str:
        if not text:
            return text
        nonce = randomness.take(_NONCE_BYTES)
        body = base64.urlsafe_b64encode(head + nonce + aead.encrypt(nonce, text.encode(), aad))
        return prefix + body.rstrip(b"=").decode()

    return seal


def _parse_all(tokens: Iterable[str]) -> dict[str, _Token | None]:
    """Each distinct text, parsed (None: no token)."""
    return {t: _parse(t) for t in set(tokens)}


def _key_ids(parsed: dict[str, _Token | None]) -> set[uuid.UUID]:
    """Every key id the parsed tokens name."""
    return {k for p in parsed.values() if p is not None for k in p.key_ids}


def _open_all(
    parsed: dict[str, _Token | None], keys: dict[uuid.UUID, Lookup], person: str | None
) -> dict[str, Revealed]:
    """What each parsed text reveals, given their keys (`_key_ids`). The
    tokens of one person (and case) are judged and given a cipher once a
    batch: only their decryption is each token's own."""
    openers: dict[tuple[uuid.UUID, ...], _Opener | Revealed] = {}
    revealed = {}
    for text, token in parsed.items():
        if token is None:
            revealed[text] = Revealed(text, Disclosure.PLAIN)
            continue
        opener = openers.get(token.key_ids)
        if opener is None:
            opener = openers[token.key_ids] = _opener(token.key_ids, keys, person)
        revealed[text] = opener if isinstance(opener, Revealed) else opener.open(token)
    return revealed


@dataclass(frozen=True, slots=True)
class _Opener:
    """Opens the tokens sealed under one person's key (and one case's)."""

    aead: AESGCM
    aad: bytes

    def open(self, token: _Token) -> Revealed:
        try:
            clear = self.aead.decrypt(token.nonce, token.sealed, self.aad)
        except InvalidTag:
            refused = TokenRefused("a personal data token was altered")
            return Revealed(UNREADABLE, Disclosure.REFUSED, refused)
        return Revealed(clear.decode(), Disclosure.REVEALED)


def _opener(
    key_ids: tuple[uuid.UUID, ...], keys: dict[uuid.UUID, Lookup], person: str | None
) -> _Opener | Revealed:
    """How tokens of these keys open, or what every one of them reveals
    instead (erased, unknown, refused)."""
    found = [keys[k] for k in key_ids]
    if any(k is None for k in found):
        return Revealed(ERASED, Disclosure.ERASED)
    for lookup in found:
        if isinstance(lookup, UnknownDataKey):
            return Revealed(UNREADABLE, Disclosure.UNKNOWN, lookup)
        if isinstance(lookup, PersonalDataError):
            return Revealed(UNREADABLE, Disclosure.REFUSED, lookup)
    key, *case_key = [k for k in found if isinstance(k, DataKey)]
    if person is not None and person != key.person:
        refused = TokenRefused("this personal data belongs to someone else")
        return Revealed(UNREADABLE, Disclosure.REFUSED, refused)
    if is_case_key(key.person) or any(not is_case_key(k.person) for k in case_key):
        refused = TokenRefused("a personal data token names the wrong kind of key")
        return Revealed(UNREADABLE, Disclosure.REFUSED, refused)
    secret = _case_secret(key, case_key[0]) if case_key else key.secret
    return _Opener(AESGCM(secret), _aad(key_ids, key.person))
