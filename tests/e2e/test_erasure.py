"""An admin erases a person: their keys are destroyed, the erasure is
published once on casemesh.privacy.v1, and what they wrote reads as erased
while other people's cases stay as they were."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC

import grpc
import psycopg

from casemesh import topics
from casemesh.events.v1.privacy_pb2 import PersonErased
from casemesh.platform.personal import ERASED
from casemesh.v1 import privacy_pb2 as ppb
from casemesh.v1 import privacy_pb2_grpc as ppb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.test_rejections import fields, rejected
from tests.support import Client, records_keyed, wait_until


async def erasures_of(bootstrap: str, person: str) -> list[PersonErased]:
    """Every PersonErased on the topic keyed by `person`, from offset 0."""
    records = await records_keyed(bootstrap, topics.PRIVACY, person)
    return [PersonErased.FromString(r.value or b"") for r in records]


class Privacy:
    def __init__(self, client: Client) -> None:
        self.stub = ppb_grpc.PrivacyServiceStub(client._channel)
        self.metadata = client.metadata

    def erase(self, person: str, request_id: str, reason: str = "PIPL-2026-0042") -> ppb.Erasure:
        request = ppb.ErasePersonRequest(person=person, reason=reason, request_id=request_id)
        erasure: ppb.Erasure = self.stub.ErasePerson(request, metadata=self.metadata, timeout=15)
        return erasure


def open_ticket(client: Client, mark: str) -> pb.Ticket:
    ticket: pb.Ticket = client.CreateTicket(
        pb.CreateTicketRequest(
            ticket=pb.Ticket(
                category="account.login",
                subject=f"Locked out {mark}",
                description=f"Since yesterday, case {mark}.",
                locale="en",
                contact=pb.Contact(email=f"{mark}@example.com", channels=[pb.CHANNEL_EMAIL]),
            ),
            request_id=uuid.uuid4().hex,
        )
    )
    return ticket


def test_an_admin_erases_a_person_once_and_only_admins_may(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    mei, tao = f"mei-{run}", f"tao-{run}"
    meis = open_ticket(Client(stack.gateway, stack.secret, mei), f"mei{run}")
    taos = open_ticket(Client(stack.gateway, stack.secret, tao), f"tao{run}")
    admin = Privacy(Client(stack.gateway, stack.secret, f"admin-{run}", ("admin",)))
    agent = Privacy(Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",)))

    # Only admins; a request missing its fields is refused, naming them.
    err = rejected(lambda: agent.erase(mei, f"r-{run}"))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = rejected(lambda: admin.erase(" ", "", reason=""))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(fields(err)) == {"person", "reason", "request_id"}
    keys = stack.infra.pg.dsn("casemesh_keys")
    with psycopg.connect(keys) as conn:
        assert conn.execute(
            "SELECT count(*) FROM personal_keys WHERE person = %s AND erased_at IS NULL", (mei,)
        ).fetchone() == (1,)

    erasure = admin.erase(mei, f"r-{run}")
    assert (erasure.person, erasure.erased_by, erasure.reason) == (
        mei,
        f"admin-{run}",
        "PIPL-2026-0042",
    )
    # A retry is answered with the first erasure; the id cannot erase anyone else.
    assert admin.erase(mei, f"r-{run}").erase_time == erasure.erase_time
    err = rejected(lambda: admin.erase(tao, f"r-{run}"))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    with psycopg.connect(keys) as conn:
        live = conn.execute(
            "SELECT person, count(*) FILTER (WHERE erased_at IS NULL) FROM personal_keys"
            " WHERE person = ANY(%s) GROUP BY person ORDER BY person",
            ([mei, tao],),
        ).fetchall()
    assert live == [(mei, 0), (tao, 1)]

    # Published once, whatever the retries.
    published = wait_until(
        lambda: asyncio.run(erasures_of(stack.infra.kafka.bootstrap, mei)), timeout=60
    )
    assert [(e.person, e.erased_by) for e in published] == [(mei, f"admin-{run}")]
    assert published[0].erase_time.ToDatetime(tzinfo=UTC) == erasure.erase_time.ToDatetime(
        tzinfo=UTC
    )

    # What Mei wrote reads as erased; Tao's ticket is as it was.
    reader = Client(stack.gateway, stack.secret, f"agent-{run}", ("agent",))
    got = wait_until(
        lambda: (
            (t := reader.GetTicket(pb.GetTicketRequest(name=meis.name))).subject == ERASED and t
        ),
        timeout=90,
    )
    assert (got.description, got.contact.email) == (ERASED, ERASED)
    assert reader.GetTicket(pb.GetTicketRequest(name=taos.name)).subject == taos.subject
