"""Following a verified phone-number change (`PhoneChangeVerified` on
casemesh.helpcenter.v1): the user proved they hold both numbers, often
because the old phone was lost, and the old number may soon be a stranger's.

In the transaction that records the event consumed (`Planner`), for the
change's user:

- their party rows (`case_parties` whose `user_id` is theirs) that give the
  old number give the new one: what their cases tell them from now on goes
  there;
- their SMS jobs to the old number that are still to be sent go to the new
  one: `pending` (due, or held back by quiet hours, the hourly limit or a
  retry's backoff: the sender checks those again for the new number when it
  claims the job) and `parked` (a `replay` would send it). A job being sent
  (`sending`) is the sender's: it already holds the old number (and should
  that send fail, its retry goes there too). Sent and cancelled jobs stay
  the record of where a message went. A job tried on the old number goes to
  the new one as one never tried there (`READDRESSING`).

The help centre's one-time codes (`policy.CODE_TEMPLATE`) are not followed:
each goes to the very number it proves. Nor is anyone else's row or job,
whatever number it gives. An erased person's rows and jobs hold no number,
so nothing of theirs matches; a change written before their erasure is not
followed at all (`Planner`), so no number of theirs comes back into a row
named since.

Both statements are idempotent, and the planner skips the event once
consumed: heard again, it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from casemesh_notifier.policy import CODE_TEMPLATE

# Statuses of a job still to be sent that no sender holds.
READDRESSED = ["pending", "parked"]

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
    conn: psycopg.AsyncConnection[Any], user_id: str, old_phone: str, new_phone: str
) -> Followed:
    """Gives the user's party rows and unsent SMS jobs to `old_phone` the new
    number instead, in the caller's transaction. That transaction holds the
    planning turn alone (`store.take_turn_with_erasures`): no case event
    planned beside it on another replica commits a job to the old number
    after these statements looked."""
    params = {
        "user": user_id,
        "old": old_phone,
        "new": new_phone,
        "open": READDRESSED,
        "code": CODE_TEMPLATE,
    }
    # (`user_id <> ''` as the partial indexes on user ids say it.)
    parties = await conn.execute(
        "UPDATE case_parties SET phone = %(new)s"
        " WHERE user_id = %(user)s AND user_id <> '' AND phone = %(old)s",
        params,
    )
    jobs = await conn.execute(
        f"UPDATE notification_jobs SET recipient = %(new)s, {READDRESSING}"
        " WHERE user_id = %(user)s AND user_id <> '' AND channel = 'SMS'"
        " AND recipient = %(old)s AND status = ANY(%(open)s) AND template <> %(code)s",
        params,
    )
    return Followed(parties=parties.rowcount, jobs=jobs.rowcount)
