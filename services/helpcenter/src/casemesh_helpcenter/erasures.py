"""What the help centre forgets of an erased person (casemesh.privacy.v1):
what they typed and the numbers they gave, kept in clear here.

- their help sessions keep their structure (flow, answers, articles read,
  outcome) but lose their searches and the ticket drafted from them, and the
  search log loses the queries of those sessions;
- their phone-number changes keep their times but lose both numbers, and
  those still open end (ERASED: a code confirmed later would verify a
  change between no numbers); their one-time codes not yet published are
  not published; the verified requests already published lose
  their payload (an unpublished one still reaches the account system, which
  owns the account, and loses it once published, as every one does).

Only what they gave before their erasure (`erased_at`): the erasure is
heard twice, and again whenever its topic is read anew (a late publication,
a replay), and what they did since is theirs as anyone's. One transaction;
idempotent.
"""

from __future__ import annotations

from datetime import datetime

import psycopg

from casemesh.platform.logging import get_logger
from casemesh_helpcenter import phone

log = get_logger(__name__)

# Their phone-number changes made before the erasure, by the request name
# their codes and verified requests are published under.
_CHANGES = (
    "SELECT 'phone-changes/' || id FROM phone_changes"
    " WHERE user_id = %(person)s AND created_at <= %(at)s"
)
FORGET = (
    "UPDATE help_search_log SET query = ''"
    " WHERE session IN (SELECT id FROM help_sessions WHERE user_id = %(person)s)"
    " AND at <= %(at)s AND query <> ''",
    "UPDATE help_sessions SET searches = '[]', ticket_subject = '', ticket_description = ''"
    " WHERE user_id = %(person)s AND created_at <= %(at)s"
    " AND (searches <> '[]' OR ticket_subject <> '' OR ticket_description <> '')",
    # A code not yet published goes unsent: it names the number it proves.
    f"DELETE FROM {phone.CODES.table} WHERE published_at IS NULL AND request IN ({_CHANGES})",
    f"UPDATE {phone.REQUESTS.table} SET payload = ''"
    f" WHERE published_at IS NOT NULL AND payload <> '' AND request IN ({_CHANGES})",
    "UPDATE phone_changes SET state = 'ERASED' WHERE user_id = %(person)s"
    " AND created_at <= %(at)s AND state IN ('AWAITING_OLD_CODE', 'AWAITING_NEW_CODE')",
    "UPDATE phone_changes SET old_phone = '', new_phone = ''"
    " WHERE user_id = %(person)s AND created_at <= %(at)s AND (old_phone <> '' OR new_phone <> '')",
)


def forget_person(database_url: str, person: str, erased_at: datetime) -> int:
    """Forgets what `person` typed and the numbers they gave before
    `erased_at`; returns how many rows changed."""
    with psycopg.connect(database_url, connect_timeout=10) as conn, conn.transaction():
        changed = sum(
            conn.execute(statement, {"person": person, "at": erased_at}).rowcount
            for statement in FORGET
        )
    log.info("person.forgotten", person=person, rows=changed)
    return changed
