"""Errors a client can cause, in the domain's words.

Services raise these; the gRPC layer turns each into its status code with
google.rpc details (see `casemesh.platform.grpcutil`). Nothing a client can
cause becomes INTERNAL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A violation names its field in at most FIELD_BYTES and says what is wrong in
# at most DESCRIPTION_BYTES (UTF-8): a description that quotes what a client
# sent never carries a long string whole.
FIELD_BYTES = 128
DESCRIPTION_BYTES = 256
# An error message names this many violations; the rest are counted.
NAMED_VIOLATIONS = 10


def clip(text: str, limit: int = DESCRIPTION_BYTES) -> str:
    """`text` on one printable line of at most `limit` bytes of UTF-8, cut at
    a character and ended with "…" when it was longer."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - len("…".encode())].decode(errors="ignore") + "…"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", clip(self.field, FIELD_BYTES))
        object.__setattr__(self, "description", clip(self.description, DESCRIPTION_BYTES))


def summary(violations: Sequence[FieldViolation], named: int = NAMED_VIOLATIONS) -> str:
    """The first `named` violations as "field: description", then how many more."""
    told = "; ".join(f"{v.field}: {v.description}" for v in violations[:named])
    rest = len(violations) - named
    return f"{told}; … and {rest} more" if rest > 0 else told


class CasemeshError(Exception):
    """Base of every error that is the caller's to fix. A `reason` (UPPER_SNAKE)
    and its `metadata` travel as google.rpc.ErrorInfo, for clients to act on."""

    def __init__(
        self, message: str, *, reason: str = "", metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgument(CasemeshError):
    def __init__(self, violations: list[FieldViolation] | FieldViolation) -> None:
        if isinstance(violations, FieldViolation):
            violations = [violations]
        self.violations = violations
        super().__init__(summary(violations))

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(CasemeshError):
    pass


class PermissionDenied(CasemeshError):
    pass


def own_case(agent: str, by: str, of: str) -> PermissionDenied:
    """The refusal (reason OWN_CASE) of work on a case to `agent`, a party to
    `of` ("this case (its filer, …)"): deciding one's own case is no review.
    `by` is the agent giving them the case: when that is someone else, the
    refusal names the party it would go to."""
    if by and by != agent:
        return PermissionDenied(
            f"{agent} is a party to {of}: give it to an agent who is not", reason="OWN_CASE"
        )
    return PermissionDenied(
        f"you are a party to {of}: another agent must work it", reason="OWN_CASE"
    )


class Unauthenticated(CasemeshError):
    pass


class FailedPrecondition(CasemeshError):
    """The change is not allowed in the resource's current state."""


class AlreadyExists(CasemeshError):
    pass


class Aborted(CasemeshError):
    """Someone else changed the resource first; the caller may retry."""


class ResourceExhausted(CasemeshError):
    """Too much at once; `retry_after` (seconds), when known, travels as
    google.rpc.RetryInfo so that a client waits that long, not guessing."""

    def __init__(
        self,
        message: str,
        *,
        reason: str = "",
        metadata: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Unavailable(CasemeshError):
    """Something the call needs is away for now; the caller may retry."""


class DeadlineExceeded(CasemeshError):
    """The caller took longer than the call allows (an upload that stopped
    sending, or sends too slowly to finish in time)."""


class Violations:
    """Collects field violations so a caller hears about all of them at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self._items)

    def extend(self, other: Violations) -> None:
        """Adds what a part of the request's checks found, after what is here."""
        self._items.extend(other._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(list(self._items))
