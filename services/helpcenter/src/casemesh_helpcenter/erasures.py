"""What the help centre forgets of people: what they typed and the numbers
they gave, kept in clear here. `FORGOTTEN` says what it is, once; an
erasure forgets it of one person (`forget_person`), the retention timer of
everyone once it is older than its period (`casemesh_helpcenter.retention`).

- help sessions keep their structure (flow, answers, articles read,
  outcome, times) but lose their searches and the ticket drafted from
  them, and the search log loses their queries; a session goes on being
  used, so what it loses is what was given before: the searches not made
  again since (the log keeps each one's time), the ticket's words written
  before (`worded_at`), or since but quoting those searches;
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
    erasure (`%(at)s`); `given` is when a row's data was given (first, in a
    row given more later), kept for the period `kept` names in
    retention.toml. Where a row's data is given at several times, `forget`
    and `holding` say which of it came before with `{upto}` after a time:
    `<= %(at)s` in an erasure, `< %(before)s` by age."""

    table: str
    forget: str
    holding: str
    theirs: str
    given: str
    kept: str

    def _changing(self, rows: str, upto: str) -> str:
        if self.forget:
            statement = f"UPDATE {self.table} SET {self.forget} WHERE {rows}"
        else:
            statement = f"DELETE FROM {self.table} WHERE {rows}"
        return statement.replace("{upto}", upto)

    @property
    def of_person(self) -> str:
        """Forgets it of `%(person)s`, given before `%(at)s`."""
        return self._changing(f"{self.theirs} AND {self.holding}", "<= %(at)s")

    @property
    def by_age(self) -> str:
        """Forgets it, of anyone, in at most `%(batch)s` rows given before
        `%(before)s`; rows another transaction holds (an erasure, another
        replica's batch) are left for a later pass, not waited for. Its
        table has a partial index on `given` over the rows `holding` it."""
        return self._changing(
            f"id IN (SELECT id FROM {self.table} WHERE {self.given} < %(before)s"
            f" AND {self.holding} ORDER BY {self.given} LIMIT %(batch)s FOR UPDATE SKIP LOCKED)",
            "< %(before)s",
        )


# Of a help session's searches (`searches`, each at its latest), one made
# again since the time `{upto}` bounds: the search log keeps each search's
# time (and the words of a session's latest, those `searches` holds).
_SEARCHED_SINCE = (
    "EXISTS (SELECT FROM help_search_log l WHERE l.session = help_sessions.id"
    " AND l.query = s.query AND NOT (l.at {upto}))"
)
_SEARCHED_BEFORE = (
    "EXISTS (SELECT FROM jsonb_array_elements_text(searches) AS s(query)"
    f" WHERE NOT {_SEARCHED_SINCE})"
)
# Its ticket's words given before: written then, or when no time was kept
# (by an earlier release), or since but quoting a search made before (a
# draft written after an erasure and before it was heard). Subject and
# description go together: a ticket with one of them could not be opened,
# nor its words be given again (`store.resolve`).
_WORDED_BEFORE = (
    "((ticket_subject <> '' OR ticket_description <> '')"
    " AND (worded_at IS NULL OR worded_at {upto} OR EXISTS ("
    " SELECT FROM jsonb_array_elements_text(searches) AS s(query)"
    f" WHERE NOT {_SEARCHED_SINCE} AND strpos(ticket_description, s.query) > 0)))"
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
        forget="searches = (SELECT coalesce(jsonb_agg(s.query ORDER BY s.n), '[]')"
        " FROM jsonb_array_elements_text(searches) WITH ORDINALITY AS s(query, n)"
        f" WHERE {_SEARCHED_SINCE}),"
        f" ticket_subject = CASE WHEN {_WORDED_BEFORE} THEN '' ELSE ticket_subject END,"
        f" ticket_description = CASE WHEN {_WORDED_BEFORE} THEN '' ELSE ticket_description END",
        # (Its first part is its partial index's condition, `help_sessions_worded`.)
        holding="(searches <> '[]' OR ticket_subject <> '' OR ticket_description <> '')"
        f" AND ({_SEARCHED_BEFORE} OR {_WORDED_BEFORE})",
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
