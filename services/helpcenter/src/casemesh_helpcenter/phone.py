"""Self-service phone-number change: Casemesh verifies, the account system
owns the account.

A code goes to the old number; once it is confirmed, one goes to the new
number; once that is confirmed, a verified change request is published for
the account system, which must check the old number is the account's (the
old-number step proves the user holds that number, not that it is theirs on
the account). Codes are six digits, kept here as salted hashes (the outbox
row that carries one to the notifier is erased once published), valid for ten
minutes; five wrong codes lock the change; a code can be re-sent three times;
a change lasts an hour; a new one supersedes the user's unfinished ones; and
new changes are limited per user, and per number by the changes whose codes
went to it within the hour: few of the user's own, and more of anyone's (so
that a number is not texted without bound), checked as a change starts and
again as the new number's first code goes. Naming someone's number must
not lock them out of their own change: a number merely named, whose code
was never sent, counts for nothing, and others' changes count only towards
the larger limit. (Nobody is known to hold a number until they confirm its
code, so enough accounts together still fill that one, for an hour.) Codes
travel to the notifier through an outbox
(`casemesh.verification.v1`), the verified request through another
(`casemesh.helpcenter.v1`). The topics keep them for an hour and 30 days, and
the user's erasure must reach them there too: a code's number is sealed
under the user's data key (`casemesh.platform.personal`), and so are a
verified request's two once `HelpSettings.seal_phone_changes` is on (the
account system reading them must reveal them). The caller has the user's
key in memory before it calls: a seal here, under the locks, needs no key
database."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import psycopg
from psycopg.rows import dict_row

from casemesh import topics
from casemesh.events.v1 import helpcenter_pb2 as hev
from casemesh.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
)
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.ids import derived_id
from casemesh.platform.outbox import Outbox, outbox_schema
from casemesh.platform.paging import older_than
from casemesh.rules.codes import CODE_LIFE

MAX_ATTEMPTS = 5
MAX_RESENDS = 3
# A change not finished within this time is over; start again.
CHANGE_TTL = timedelta(hours=1)
# Against SMS flooding and guessing across changes: new changes per user per
# day; per number per hour, the changes of one user that sent it a code, and
# those of anyone. Others' changes count only towards the second, so that
# three strangers naming a number do not stop its holder's own change.
CHANGES_PER_USER_PER_DAY = 5
OWN_CHANGES_PER_NUMBER_PER_HOUR = 3
CHANGES_PER_NUMBER_PER_HOUR = 10
# The changes begun in the last hour that sent `%(number)s` a code, and those
# of them `%(user)s` began: every change sends one to its old number as it
# starts; one reaches its new number once the old is confirmed, which is
# when `prev_hash` is set (and kept). (The rows with numbers hold them in
# clear; `phone_changes_numbered` has the recent ones, and the repeated
# condition lets the planner use it.)
_SENT_TO_NUMBER = (
    "SELECT count(*) AS n, count(*) FILTER (WHERE user_id = %(user)s) AS own"
    " FROM phone_changes WHERE created_at > %(since)s"
    " AND (old_phone <> '' OR new_phone <> '')"
    " AND (old_phone = %(number)s OR (new_phone = %(number)s AND prev_hash <> ''))"
)
NAMESPACE = uuid.UUID("b1a5c0de-4f1e-4c3a-9d2b-7e6f5a4b3c21")
# Seals a person's text (text, person): each number a topic carries.
Seal = Callable[[str, str], Awaitable[str]]


async def in_clear(text: str, person: str) -> str:
    """The `Seal` that seals nothing: a verified request's numbers while
    `seal_phone_changes` is off."""
    return text


# Each outbox row names its phone change (`phone-changes/{id}`) in `request`.
_outbox = partial(Outbox, source="casemesh/helpcenter", subject_column="request")
CODES = _outbox(
    table="verification_outbox",
    topic=topics.VERIFICATION,
    erase_published=True,
    messages=(hev.VerificationCodeIssued,),
)
# Its rows carry both numbers in the clear (for the account system): the
# payload goes once Kafka has it, so that no erasure has to come after it.
REQUESTS = _outbox(
    table="help_outbox",
    topic=topics.HELPCENTER,
    erase_published=True,
    messages=(hev.PhoneChangeVerified,),
)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS phone_changes (
    id uuid PRIMARY KEY, user_id text NOT NULL, request_id text NOT NULL,
    old_phone text NOT NULL, new_phone text NOT NULL, locale text NOT NULL,
    state text NOT NULL, salt text NOT NULL, code_hash text NOT NULL,
    prev_salt text NOT NULL DEFAULT '', prev_hash text NOT NULL DEFAULT '',
    code_expires timestamptz NOT NULL, codes_sent int NOT NULL, attempts int NOT NULL,
    created_at timestamptz NOT NULL, verified_at timestamptz,
    UNIQUE (user_id, request_id));
CREATE TABLE IF NOT EXISTS phone_change_resends (
    user_id text NOT NULL, request_id text NOT NULL, change_id uuid NOT NULL,
    PRIMARY KEY (user_id, request_id));
"""
    + "".join(outbox_schema(o) for o in (CODES, REQUESTS))
    + """
-- An erasure finds the verified requests of a person's changes.
CREATE INDEX IF NOT EXISTS help_outbox_request ON help_outbox (request);
-- Retention finds the numbers still to forget by age (`erasures.FORGOTTEN`,
-- whose conditions these are; codes not yet published are few, and
-- indexed as such).
CREATE INDEX IF NOT EXISTS phone_changes_numbered ON phone_changes (created_at)
    WHERE (old_phone <> '' OR new_phone <> '');
CREATE INDEX IF NOT EXISTS help_outbox_published_payload ON help_outbox (created_at)
    WHERE published_at IS NOT NULL AND payload <> '';
-- Columns a table made before them lacks.
ALTER TABLE phone_changes ADD COLUMN IF NOT EXISTS prev_salt text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS prev_hash text NOT NULL DEFAULT '';
"""
)


@dataclass
class Change:
    id: str
    user_id: str
    request_id: str
    old_phone: str
    new_phone: str
    locale: str
    state: str
    salt: str
    code_hash: str
    code_expires: datetime
    codes_sent: int
    attempts: int
    created_at: datetime
    verified_at: datetime | None
    prev_salt: str = ""
    prev_hash: str = ""

    @property
    def name(self) -> str:
        return f"phone-changes/{self.id}"


def _hash(salt: str, code: str) -> str:
    return hashlib.sha256(f"{salt}:{code}".encode()).hexdigest()


async def _load(cur: Any, ident: str) -> Change | None:
    await cur.execute("SELECT * FROM phone_changes WHERE id = %s FOR UPDATE", (ident,))
    row = await cur.fetchone()
    return Change(**{**row, "id": str(row["id"])}) if row else None


async def _save(cur: Any, c: Change) -> None:
    await cur.execute(
        "UPDATE phone_changes SET state = %s, salt = %s, code_hash = %s, code_expires = %s,"
        " codes_sent = %s, attempts = %s, verified_at = %s, prev_salt = %s, prev_hash = %s"
        " WHERE id = %s",
        (
            c.state,
            c.salt,
            c.code_hash,
            c.code_expires,
            c.codes_sent,
            c.attempts,
            c.verified_at,
            c.prev_salt,
            c.prev_hash,
            c.id,
        ),
    )


async def _send_code(cur: Any, c: Change, now: datetime, seal: Seal) -> None:
    """A fresh code for the current step, to the number it proves."""
    code = f"{secrets.randbelow(10**6):06d}"
    c.salt = secrets.token_hex(8)
    c.code_hash = _hash(c.salt, code)
    c.code_expires = now + CODE_LIFE
    c.codes_sent += 1
    old_step = c.state == "AWAITING_OLD_CODE"
    event = hev.VerificationCodeIssued(
        request=c.name,
        phone=await seal(c.old_phone if old_step else c.new_phone, c.user_id),
        code=code,
        locale=c.locale,
        purpose="phone_change_old" if old_step else "phone_change_new",
        expire_time=to_timestamp(c.code_expires),
        user_id=c.user_id,
    )
    await cur.execute(
        "INSERT INTO verification_outbox (event_id, request, ce_type, payload, created_at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (
            f"{c.id}:code:{c.codes_sent}",
            c.name,
            CODES.type_of(event),
            event.SerializeToString(),
            now,
        ),
    )
    await cur.execute("SELECT pg_notify('verification_outbox', '')")


async def start(
    conn: psycopg.AsyncConnection[Any],
    *,
    user_id: str,
    request_id: str,
    old_phone: str,
    new_phone: str,
    locale: str,
    now: datetime,
    seal: Seal,
) -> Change:
    ident = str(derived_id(NAMESPACE, user_id, request_id))
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # One user's changes are serialised: the limits below cannot be raced.
        await cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"phone:{user_id}",))
        await cur.execute("SELECT 1 FROM phone_changes WHERE id = %s", (ident,))
        if await cur.fetchone() is None:
            await _check_user_limit(cur, user_id, now)
            # Numbers are shared by users: theirs are serialised too.
            await _lock_numbers(cur, old_phone, new_phone)
            for number in (old_phone, new_phone):
                await _check_number_limit(cur, number, user_id, now)
        await cur.execute(
            "INSERT INTO phone_changes (id, user_id, request_id, old_phone, new_phone, locale,"
            " state, salt, code_hash, code_expires, codes_sent, attempts, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'AWAITING_OLD_CODE', '', '', %s, 0, 0, %s)"
            " ON CONFLICT DO NOTHING",
            (ident, user_id, request_id, old_phone, new_phone, locale, now, now),
        )
        created = cur.rowcount == 1
        change = await _load(cur, ident)
        assert change is not None
        if change.state == "ERASED":  # its numbers are gone: they match nothing
            _require_open(change, now)
        # A number retention or an erasure blanked is unknown, not another:
        # the retry is answered with the change as it stands.
        sent = ((change.old_phone, old_phone), (change.new_phone, new_phone))
        if any(stored and stored != given for stored, given in sent):
            raise AlreadyExists(
                "request_id was used for a change between other numbers",
                reason="REQUEST_ID_REUSED",
                metadata={"field": "request_id"},
            )
        if created:
            # A new change ends the user's earlier unfinished ones.
            await cur.execute(
                "UPDATE phone_changes SET state = 'SUPERSEDED' WHERE user_id = %s AND id <> %s"
                " AND state IN ('AWAITING_OLD_CODE', 'AWAITING_NEW_CODE')",
                (user_id, ident),
            )
            await _send_code(cur, change, now, seal)
            await _save(cur, change)
    return change


async def _check_user_limit(cur: Any, user_id: str, now: datetime) -> None:
    await cur.execute(
        "SELECT count(*) AS n FROM phone_changes WHERE user_id = %s AND created_at > %s",
        (user_id, now - timedelta(days=1)),
    )
    if (await cur.fetchone())["n"] >= CHANGES_PER_USER_PER_DAY:
        raise ResourceExhausted(
            f"at most {CHANGES_PER_USER_PER_DAY} phone changes a day; try again tomorrow",
            reason="PHONE_CHANGES_PER_DAY",
        )


async def _lock_numbers(cur: Any, *numbers: str) -> None:
    """Serialises, until the transaction ends, whatever counts and sends codes
    to these numbers, across users and replicas. Locks are taken in the
    order of their keys, so that two calls naming the same numbers the other
    way round wait for each other instead of deadlocking. Taken before any
    row lock (`_load`), and after the user's lock when both are taken."""
    for key in sorted({_number_key(n) for n in numbers}):
        await cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))


def _number_key(number: str) -> int:
    digest = hashlib.sha256(f"casemesh-phone-number:{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def _check_number_limit(cur: Any, number: str, user_id: str, now: datetime) -> None:
    """Refuses another change's code to `number` once, of the changes begun
    within the hour that sent it codes, OWN_CHANGES_PER_NUMBER_PER_HOUR were
    the user's, or CHANGES_PER_NUMBER_PER_HOUR anyone's. Asked under
    `_lock_numbers` (so that two changes cannot both take the last place)."""
    await cur.execute(
        _SENT_TO_NUMBER,
        {"since": now - timedelta(hours=1), "number": number, "user": user_id},
    )
    sent = await cur.fetchone()
    if sent["own"] >= OWN_CHANGES_PER_NUMBER_PER_HOUR or sent["n"] >= CHANGES_PER_NUMBER_PER_HOUR:
        raise ResourceExhausted(
            "too many codes for this number; try again in an hour", reason="CODES_PER_NUMBER"
        )


async def get(conn: psycopg.AsyncConnection[Any], user_id: str, ident: str) -> Change | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM phone_changes WHERE id = %s", (ident,))
        row = await cur.fetchone()
    if row is None or row["user_id"] != user_id:
        return None
    return Change(**{**row, "id": str(row["id"])})


async def changes_of(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Change]:
    """The user's changes, newest first, from after `after` (a change's
    start and id)."""
    where, args = older_than("user_id = %s", [user_id], after)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT * FROM phone_changes WHERE {where} ORDER BY created_at DESC, id DESC LIMIT %s",
            (*args, limit),
        )
        rows = await cur.fetchall()
    return [Change(**{**row, "id": str(row["id"])}) for row in rows]


def expired(c: Change, now: datetime) -> bool:
    """Whether the change was left unfinished past its hour."""
    return c.state != "VERIFIED" and now >= c.created_at + CHANGE_TTL


def resends_left(c: Change) -> int:
    """Codes per change: one per number and three more (one kept for the new number)."""
    reserved = 1 if c.state == "AWAITING_OLD_CODE" else 0
    return max(0, 2 + MAX_RESENDS - c.codes_sent - reserved)


def _require_open(c: Change, now: datetime) -> None:
    if c.state == "ERASED":
        raise FailedPrecondition(
            "this change ended when your data was erased; start a new one",
            reason="PHONE_CHANGE_ERASED",
        )
    if c.state == "SUPERSEDED":
        raise FailedPrecondition(
            "a newer phone change replaced this one", reason="PHONE_CHANGE_SUPERSEDED"
        )
    if expired(c, now):
        raise FailedPrecondition(
            "this change was not finished within an hour; start a new one",
            reason="PHONE_CHANGE_EXPIRED",
        )
    if c.state == "LOCKED":
        raise FailedPrecondition(
            f"this change is locked after {MAX_ATTEMPTS} wrong codes; start a new one",
            reason="PHONE_CHANGE_LOCKED",
        )
    if c.state == "VERIFIED":
        raise FailedPrecondition("this change is already verified", reason="PHONE_CHANGE_VERIFIED")


async def confirm(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    ident: str,
    code: str,
    now: datetime,
    seal: Seal,
    seal_verified: Seal,
) -> Change | None:
    """The change after a code, or None if it is not the caller's. A wrong code
    is INVALID_ARGUMENT (with the attempts left) and counts; the fifth locks.
    The right one at the old step is RESOURCE_EXHAUSTED (`CODES_PER_NUMBER`),
    and changes nothing, while the new number has had its changes' codes for
    the hour. `seal` seals a code's number, `seal_verified` the verified
    request's."""
    wrong: str | None = None
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # The right code at the old step sends one to the new number: that
        # number's lock comes first, before the change's row (as in `start`).
        await cur.execute(
            "SELECT new_phone FROM phone_changes WHERE id = %s AND user_id = %s"
            " AND state = 'AWAITING_OLD_CODE'",
            (ident, user_id),
        )
        awaiting_old = await cur.fetchone()
        if awaiting_old is not None:
            await _lock_numbers(cur, awaiting_old["new_phone"])
        c = await _load(cur, ident)
        if c is None or c.user_id != user_id:
            return None
        right = hmac.compare_digest(_hash(c.salt, code), c.code_hash)
        # A repeated confirmation (a double tap, a retry) is answered, not counted.
        if c.state == "VERIFIED" and right:
            return c
        # So is the old number's code sent again, unless it is the new
        # number's too (one draw in a million): then it verifies the change.
        if (
            c.state == "AWAITING_NEW_CODE"
            and not right
            and c.prev_hash
            and hmac.compare_digest(_hash(c.prev_salt, code), c.prev_hash)
        ):
            return c
        _require_open(c, now)
        if now >= c.code_expires:
            raise FailedPrecondition(
                f"the code expired at {c.code_expires.isoformat(timespec='minutes')};"
                " ask for a new one (ResendPhoneChangeCode)",
                reason="CODE_EXPIRED",
                metadata={"expired_at": c.code_expires.isoformat()},
            )
        if not right:
            c.attempts += 1
            if c.attempts >= MAX_ATTEMPTS:
                c.state = "LOCKED"
            else:
                wrong = f"is not the code we sent; {MAX_ATTEMPTS - c.attempts} attempts left"
        elif c.state == "AWAITING_OLD_CODE":
            # Refused, the change stays at its step and the code stays good.
            await _check_number_limit(cur, c.new_phone, c.user_id, now)
            c.state = "AWAITING_NEW_CODE"
            c.prev_salt, c.prev_hash = c.salt, c.code_hash
            await _send_code(cur, c, now, seal)
        else:
            c.state, c.verified_at = "VERIFIED", now
            event = hev.PhoneChangeVerified(
                request=c.name,
                user_id=c.user_id,
                old_phone=await seal_verified(c.old_phone, c.user_id),
                new_phone=await seal_verified(c.new_phone, c.user_id),
                verify_time=to_timestamp(now),
            )
            await cur.execute(
                "INSERT INTO help_outbox (event_id, request, ce_type, payload, created_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (
                    f"{c.id}:verified",
                    c.name,
                    REQUESTS.type_of(event),
                    event.SerializeToString(),
                    now,
                ),
            )
            await cur.execute("SELECT pg_notify('help_outbox', '')")
        await _save(cur, c)
    if c.state == "LOCKED":
        _require_open(c, now)
    if wrong is not None:
        raise InvalidArgument.field("code", wrong)
    return c


async def resend(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    ident: str,
    now: datetime,
    seal: Seal,
    request_id: str = "",
) -> Change | None:
    """A fresh code for the current step. Under a `request_id`, a retry answers
    the change as it stands and sends nothing; the id used for another change
    is ALREADY_EXISTS (`REQUEST_ID_REUSED`)."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        c = await _load(cur, ident)
        if c is None or c.user_id != user_id:
            return None
        if request_id:
            await cur.execute(
                "INSERT INTO phone_change_resends (user_id, request_id, change_id)"
                " VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                (user_id, request_id, ident),
            )
            if cur.rowcount == 0:
                await cur.execute(
                    "SELECT change_id FROM phone_change_resends"
                    " WHERE user_id = %s AND request_id = %s",
                    (user_id, request_id),
                )
                row = await cur.fetchone()
                if row is None or str(row["change_id"]) != ident:
                    raise AlreadyExists(
                        "request_id was used to resend another change's code",
                        reason="REQUEST_ID_REUSED",
                    )
                return c
        _require_open(c, now)
        if resends_left(c) <= 0:
            raise FailedPrecondition(
                "no more codes can be sent for this change; start a new one",
                reason="NO_CODES_LEFT",
            )
        await _send_code(cur, c, now, seal)
        await _save(cur, c)
    return c
