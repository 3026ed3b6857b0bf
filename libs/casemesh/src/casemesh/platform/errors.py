"""Errors a client can cause, in the domain's words.

Services raise these; the gRPC layer turns each into its status code with
google.rpc details (see `casemesh.platform.grpcutil`). Nothing a client can
cause becomes INTERNAL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


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
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class NotFound(CasemeshError):
    pass


class PermissionDenied(CasemeshError):
    pass


class Unauthenticated(CasemeshError):
    pass


class FailedPrecondition(CasemeshError):
    """The change is not allowed in the resource's current state."""


class AlreadyExists(CasemeshError):
    pass


class Aborted(CasemeshError):
    """Someone else changed the resource first; the caller may retry."""


class ResourceExhausted(CasemeshError):
    pass


class Violations:
    """Collects field violations so a caller hears about all of them at once."""

    def __init__(self) -> None:
        self._items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self._items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self._items)

    def raise_if_any(self) -> None:
        if self._items:
            raise InvalidArgument(list(self._items))
