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

An SMS tells times in its number's zone, without naming it (`cases.tell`):
one given another number (here, or by a contact change:
`store.ContactChange`, `store.follow_contact_changes`) is written again in
the new number's time (`written_for`), text and provider's `due` alike: to
a London number "reporting is suspended until 16 Mar 15:59" where the
Shanghai one read 23:59. A new number that tells no zone (its country
spans several) is told the time as it was written, its zone named. What
writing it again needs is kept with it (`DUE_AT`, `EMAIL_CHOSEN`); one
planned before it was (by an earlier release) keeps its text. Quiet hours
are those of the number a sender finds on the job as it claims it: one
held back for the old number's night is looked at again as that ends,
against the new number's.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import psycopg
from jinja2 import TemplateError

from casemesh.platform import columns
from casemesh.platform.logging import get_logger
from casemesh_notifier.labels import local_time, phone_zone
from casemesh_notifier.policy import CODE_TEMPLATE
from casemesh_notifier.rendering import render_sms

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

# What an SMS showing a time keeps among the values its provider's template
# is filled with, beside that time as its number's zone writes it (`due`):
# the moment itself, and whether its party hears by e-mail too (the rest of
# what it may show is there already), so that it can be written again for
# another number (`written_for`).
DUE_AT = "due_at"
EMAIL_CHOSEN = "email_chosen"
# What a job keeps only to be written again: no provider is sent it.
KEPT_TO_REWRITE = frozenset({DUE_AT, EMAIL_CHOSEN})

log = get_logger(__name__)


def sms_in(
    zone: ZoneInfo, template: str, locale: str, values: Mapping[str, Any], *, named: bool
) -> tuple[str, dict[str, str]]:
    """The SMS of `template` with `values` (`rendering.sms_values`), its
    times written in `zone` (`named`: saying its offset, the zone not being
    known to be the reader's), and what its provider's template is filled
    with for its time: as written, and what writes it again (`DUE_AT`,
    `EMAIL_CHOSEN`)."""
    text = render_sms(template, locale, zone, values, zone_named=named)
    due = values.get("due")
    if due is None:
        return text, {}
    return text, {
        # As the text writes it: every time an SMS shows is a deadline.
        "due": local_time(due, locale, zone, "short", named=named, ends=True),
        DUE_AT: due.isoformat(),
        EMAIL_CHOSEN: "true" if values.get("email_chosen") else "false",
    }


def written_for(
    template: str,
    locale: str,
    params: Mapping[str, str],
    was: str,
    phone: str,
    at: datetime | None,
) -> tuple[str, dict[str, str]] | None:
    """An SMS written for the number `was`, given `phone` instead, written
    again in `phone`'s time (or, a number that tells no zone, in the time it
    was written in, its zone named): its text and params. None where it
    reads as it did (it shows no time, the two numbers tell the same zone,
    or neither tells one: the service's, named), or where it does not keep
    its moment (planned before it was kept). The numbers' zones are told as
    of `at` (`labels.phone_zone`), when it was planned or about then (None:
    as of the moment it shows)."""
    moment = params.get(DUE_AT)
    if not moment or not phone:
        return None
    try:
        due = datetime.fromisoformat(moment)
        before, now = phone_zone(was, at or due), phone_zone(phone, at or due)
        if now is None:
            # A number that tells no zone is told the time as it was written,
            # saying its zone (one written in the service's says it already).
            if before is None:
                return None
            zone, named = before, True
        elif before is not None and before.key == now.key:
            return None
        else:
            zone, named = now, False
        values = {
            **params,
            "due": due,
            "email_chosen": params.get(EMAIL_CHOSEN) == "true",
        }
        text, shown = sms_in(zone, template, locale, values, named=named)
    except (TemplateError, ValueError, LookupError) as exc:
        # A text this release cannot write again (its template changed
        # since it was planned): it keeps its words, rather than hold up
        # the change that moves it to the number its person gave.
        log.warning("notification.not_written_again", template=template, error=repr(exc))
        return None
    return text, {**params, **shown}


class Readdressed(NamedTuple):
    """A job just given another address, as `write_again` reads it."""

    id: uuid.UUID
    channel: str
    template: str
    locale: str
    params: dict[str, str]
    was: str
    recipient: str
    created_at: datetime


# A statement's RETURNING list for `Readdressed`: of the job updated (`j`),
# and the address it had (`was`, from the rows that chose it).
READDRESSED_ROWS = "j.id, j.channel, j.template, j.locale, j.params, was, j.recipient, j.created_at"


async def write_again(conn: psycopg.AsyncConnection[Any], jobs: Sequence[Readdressed]) -> int:
    """Writes the SMS among `jobs` again in their new number's time
    (`written_for`), in the caller's transaction; how many."""
    again = []
    for job in jobs:
        if job.channel != "SMS":
            continue
        text = written_for(
            job.template, job.locale, job.params, job.was, job.recipient, job.created_at
        )
        if text is not None:
            again.append((job.id, *text))
    if again:
        texts = partial(columns.texts, encoding=conn.info.encoding)
        await conn.execute(
            "UPDATE notification_jobs AS j SET body = w.body, params = w.params"
            " FROM unnest(%s::uuid[], %s::text[], %s::jsonb[]) AS w(id, body, params)"
            " WHERE j.id = w.id",
            (
                columns.uuids(job_id for job_id, _, _ in again),
                texts(body for _, body, _ in again),
                columns.jsonbs(params for _, _, params in again),
            ),
        )
    return len(again)


@dataclass(frozen=True)
class Followed:
    """What a change moved: party rows and jobs, and how many of those
    (SMS) were written again in their new number's time."""

    parties: int = 0
    jobs: int = 0
    written_again: int = 0


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
    have now, the SMS written again in its time (`write_again`), in the
    caller's transaction. Their number now is the new one
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
        " their_jobs AS (SELECT j.id, j.recipient AS was, r.now FROM notification_jobs AS j"
        "   JOIN retired AS r ON j.user_id = r.person AND j.recipient = r.phone"
        "   WHERE j.user_id <> '' AND j.channel = 'SMS' AND j.status = ANY(%(open)s)"
        f"   AND j.template <> %(code)s{scope.format(t='j')}"
        "   ORDER BY j.id FOR UPDATE OF j),"
        f" jobs AS (UPDATE notification_jobs AS j SET recipient = t.now, {READDRESSING}"
        f"   FROM their_jobs AS t WHERE j.id = t.id RETURNING {READDRESSED_ROWS})"
        # A row for each job moved (one with none when none was), each with
        # the count of rows.
        " SELECT (SELECT count(*) FROM parties), jobs.* FROM (VALUES (1)) AS one"
        " LEFT JOIN jobs ON true",
        {
            "users": sorted(set(users)),
            "cases": sorted(set(cases or ())),
            "open": READDRESSED,
            "code": CODE_TEMPLATE,
        },
    )
    rows = await cur.fetchall()
    moved = [Readdressed(*row[1:]) for row in rows if row[1] is not None]
    written = await write_again(conn, moved)
    return Followed(parties=rows[0][0], jobs=len(moved), written_again=written)


async def forget_old_changes(conn: psycopg.AsyncConnection[Any], before: datetime) -> int:
    """Deletes the changes heard that were verified before `before` (the help
    centre's `phone_changes` period: it keeps their numbers no longer, and
    events naming an old number are not heard that late); how many."""
    cur = await conn.execute("DELETE FROM phone_changes_heard WHERE verified_at < %s", (before,))
    return cur.rowcount
