"""A process starting while its database is away waits for it; one whose
database URL's password the server refuses stops, so that
the setting is mended rather than waited on for ever."""

from __future__ import annotations

import psycopg
import pytest

from casemesh.platform.pools import refused_for_good

REFUSED = (
    'connection failed: connection to server at "10.0.0.5", port 5432 failed:'
    ' FATAL:  password authentication failed for user "tickets"',
)
AWAY = (
    'connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused',
    "connection failed: timeout expired",
    'connection failed: FATAL:  database "casemesh_tickets" does not exist',
    "connection failed: FATAL:  the database system is starting up",
    'connection failed: FATAL:  role "tickets" does not exist',
)


@pytest.mark.parametrize("said", REFUSED)
def test_a_user_or_password_the_server_refuses_stops_the_start(said: str) -> None:
    assert refused_for_good(psycopg.OperationalError(said))


@pytest.mark.parametrize("said", AWAY)
def test_a_database_away_or_not_made_yet_is_waited_for(said: str) -> None:
    assert not refused_for_good(psycopg.OperationalError(said))
