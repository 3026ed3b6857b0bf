"""The master keys that wrap every person's data keys, read from one secret.

`CASEMESH_MASTER_KEYS` holds comma-separated `id:key` pairs, each key 32
random bytes in base64 (urlsafe or standard). The first is current: new data
keys are wrapped with it. The others are kept only so that data keys wrapped
before a rotation can still be unwrapped, until `DataKeys.rewrap` has moved
them all to the current one. Each wrapped data key records the id of the
master key that wrapped it.

Rotating from `old` to `new`, in this order, so that no process ever meets a
data key wrapped by a master key it does not hold:

1. Deploy `old,new` everywhere (`new` known, `old` still current), and wait
   until every process runs with it.
2. Deploy `new,old` everywhere: new data keys are wrapped with `new`.
3. Once every process has restarted with `new,old`, run the rewrap
   (`DataKeys.rewrap`): it moves every data key still wrapped by `old`, and
   counts those it could not (a key made behind it by a process still on
   the old secret, a key that does not unwrap). Run it again, after putting
   right what it names, until it leaves none.
4. Drop `old` from the secret: deploy `new`.

Erased data keys are gone from the key database, but not from its backups:
a backup taken before an erasure still holds the erased person's keys, so
how long backups are kept bounds how long an erased key lives (and the
master keys that wrapped them must be treated as being as long-lived).

Wrapping is AES-256-GCM with the data key's id and its person as associated
data, so a wrapped key copied onto another row (another person's) does not
unwrap.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from casemesh.platform.personal import randomness
from casemesh.platform.personal.errors import UnknownMasterKey, WrappedKeyRefused

__all__ = ["SETTING", "MasterKeys", "UnknownMasterKey", "new_master_key"]

SETTING = "CASEMESH_MASTER_KEYS"

ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_NONCE_BYTES = 12


def _key_bytes(text: str) -> bytes:
    """Urlsafe or standard base64, padded or not; nothing else let through."""
    text = text.strip().translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a key is not base64") from None


def _aad(key_id: bytes, person: str) -> bytes:
    # A fixed length, so that id and person cannot be shifted into each other.
    assert len(key_id) == 16, "a data key id is 16 bytes"
    return b"casemesh-data-key\x00" + key_id + b"\x00" + person.encode()


@dataclass(frozen=True)
class MasterKeys:
    """The configured master keys by id; `current_id` wraps new data keys."""

    current_id: str
    _keys: dict[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, setting: str) -> MasterKeys:
        """Reads `id:base64key,…`; raises ValueError saying what is wrong
        (never showing a key)."""
        keys: dict[str, bytes] = {}
        first = ""
        for n, entry in enumerate(setting.split(","), start=1):
            key_id, sep, material = entry.strip().partition(":")
            if not sep:
                raise ValueError(f"entry {n} must be id:base64key")
            if not ID.fullmatch(key_id):
                raise ValueError(f"entry {n}: an id is 1 to 32 of A-Z a-z 0-9 _ -")
            if key_id in keys:
                raise ValueError(f"master key id {key_id!r} appears twice")
            raw = _key_bytes(material)
            if len(raw) != 32:
                raise ValueError(f"master key {key_id!r} must be 32 bytes, not {len(raw)}")
            keys[key_id] = raw
            first = first or key_id
        return cls(first, keys)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def wrap(self, data_key: bytes, key_id: bytes, person: str) -> tuple[str, bytes]:
        """The data key sealed under the current master key: (master id, nonce + ciphertext)."""
        nonce = randomness.take(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self.current_id]).encrypt(nonce, data_key, _aad(key_id, person))
        return self.current_id, nonce + sealed

    def unwrap(self, master_id: str, wrapped: bytes, key_id: bytes, person: str) -> bytes:
        """The data key back; raises UnknownMasterKey for a master id the
        secret does not hold, WrappedKeyRefused for a wrapped key that was
        altered or moved to another person's row."""
        # The messages name the data key by id (never the key or its
        # person), so that an operator can find its row.
        master = self._keys.get(master_id)
        if master is None:
            raise UnknownMasterKey(
                f"data key {uuid.UUID(bytes=key_id)} is wrapped by master key {master_id!r},"
                f" which {SETTING} does not hold: put it back, after the current one, and run"
                " the rewrap"
            )
        try:
            return AESGCM(master).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _aad(key_id, person)
            )
        except InvalidTag:
            raise WrappedKeyRefused(
                f"data key {uuid.UUID(bytes=key_id)}, wrapped by master key {master_id!r},"
                " does not match its row"
            ) from None


def new_master_key() -> str:
    """A fresh master key in the form the setting takes (urlsafe base64)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
