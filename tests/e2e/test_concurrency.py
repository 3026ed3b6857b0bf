"""Races on one ticket: exactly one change wins; the others are told why."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from casemesh.platform.identity import mint_token
from casemesh.v1 import tickets_pb2 as pb
from casemesh.v1 import tickets_pb2_grpc as pb_grpc
from tests.conftest import Stack


async def race(stack: Stack, rounds: int) -> list[list[str]]:
    def auth(sub: str, *roles: str) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {mint_token(stack.secret, sub, roles or ('user',))}")]

    requester = f"racer-{uuid.uuid4().hex[:8]}"
    outcomes: list[list[str]] = []
    async with grpc.aio.insecure_channel(stack.gateway) as channel:
        stub = pb_grpc.TicketServiceStub(channel)
        for i in range(rounds):
            t = await stub.CreateTicket(
                pb.CreateTicketRequest(
                    ticket=pb.Ticket(
                        category="other.general",
                        subject=f"race {i}",
                        description="d",
                        locale="en",
                        contact=pb.Contact(email="r@example.com", channels=[pb.CHANNEL_EMAIL]),
                    ),
                    request_id=f"race-{i}",
                ),
                metadata=auth(requester),
            )

            async def attempt(call: Any) -> str:
                try:
                    await call
                    return "OK"
                except grpc.aio.AioRpcError as err:
                    return str(err.code().name)

            results = await asyncio.gather(
                attempt(
                    stub.SolveTicket(
                        pb.SolveTicketRequest(name=t.name, resolution="A"),
                        metadata=auth("agent-a", "agent"),
                    )
                ),
                attempt(
                    stub.SolveTicket(
                        pb.SolveTicketRequest(name=t.name, resolution="B"),
                        metadata=auth("agent-b", "agent"),
                    )
                ),
                attempt(
                    stub.CancelTicket(pb.CancelTicketRequest(name=t.name), metadata=auth(requester))
                ),
            )
            final = await stub.GetTicket(pb.GetTicketRequest(name=t.name), metadata=auth(requester))
            history = await stub.ListTicketEvents(
                pb.ListTicketEventsRequest(name=t.name), metadata=auth(requester)
            )
            outcomes.append(
                [*results, pb.TicketStatus.Name(final.status), *[e.type for e in history.events]]
            )
    return outcomes


@pytest.mark.parametrize("rounds", [8])
def test_two_agents_solving_and_the_requester_cancelling_at_once(stack: Stack, rounds: int) -> None:
    for solve_a, solve_b, cancel, final, *history in asyncio.run(race(stack, rounds)):
        results = [solve_a, solve_b, cancel]
        assert results.count("OK") == 1, results
        assert set(results) - {"OK"} <= {"ABORTED", "FAILED_PRECONDITION"}, results
        winner = results.index("OK")
        assert final == ("TICKET_STATUS_CANCELLED" if winner == 2 else "TICKET_STATUS_SOLVED")
        assert history[0] == "TicketCreated"
        assert len(history) == 2  # exactly one change was stored
        assert history[1] == ("TicketCancelled" if winner == 2 else "TicketSolved")
