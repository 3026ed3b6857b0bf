"""What the help centre forgets of people: what they typed and the numbers
they gave, kept in clear here. `FORGOTTEN` says what it is, once; an
erasure forgets it of one person (`forget_person`), the retention timer of
everyone once it is older than its period (`casemesh_helpcenter.retention`).

- help sessions keep their structure (flow, answers, articles read,
  outcome, times) but lose their searches and the ticket drafted from
  them, and the search log loses their queries. A session goes on being
  used, so what an erasure takes of it is what was given before: the
  searches not made again since (the log keeps each one's time), and the
  ticket's words given before (`worded_at`: when written, or when the
  searches its draft quotes were made). Retention takes a session's words
  all at once, its period after the session began;
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
    period `kept` names in retention.toml. A row the person may add to
    after their erasure (a help session goes on being used) says what the
    erasure takes of it in `erased_forget` and `erased_holding`: only what
    came before `%(at)s`. Retention, by `given`, takes it all at once."""

    table: str
    forget: str
    holding: str
    theirs: str
    given: str
    kept: str
    erased_forget: str = ""
    erased_holding: str = ""

    def _changing(self, forget: str, rows: str) -> str:
        if forget:
            return f"UPDATE {self.table} SET {forget} WHERE {rows}"
        return f"DELETE FROM {self.table} WHERE {rows}"

    @property
    def of_person(self) -> str:
        """Forgets it of `%(person)s`, given before `%(at)s`."""
        holding = self.erased_holding or self.holding
        return self._changing(self.erased_forget or self.forget, f"{self.theirs} AND {holding}")

    @property
    def by_age(self) -> str:
        """Forgets it, of anyone, in at most `%(batch)s` rows given before
        `%(before)s`; rows another transaction holds (an erasure, another
        replica's batch) are left for a later pass, not waited for. Its
        table has a partial index on `given` over the rows `holding` it."""
        return self._changing(
            self.forget,
            f"id IN (SELECT id FROM {self.table} WHERE {self.given} < %(before)s"
            f" AND {self.holding} ORDER BY {self.given} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
        )


# Of a help session's searches (`searches`, each at its latest), one made
# again since the erasure: the search log keeps each search's time (and the
# words of a session's latest, those `searches` holds).
_SEARCHED_SINCE = (
    "EXISTS (SELECT FROM help_search_log l WHERE l.session = help_sessions.id"
    " AND l.query = s.query AND l.at > %(at)s)"
)
_SEARCHED_BEFORE = (
    "EXISTS (SELECT FROM jsonb_array_elements_text(searches) AS s(query)"
    f" WHERE NOT {_SEARCHED_SINCE})"
)
# Its ticket's words given before the erasure (`store.resolve` keeps when),
# or when no time was kept (by an earlier release). Subject and description
# go together: a ticket with one of them could not be opened, nor its words
# be given again.
_WORDED_BEFORE = (
    "((ticket_subject <> '' OR ticket_description <> '')"
    " AND (worded_at IS NULL OR worded_at <= %(at)s))"
)
_SESSION_WORDS = "(searches <> '[]' OR ticket_subject <> '' OR ticket_description <> '')"

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
        holding=_SESSION_WORDS,  # its partial index's condition, `help_sessions_worded`
        theirs="user_id = %(person)s AND created_at <= %(at)s",
        given="created_at",
        kept="help_sessions",
        erased_forget="searches = (SELECT coalesce(jsonb_agg(s.query ORDER BY s.n), '[]')"
        " FROM jsonb_array_elements_text(searches) WITH ORDINALITY AS s(query, n)"
        f" WHERE {_SEARCHED_SINCE}),"
        f" ticket_subject = CASE WHEN {_WORDED_BEFORE} THEN '' ELSE ticket_subject END,"
        f" ticket_description = CASE WHEN {_WORDED_BEFORE} THEN '' ELSE ticket_description END",
        erased_holding=f"{_SESSION_WORDS} AND ({_SEARCHED_BEFORE} OR {_WORDED_BEFORE})",
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
