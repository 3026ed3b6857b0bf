"""How long an agent's claim on a case lasts, in whole seconds: the bounds
the queue service holds a `lease_seconds` to, and the CLI checks before it
asks. The gateway checks the same in proto/casemesh/v1/field_rules.proto
(the `lease_seconds` rule), which cannot import this."""

from __future__ import annotations

SHORTEST = 10
LONGEST = 3600
# What a `lease_seconds` of 0 asks for.
DEFAULT = 600
BOUNDS = f"from {SHORTEST} to {LONGEST} (0 means {DEFAULT})"


def allowed(seconds: int) -> bool:
    """Whether `seconds` is a lease the queue grants: 0 or within the bounds."""
    return seconds == 0 or SHORTEST <= seconds <= LONGEST


def granted(seconds: int) -> int:
    """The lease an allowed `seconds` asks for."""
    return seconds or DEFAULT
