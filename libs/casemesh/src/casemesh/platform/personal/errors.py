"""What goes wrong when personal data cannot be read, under one base class
(`PersonalDataError`) that callers can catch.

The single forms (`Sealer.reveal`, `Sealer.look`) raise these; the batch
forms (`look_many`, `reveal_many`) give them per item instead, so that one
bad token does not fail a whole page of events or a whole message.
"""

from __future__ import annotations


class PersonalDataError(Exception):
    """Personal data that cannot be revealed, for the reason the subclass says."""


class TokenRefused(PersonalDataError, ValueError):
    """A token that was altered, or that belongs to another person."""


class UnknownDataKey(PersonalDataError, LookupError):
    """A token whose data key the key database never held: not an erased
    person's (an erasure leaves a record), but text that only looks like a
    token, or a process pointed at the wrong key database."""


class WrappedKeyRefused(PersonalDataError, ValueError):
    """A stored data key that does not unwrap: altered, or moved to another
    person's row."""


class UnknownMasterKey(PersonalDataError, RuntimeError):
    """A data key was wrapped by a master key the secret no longer holds."""
