"""A case as the queue keeps it, and how events and time move it.

Everything here is a function of the case's events (their times and order)
and of the moment the clocks are read, so replaying the topics from offset 0
gives the same queue. Warnings and breaches are recorded at the moment they
fell due, whether the timer or a later event notices first; one the timer
recorded past the time of an event heard later is taken back
(`_told_too_soon`), and stands again at once if that event does not change
it. An event's time counts from its case's last update on: one aggregate's
events are recorded in order, so none happened before the one before it was
recorded, whatever earlier moment it names (an appeal's filing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from casemesh_casequeue.sla import Calendar, Policy, ServiceLevels, Target

CLOCKS = ("first_response", "resolution")


@dataclass
class Clock:
    target: float
    business: bool
    elapsed: float = 0.0
    since: datetime | None = None
    met_at: datetime | None = None
    breached_at: datetime | None = None
    warned: bool = False
    due: datetime | None = None
    warn_at: datetime | None = None

    @property
    def spec(self) -> Target:
        return Target(self.target, self.business)

    def stop(self, calendar: Calendar, at: datetime) -> None:
        if self.since is not None:
            self.elapsed += self.spec.spent(calendar, self.since, at)
            self.since = None

    def plan(self, calendar: Calendar, warn_before: float) -> None:
        """When the running clock falls due and warns (neither while it
        stands still or once met). A breached clock keeps the moment it
        breached, however long it was paused since: its case stays among the
        overdue ones, ahead of those that breached later."""
        if self.since is None or self.met_at is not None:
            self.due = self.warn_at = None
            return
        if self.breached_at is not None:
            # No warning to come: a breached clock is not warned again.
            self.due, self.warn_at = self.breached_at, None
            return
        self.due = self.spec.at(calendar, self.since, self.target - self.elapsed)
        self.warn_at = self.spec.at(
            calendar, self.since, self.target * (1 - warn_before) - self.elapsed
        )

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Clock:
        times = ("since", "met_at", "breached_at", "due", "warn_at")
        values: dict[str, Any] = {
            k: datetime.fromisoformat(v) if k in times and v else v for k, v in d.items()
        }
        return cls(**values)


@dataclass(frozen=True)
class Signal:
    """Something to tell the rest of the system (and the watchers)."""

    kind: str  # WARNED, BREACHED, ESCALATED
    clock: str
    at: datetime
    due: datetime
    # ESCALATED: the priority and queue it raised the case to.
    priority: int = 0
    queue: str = ""


# The skill queue of the child-safety lane (sla.json routes its categories there).
CHILD_SAFETY_QUEUE = "child-safety"


@dataclass
class Case:
    name: str
    type: str
    category: str
    lane: str
    source_priority: int
    status: str
    open: bool
    waiting: bool
    version: int
    created_at: datetime
    updated_at: datetime
    base_queue: str
    policy: str
    escalate_to: str
    clocks: dict[str, Clock]
    escalations: int = 0
    holder: str = ""
    hold_since: datetime | None = None
    lease_until: datetime | None = None
    # (Its parties, whom its events name, are kept beside it, a row each,
    # and never read with it: a report case may have 100,000 reporters.)
    # An appeal of a decision: the decided case (`appeals/{id}` or
    # `report-cases/{id}`), whose parties the appeal's own count too.
    appeal_of: str = ""

    @property
    def priority(self) -> int:
        return min(4, self.source_priority + self.escalations)

    @property
    def child_safety(self) -> bool:
        """In the child-safety lane: ahead of every other case, whatever its priority."""
        return self.lane == "CHILD_SAFETY" or self.base_queue == CHILD_SAFETY_QUEUE

    @property
    def queue(self) -> str:
        return self.escalate_to if self.escalations and self.escalate_to else self.base_queue

    @property
    def claimable(self) -> bool:
        return self.open and not self.waiting

    @property
    def sla_state(self) -> str:
        clocks = self.clocks.values()
        if any(c.breached_at for c in clocks):
            return "BREACHED"
        if not self.open:
            return "MET"
        if self.waiting:
            return "PAUSED"
        if any(c.warned and c.met_at is None for c in clocks):
            return "WARNING"
        return "ON_TRACK"

    @property
    def due_key(self) -> datetime | None:
        """The earliest due time still running: the queue's order after priority."""
        # A breached clock keeps its (past) due time: overdue cases come first.
        dues = [c.due for c in self.clocks.values() if c.due]
        return min(dues) if dues else None

    @property
    def next_check(self) -> datetime | None:
        """The next moment the timer must look at this case."""
        moments = []
        for c in self.clocks.values():
            if c.breached_at is None and c.due is not None:
                moments.append(c.due)
                if not c.warned and c.warn_at is not None:
                    moments.append(c.warn_at)
        return min(moments) if moments else None


@dataclass(frozen=True)
class Observation:
    """What one event of an owning service says about its case."""

    name: str
    type: str
    version: int
    at: datetime
    status: str
    open: bool
    waiting: bool
    responded: bool = False
    category: str | None = None
    lane: str | None = None
    priority: int | None = None
    created: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # Users the event names as parties to the case (user ids, a token's
    # `sub`), whom the service that owns it refuses its work, besides those
    # named before: parties only add up (the appeals service names one
    # uploader to a case at most: a counter-notice comes from that
    # uploader, so none is replaced).
    parties: tuple[str, ...] = ()
    appeal_of: str | None = None

    @property
    def named_parties(self) -> tuple[str, ...]:
        """The parties the event names, each once (none blank: a decision
        that names no uploader)."""
        return tuple(p for p in dict.fromkeys(self.parties) if p)


def new_case(obs: Observation, levels: ServiceLevels) -> Case:
    category = obs.category or ""
    priority = obs.priority or 2
    policy = levels.policy(obs.type, category, priority)
    return Case(
        name=obs.name,
        type=obs.type,
        category=category,
        lane=obs.lane or "",
        source_priority=priority,
        status=obs.status,
        open=obs.open,
        waiting=obs.waiting,
        version=0,
        created_at=obs.at,
        updated_at=obs.at,
        base_queue=levels.queue(obs.type, category),
        policy=policy.name,
        escalate_to=policy.escalate_to,
        clocks={
            "first_response": Clock(policy.first_response.seconds, policy.first_response.business),
            "resolution": Clock(policy.resolution.seconds, policy.resolution.business),
        },
    )


def advance(case: Case, until: datetime, levels: ServiceLevels) -> list[Signal]:
    """Records the warnings and breaches that fell due by `until` (each once,
    at its own moment); a breach escalates the case."""
    signals = []
    for name in CLOCKS:
        c = case.clocks[name]
        if c.breached_at is not None or c.due is None:
            continue
        if not c.warned and c.warn_at is not None and c.warn_at <= until:
            c.warned = True
            signals.append(Signal("WARNED", name, c.warn_at, c.due))
        if c.due <= until:
            c.breached_at = c.due
            signals.append(Signal("BREACHED", name, c.due, c.due))
            case.escalations += 1
            signals.append(
                Signal("ESCALATED", name, c.due, c.due, priority=case.priority, queue=case.queue)
            )
    return signals


def _told_too_soon(case: Case, at: datetime, levels: ServiceLevels) -> datetime | None:
    """Takes back what the timer recorded past `at`, an event's own time, now
    that the event is heard: a breach, and the escalation it made, after
    `at`; a warning its clock had not reached by `at`. The timer runs the
    clocks only as far as the topics have told, but an event a writer
    stored and published late (its relay away for minutes) still comes
    after the timer has gone past it. Recorded again, each at its own
    moment, if the clock still gets there once the event is applied (the
    SLA events' ids keep the topic from hearing one twice); so the case is
    what a replay of the topics from offset 0 makes of it. Returns the
    latest moment of what it took back (None for nothing): the timer had
    judged the clocks that far."""
    cal = levels.calendar
    judged: list[datetime] = []
    for c in case.clocks.values():
        if c.breached_at is not None and c.breached_at > at:
            judged.append(c.breached_at)
            c.breached_at = None
            case.escalations = max(0, case.escalations - 1)
        if c.warned and c.breached_at is None and c.met_at is None:
            elapsed = c.elapsed + (c.spec.spent(cal, c.since, at) if c.since else 0.0)
            c.warned = elapsed >= c.target * (1 - levels.warn_before)
            if not c.warned and c.warn_at is not None:
                judged.append(c.warn_at)
    return max(judged, default=None)


def _judged_again(
    case: Case,
    until: datetime,
    before: dict[str, tuple[bool, datetime | None]],
    levels: ServiceLevels,
) -> list[Signal]:
    """Records again what `_told_too_soon` took back and the event just
    applied leaves due by `until`, where the timer had already been: an
    event that changes nothing of the clocks (an appeal lodged, a party
    named) leaves the case as it stood, rather than out of its escalation
    queue until the timer's next look. Only what differs from `before`
    (each clock's warning and breach before the event) is told again."""
    again = advance(case, until, levels)
    for c in case.clocks.values():
        c.plan(levels.calendar, levels.warn_before)
    return [s for s in again if not _as_before(s, before[s.clock])]


def _as_before(s: Signal, before: tuple[bool, datetime | None]) -> bool:
    warned, breached_at = before
    return warned if s.kind == "WARNED" else breached_at == s.at


def apply(case: Case, obs: Observation, levels: ServiceLevels) -> list[Signal]:
    """Moves the case by one event: the clocks run up to the event first.
    The event counts as no earlier than the case's last update: a time
    before it names when something was done elsewhere (an appeal's filing,
    a report's), not when this case's stream recorded it, which only
    followed its previous event."""
    at = max(obs.at, case.updated_at)
    before = {name: (c.warned, c.breached_at) for name, c in case.clocks.items()}
    signals = advance(case, at, levels)
    cal = levels.calendar
    judged = _told_too_soon(case, at, levels)
    case.version = obs.version
    case.updated_at = at
    case.status = obs.status
    if obs.appeal_of is not None:
        case.appeal_of = obs.appeal_of
    if obs.category is not None:
        case.category = obs.category
    if obs.lane is not None:
        case.lane = obs.lane
    priority = obs.priority
    if priority is None and "base_priority" in obs.extra:
        priority = levels.priority_of_report(case.lane, obs.extra["base_priority"])
    retargeted = priority is not None and priority != case.source_priority
    if priority is not None and retargeted:
        # The time run so far counts under the old target; the new one runs from here.
        for c in case.clocks.values():
            c.stop(cal, at)
        case.source_priority = priority
        policy: Policy = levels.policy(case.type, case.category, priority)
        case.policy, case.escalate_to = policy.name, policy.escalate_to
        for name, target in (
            ("first_response", policy.first_response),
            ("resolution", policy.resolution),
        ):
            case.clocks[name].target = target.seconds
            case.clocks[name].business = target.business
    first, resolution = case.clocks["first_response"], case.clocks["resolution"]
    if obs.responded and first.met_at is None:
        first.stop(cal, at)
        first.met_at = at
    if not obs.open and resolution.met_at is None:
        for c in case.clocks.values():
            c.stop(cal, at)
        resolution.met_at = at
    elif obs.open and resolution.met_at is not None:
        resolution.met_at = None  # reopened: the clock carries on from where it stood
    case.open, case.waiting = obs.open, obs.waiting
    for c in case.clocks.values():
        if case.claimable and c.met_at is None:
            c.since = c.since or at
        else:
            c.stop(cal, at)
        c.plan(cal, levels.warn_before)
        if retargeted and c.met_at is None and c.breached_at is None:
            # A warning given under the old target stands only if the time run
            # (all of it counted up to now, above) is past the new target's
            # warning point too: a lowered priority takes it back, and the
            # case shows WARNING again once it gets there (no second SlaWarning
            # on the topic: one per case and clock). One due now and not given
            # yet is given by the next look (`advance`), at its moment.
            c.warned = c.warned and c.elapsed >= c.target * (1 - levels.warn_before)
    if judged is not None:
        signals += _judged_again(case, judged, before, levels)
    # Nor does an agent the event names a party keep it (they reported it
    # since they took it, a decision names them): they could not work it
    # (OWN_CASE), and would keep it from everyone until the lease ran out.
    if not case.claimable or case.holder in obs.named_parties:
        case.holder, case.hold_since, case.lease_until = "", None, None
    return signals
