"""What the help centre forgets of people: what they typed and the numbers
they gave, kept in clear here. `FORGOTTEN` says what it is, once; an
erasure forgets it of one person (`forget_person`), the retention timer of
everyone once it is older than its period (`casemesh_helpcenter.retention`).

- help sessions keep their structure (flow, answers, articles read,
  outcome, times) but lose their searches and the ticket drafted from
  them, and the search log loses their queries;
- phone-number changes keep their times but lose both numbers; one-time
  codes not yet published are not published; the verified requests
  already published lose their payload (an unpublished one still reaches
  the account system, which owns the account, and loses it once
  published, as every one does).

An erased person's changes still open also end (ERASED: a code confirmed
later would verify a change between no numbers); a change as old as its
retention period ended long ago (`phone.CHANGE_TTL`).

An erasure forgets only what the person gave before it (`erased_at`): it
is heard twice, and again whenever its topic is read anew (a late
publication, a replay), and what they did since is theirs as anyone's. One
transaction; idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from casemesh.platform.logging import get_logger
from casemesh.platform.pools import with_keepalives
from casemesh_helpcenter import phone

log = get_logger(__name__)


@dataclass(frozen=True)
class Forgotten:
    """What one table loses: `forget` sets it empty (no `forget`: the row
    goes) in the rows `holding` some of it, so that forgetting again changes
    nothing. `theirs` picks a person's rows (`%(person)s`) given before their
    erasure (`%(at)s`); `given` is when a row's data was given, kept for the
    period `kept` names in retention.toml."""

    table: str
    forget: str
    holding: str
    theirs: str
    given: str
    kept: str

    def _changing(self, rows: str) -> str:
        if self.forget:
            return f"UPDATE {self.table} SET {self.forget} WHERE {rows}"
        return f"DELETE FROM {self.table} WHERE {rows}"

    @property
    def of_person(self) -> str:
        """Forgets it of `%(person)s`, given before `%(at)s`."""
        return self._changing(f"{self.theirs} AND {self.holding}")

    @property
    def by_age(self) -> str:
        """Forgets it, of anyone, in at most `%(batch)s` rows given before
        `%(before)s`; rows another transaction holds (an erasure, another
        replica's batch) are left for a later pass, not waited for. Its
        table has a partial index on `given` over the rows `holding` it."""
        return self._changing(
            f"id IN (SELECT id FROM {self.table} WHERE {self.given} < %(before)s"
            f" AND {self.holding} ORDER BY {self.given} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
        )


# A person's phone-number changes made before the erasure, by the request
# name their codes and verified requests are published under.
_CHANGES = (
    "SELECT 'phone-changes/' || id FROM phone_changes"
    " WHERE user_id = %(person)s AND created_at <= %(at)s"
)
FORGOTTEN = (
    Forgotten(
        "help_search_log",
        forget="query = ''",
        holding="query <> ''",
        theirs="session IN (SELECT id FROM help_sessions WHERE user_id = %(person)s)"
        " AND at <= %(at)s",
        given="at",
        kept="help_sessions",
    ),
    Forgotten(
        "help_sessions",
        forget="searches = '[]', ticket_subject = '', ticket_description = ''",
        holding="(searches <> '[]' OR ticket_subject <> '' OR ticket_description <> '')",
        theirs="user_id = %(person)s AND created_at <= %(at)s",
        given="created_at",
        kept="help_sessions",
    ),
    # A code not yet published goes unsent: it names the number it proves.
    Forgotten(
        phone.CODES.table,
        forget="",
        holding="published_at IS NULL",
        theirs=f"request IN ({_CHANGES})",
        given="created_at",
        kept="phone_changes",
    ),
    Forgotten(
        phone.REQUESTS.table,
        forget="payload = ''",
        holding="published_at IS NOT NULL AND payload <> ''",
        theirs=f"request IN ({_CHANGES})",
        given="created_at",
        kept="phone_changes",
    ),
    Forgotten(
        "phone_changes",
        forget="old_phone = '', new_phone = ''",
        holding="(old_phone <> '' OR new_phone <> '')",
        theirs="user_id = %(person)s AND created_at <= %(at)s",
        given="created_at",
        kept="phone_changes",
    ),
)
FORGET = (
    "UPDATE phone_changes SET state = 'ERASED' WHERE user_id = %(person)s"
    " AND created_at <= %(at)s AND state IN ('AWAITING_OLD_CODE', 'AWAITING_NEW_CODE')",
    *(f.of_person for f in FORGOTTEN),
)


def forget_person(database_url: str, person: str, erased_at: datetime) -> int:
    """Forgets what `person` typed and the numbers they gave before
    `erased_at`; returns how many rows changed."""
    with (
        psycopg.connect(with_keepalives(database_url), connect_timeout=10) as conn,
        conn.transaction(),
    ):
        changed = sum(
            conn.execute(statement, {"person": person, "at": erased_at}).rowcount
            for statement in FORGET
        )
    log.info("person.forgotten", person=person, rows=changed)
    return changed
