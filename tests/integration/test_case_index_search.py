"""Agents' word search on a database made with the C locale, as CloudNativePG
makes one by default: there PostgreSQL folds the case of ASCII letters only
(`'ÉCRAN' ILIKE 'écran'` is false). The index compares words as the service
folds them, so the locale does not matter; rows an older release wrote are
found as before until they are folded, and then as the others."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from casemesh.platform import caseindex
from casemesh.platform.caseindex import CaseIndex, IndexProjector
from casemesh.platform.identity import Identity
from casemesh_tickets.application import NewTicket, Tickets, TicketSearch, case_row
from tests.conftest import Infra
from tests.support import wait_until

USER = Identity("search-user", frozenset({"user"}))
AGENT = Identity("search-agent", frozenset({"agent"}))


@pytest.fixture()
def dsn(infra: Infra) -> str:
    """A fresh database made with the C locale (the integration tests' own
    cluster is C.UTF-8, which folds every letter)."""
    name = f"search_c_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(infra.pg.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    dsn = infra.pg.dsn(name)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT 'ÉCRAN noir' ILIKE '%écran%'").fetchone()
        assert row == (False,)  # what the index must not depend on
    return dsn


def opened(app: Tickets, request_id: str, subject: str, description: str) -> str:
    return app.create_ticket(
        USER,
        NewTicket(
            request_id=request_id,
            category="account.login",
            subject=subject,
            description=description,
            locale="en",
            contact={"email": "search@example.com", "phone": "", "channels": ["EMAIL"]},
        ),
    ).id


def found(app: Tickets, words: str) -> set[str]:
    return {t.id for t in app.search_tickets(AGENT, TicketSearch(text=words), 0, "").items}


def test_words_are_found_whatever_their_case_or_width(app: Tickets) -> None:
    screen = opened(app, "s1", "ÉCRAN noir", "depuis la MISE À JOUR")
    abc = opened(app, "s2", "ABC account locked", "code 12")
    wide = opened(app, "s3", "Ｅｒｒｏｒ ４０４", "ＤＥＬＴＡ")
    IndexProjector(app, app.index, case_row).catch_up()

    assert found(app, "écran") == {screen}
    assert found(app, "Écran mise à jour") == {screen}
    assert found(app, "ａｂｃ") == {abc}  # typed full-width, stored half-width
    assert found(app, "error 404 delta") == {wide}  # and the other way round
    assert found(app, "100%") == set()  # a LIKE wildcard is a character searched for


def test_rows_an_older_release_wrote_are_found_as_before_then_folded(
    app: Tickets, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows from before texts were folded have none; a row a replica of the
    older release moved on during a rollout has them for an older version.
    Neither's folded texts are used (its document is searched as before),
    until the projector's upkeep folds them, soon after it starts."""
    screen = opened(app, "o1", "ÉCRAN noir", "depuis hier")
    other = opened(app, "o2", "ÉCRAN bleu", "depuis hier")
    IndexProjector(app, app.index, case_row).catch_up()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE ticket_cases SET folded = NULL, folded_version = NULL WHERE case_id = %s",
            (screen,),
        )
        conn.execute(
            "UPDATE ticket_cases SET version = version + 1,"
            " doc = jsonb_set(doc, '{subject}', '\"ÉCRAN blanc\"') WHERE case_id = %s",
            (other,),
        )
    assert found(app, "noir") == {screen} and found(app, "blanc") == {other}
    assert found(app, "bleu") == set()  # its old words are not what it says now
    assert found(app, "écran") == set()  # as before, under this locale

    monkeypatch.setattr(caseindex, "FOLD_EVERY_S", 0.1)
    projector = IndexProjector(app, app.index, case_row)
    projector.start()
    try:
        wait_until(lambda: found(app, "écran") == {screen, other})
    finally:
        projector.stop()
    assert found(app, "écran blanc") == {other} and found(app, "bleu") == set()
    assert isinstance(app.index, CaseIndex)
    assert app.index.fold() == 0  # nothing left
