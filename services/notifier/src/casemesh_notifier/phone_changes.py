"""Following a verified phone-number change (`PhoneChangeVerified` on
casemesh.helpcenter.v1): the user proved they hold both numbers, often
because the old phone was lost, and the old number may soon be a stranger's.

In the transaction that records the event consumed (`Planner`), the change
is recorded (`phone_changes_heard`, kept for the help centre's
`phone_changes` period, or until the user's erasure), and for the change's
user:

- their party rows (`case_parties` whose `user_id` is theirs) that give the
  old number give the new one: what their cases tell them from now on goes
  there;
- their SMS jobs to the old number that are still to be sent go to the new
  one: `pending` (due, or held back by quiet hours, the hourly limit or a
  retry's backoff: the sender checks those again for the new number when it
  claims the job), `parked` (a `replay` would send it) and `sending`. A
  sender holding a job looks at its address just before it sends it, and
  hands back untried one given another since its claim (`delivery`): it
  goes to the new number. One whose send had begun is on its way to the
  old number: its sender records it as it went (delivered there), or, the
  try failed, it goes to the new number at once, however the old one
  refused it (a lost phone's number is often dead: a permanent refusal),
  neither parked nor spending an attempt. Sent and cancelled jobs stay the
  record of where a message went. A job tried on the old number goes to
  the new one as one never tried there (`READDRESSING`).

The same holds of what is heard after the change: the rows and jobs of the
cases of each batch the planner writes that give a number its user changed
away from give their number now (`follow_numbers`), however late the event
naming the old number is heard, whatever contact it carries. (A user who
writes a number they changed away from into a new case is reached at their
number now; a change back to it makes it theirs again.)

The help centre's one-time codes (`policy.CODE_TEMPLATE`) are not followed:
each goes to the very number it proves. Nor is anyone else's row or job,
whatever number it gives. An erased person's rows and jobs hold no number,
so nothing of theirs matches; a change written before their erasure is not
followed at all (`Planner`), so no number of theirs comes back into a row
named since.

Recording and following are idempotent, and the planner skips the event
once consumed: heard again, it changes nothing. Changes heard before this
record was kept (by an earlier release) are not in it: what names their old
numbers since is not moved.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from casemesh_notifier.policy import CODE_TEMPLATE

# Statuses of a job still to be sent, a sender's claim (`sending`) too: its
# sender looks at its address again before it sends it (`delivery`).
READDRESSED = ["pending", "parked", "sending"]

# What a job given a new address (here, or `store.follow_contact_changes`)
# has set beside it: its tries to the old address were none to the new one.
# Its sends there go under an idempotency key of their own
# (`channels.Outgoing.idempotency_key`: a provider that took a try to the old
# address, its answer lost, would answer the new one's from it and send
# nothing), and none is a possible repeat; nor is a late record of a send to
# the old address, by a sender whose claim lapsed, taken for its delivery
# (`delivery.Delivery._sent`).
READDRESSING = "readdressed = readdressed + 1, maybe_sent = false"


@dataclass(frozen=True)
class Followed:
    """What a change moved: party rows and jobs."""

    parties: int = 0
    jobs: int = 0


async def follow_phone_change(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    old_phone: str,
    new_phone: str,
    verified_at: datetime,
) -> Followed:
    """Records the change (`phone_changes_heard`) and gives the user's party
    rows and unsent SMS jobs to a number they changed away from the number
    they have now (`follow_numbers`, in every case of theirs), in the
    caller's transaction. That transaction holds the planning turn alone
    (`store.take_turn_with_erasures`): no case event planned beside it on
    another replica commits a job to the old number after these statements
    looked."""
    await conn.execute(
        "INSERT INTO phone_changes_heard (person, old_phone, new_phone, verified_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (user_id, old_phone, new_phone, verified_at),
    )
    return await follow_numbers(conn, [user_id])


async def follow_numbers(
    conn: psycopg.AsyncConnection[Any],
    users: Collection[str],
    cases: Collection[str] | None = None,
) -> Followed:
    """Gives these users' party rows and unsent SMS jobs (of `cases` only,
    when given) that name a number they changed away from the number they
    have now, in the caller's transaction. Their number now is the new one
    of their last change heard (by when it was verified: changes heard out
    of order count in order); a number is changed away from by a change from
    it that no later change went back to (A to B, then B to A: A is theirs
    again, B is not). Rows are locked in one order (case and party, job id),
    as the contact-change statements lock theirs (`store.py`).

    The planner calls it for the users and cases of each batch once its
    rows and jobs are written: an event written before a change and heard
    after it (its topic behind the help centre's), or one carrying a
    contact given before it (a reporter's measure, with the counted
    report's contact), does not bring the old number back."""
    if not users or (cases is not None and not cases):
        return Followed()
    scope = "" if cases is None else " AND {t}.case_name = ANY(%(cases)s)"
    cur = await conn.execute(
        "WITH heard AS (SELECT * FROM phone_changes_heard WHERE person = ANY(%(users)s)),"
        " latest AS (SELECT DISTINCT ON (person) person, new_phone AS phone FROM heard"
        "   ORDER BY person, verified_at DESC, old_phone),"
        " retired AS (SELECT DISTINCT c.person, c.old_phone AS phone, l.phone AS now"
        "   FROM heard AS c JOIN latest AS l USING (person)"
        "   WHERE c.old_phone <> l.phone AND NOT EXISTS (SELECT FROM heard AS back"
        "     WHERE back.person = c.person AND back.new_phone = c.old_phone"
        "       AND back.verified_at > c.verified_at)),"
        # (`user_id <> ''` as the partial indexes on user ids say it.)
        " their_parties AS (SELECT p.case_name, p.party, r.now FROM case_parties AS p"
        "   JOIN retired AS r ON p.user_id = r.person AND p.phone = r.phone"
        f"   WHERE p.user_id <> ''{scope.format(t='p')}"
        "   ORDER BY p.case_name, p.party FOR UPDATE OF p),"
        " parties AS (UPDATE case_parties AS p SET phone = t.now FROM their_parties AS t"
        "   WHERE p.case_name = t.case_name AND p.party = t.party RETURNING 1),"
        " their_jobs AS (SELECT j.id, r.now FROM notification_jobs AS j"
        "   JOIN retired AS r ON j.user_id = r.person AND j.recipient = r.phone"
        "   WHERE j.user_id <> '' AND j.channel = 'SMS' AND j.status = ANY(%(open)s)"
        f"   AND j.template <> %(code)s{scope.format(t='j')}"
        "   ORDER BY j.id FOR UPDATE OF j),"
        f" jobs AS (UPDATE notification_jobs AS j SET recipient = t.now, {READDRESSING}"
        "   FROM their_jobs AS t WHERE j.id = t.id RETURNING 1)"
        " SELECT (SELECT count(*) FROM parties), (SELECT count(*) FROM jobs)",
        {
            "users": sorted(set(users)),
            "cases": sorted(set(cases or ())),
            "open": READDRESSED,
            "code": CODE_TEMPLATE,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    return Followed(parties=row[0], jobs=row[1])


async def forget_old_changes(conn: psycopg.AsyncConnection[Any], before: datetime) -> int:
    """Deletes the changes heard that were verified before `before` (the help
    centre's `phone_changes` period: it keeps their numbers no longer, and
    events naming an old number are not heard that late); how many."""
    cur = await conn.execute("DELETE FROM phone_changes_heard WHERE verified_at < %s", (before,))
    return cur.rowcount
