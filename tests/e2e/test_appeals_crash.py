"""kill -9 of the appeals relay and of the notifier while copyright cases are
filed: every stored appeal event reaches casemesh.appeals.v1, and every filer
is told once."""

from __future__ import annotations

import time
import uuid

from casemesh import topics
from casemesh.v1 import appeals_pb2 as apb
from casemesh.v1 import appeals_pb2_grpc as apb_grpc
from casemesh.v1 import tickets_pb2 as pb
from tests.conftest import Stack
from tests.e2e.crash import assert_each_told_once, assert_every_event_relayed
from tests.support import Client


def test_kill_9_of_the_appeals_relay_and_notifier_loses_and_repeats_nothing(
    stack: Stack,
) -> None:
    sup = stack.supervisor
    run = uuid.uuid4().hex[:6]
    client = Client(stack.gateway, stack.secret, f"filer-{run}")
    stub = apb_grpc.AppealServiceStub(client._channel)
    plan = {
        5: ("kill", "appeals-relay"),
        9: ("restart", "appeals-relay"),
        13: ("kill", "notifier"),
        17: ("restart", "notifier"),
    }
    emails = []
    for n in range(22):
        if n in plan:
            action, name = plan[n]
            getattr(sup, action)(name)
        email = f"filer-{run}-{n}@example.com"
        # An incomplete notice: accepted, waiting for its missing elements.
        stub.FileAppeal(
            apb.FileAppealRequest(
                request_id=f"n{n}",
                appeal=apb.Appeal(
                    kind=apb.APPEAL_KIND_TAKEDOWN_NOTICE,
                    filer=apb.Party(
                        legal_name=f"Filer {n}",
                        locale="en",
                        contact=pb.Contact(email=email, channels=[pb.CHANNEL_EMAIL]),
                    ),
                    notice=apb.TakedownNotice(infringing_items=[f"content:{n}"]),
                ),
            ),
            metadata=client.metadata,
            timeout=15,
        )
        emails.append(email)
        time.sleep(0.05)

    assert_every_event_relayed(stack, stack.appeals_dsn, "appeals_events", topics.APPEALS)
    assert_each_told_once(stack, emails, "appeal.info_requested")
