"""The decision a report case's affected uploader may appeal while the case
is back under review: the one whose restrictions still hold on them."""

from __future__ import annotations

from casemesh.v1 import appeals_pb2 as apb
from casemesh_reports.application import Reports
from casemesh_reports.policy import ReportsPolicy, load_taxonomy
from tests.application.story import AGENT, ALICE, FakeClock, in_memory
from tests.application.test_reports import UPLOADER, action_taken, report
from tests.unit.test_authz_appeals import (
    URSULA,
    appeal_of,
    appeals,
    file_with,
    gateway,
    signed_in,
)


async def test_the_uploader_may_appeal_a_removal_holding_while_the_case_is_reviewed() -> None:
    """Ursula's video was removed; Alice, who reported it, appealed, was
    upheld, and the case went back to review. The removal holds until the
    case is decided again, however long that takes, and so does Ursula's
    right to appeal it within its window (DSA Art. 20): forty days on, her
    appeal is filed. Alice, whose appeal sent the case back, has no
    decision to appeal until the new one: no window is vouched for her."""
    clock = FakeClock()
    reports = Reports(in_memory(), clock=clock, policy=ReportsPolicy(taxonomy=load_taxonomy()))
    ident = reports.file(ALICE, report()).case_id
    reports.decide(AGENT, ident, "ACTION_TAKEN", action_taken(clock), UPLOADER, [], "")
    deadline = reports.policy.appeal_deadline(clock.now())
    reports.lodge_appeal(ident, "appeals/alice", "alice")
    reports.reverse(ident, "appeals/alice")
    assert reports.get_case(AGENT, ident).state == "OPEN"
    clock.advance(days=40)
    case = f"report-cases/{ident}"
    served, taking = await gateway(reports)

    await served.FileAppeal(appeal_of(case), signed_in(URSULA))
    (vouched,) = taking.forwarded
    assert vouched.facts["appealable_until"] == deadline.isoformat()
    filed = await file_with(appeals(clock), appeal_of(case), dict(vouched.facts))
    assert (filed.appeal_of, filed.state) == (case, apb.APPEAL_STATE_SUBMITTED)

    await served.FileAppeal(appeal_of(case, "a2"), signed_in(ALICE))
    assert taking.forwarded[-1].facts["appealable_until"] == ""
