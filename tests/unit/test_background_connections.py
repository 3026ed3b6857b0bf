"""The connections the evidence and help-centre services open in the
background (the case follower, the purger, an erasure's forgetting) ask for
keepalives and a bound on unacknowledged sends, as the pools' do: one the
network dropped mid-transaction, and its locks with it, is given up within
a minute, not after the kernel's quarter of an hour. No database: the
connection asked for is looked at, then refused."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from casemesh.platform.clock import SystemClock
from casemesh.platform.consuming import HeardUntil
from casemesh.platform.pools import NETWORK_LIMITS
from casemesh_evidence import application as evidence
from casemesh_evidence import lifecycle
from casemesh_evidence.store import LocalBlobStore
from casemesh_helpcenter import erasures
from casemesh_notifier import schema as notifier_schema

URL = "postgresql://casemesh@db.internal:5432/casemesh"


class Refused(Exception):
    """What the stand-in for the database answers every connection."""


@dataclass
class Asked:
    """The parameters each connection was asked for with, in order."""

    params: list[dict[str, Any]] = field(default_factory=list)
    seen: threading.Event = field(default_factory=threading.Event)

    def all_probed(self) -> bool:
        return bool(self.params) and all(
            str(p.get(key)) == str(NETWORK_LIMITS[key])
            for p in self.params
            for key in ("keepalives", "keepalives_idle", "tcp_user_timeout")
        )


@pytest.fixture()
def asked(monkeypatch: pytest.MonkeyPatch) -> Asked:
    found = Asked()

    def connect(conninfo: str = "", **kwargs: Any) -> Any:
        params = conninfo_to_dict(conninfo)
        assert params["dbname"] == "casemesh"  # the URL's database still
        found.params.append({**params, **kwargs})
        found.seen.set()
        raise Refused

    monkeypatch.setattr(psycopg, "connect", connect)
    return found


def test_forgetting_an_erased_persons_files_and_help_asks_for_keepalives(asked: Asked) -> None:
    with pytest.raises(Refused):
        evidence.forget_person(URL, SystemClock(), "eve")
    with pytest.raises(Refused):
        erasures.forget_person(URL, "eve", datetime.now(UTC))
    assert len(asked.params) == 2 and asked.all_probed(), asked.params


def test_the_case_follower_and_the_purger_ask_for_keepalives(asked: Asked, tmp_path: Path) -> None:
    follower = lifecycle.CaseFollower("localhost:9092", URL, SystemClock())
    with pytest.raises(Refused):
        follower._take([])  # what it does with each batch of case events
    assert len(asked.params) == 1
    purger = lifecycle.Purger(
        URL,
        LocalBlobStore(tmp_path),
        SystemClock(),
        grace=timedelta(hours=1),
        tick=0.01,
        heard=cast(HeardUntil, None),  # not asked: no candidate is read
    )
    asked.seen.clear()
    purger.start()
    try:
        assert asked.seen.wait(10)
    finally:
        purger.stop()
    assert len(asked.params) >= 2 and asked.all_probed(), asked.params


async def test_the_notifiers_schema_at_start_asks_for_keepalives(
    asked: Asked, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start the network cut off mid-way fails and is tried again, not left
    hanging (its liveness answers meanwhile)."""

    async def connect(conninfo: str = "", **kwargs: Any) -> Any:
        return psycopg.connect(conninfo, **kwargs)  # the stand-in above

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect)
    with pytest.raises(Refused):
        await notifier_schema.create_schema(URL)
    assert len(asked.params) == 1 and asked.all_probed(), asked.params
