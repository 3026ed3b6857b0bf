"""gRPC entry point of the privacy service: erasures (admins only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc
from psycopg_pool import ConnectionPool

from casemesh.platform.callers import vouched
from casemesh.platform.clock import Clock
from casemesh.platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    PermissionDenied,
    Violations,
)
from casemesh.platform.grpcutil import to_timestamp
from casemesh.platform.identity import MAX_SUBJECT, subject_fault
from casemesh.platform.logging import get_logger
from casemesh.platform.masking import holds_contact
from casemesh.platform.personal.erasures import Erasure, RequestReused, erase_person
from casemesh.rules import tickets as rules
from casemesh.v1 import privacy_pb2 as pb
from casemesh.v1 import privacy_pb2_grpc as pb_grpc

log = get_logger(__name__)

Ctx: TypeAlias = grpc.aio.ServicerContext

LIMITS = {"person": MAX_SUBJECT, "reason": 500}


def erasure_message(erasure: Erasure) -> pb.Erasure:
    return pb.Erasure(
        person=erasure.person,
        erased_by=erasure.erased_by,
        reason=erasure.reason,
        erase_time=to_timestamp(erasure.erase_time),
        erased_keys=erasure.erased_keys,
    )


CONTACT_IN_REASON = (
    "must not hold an e-mail address or phone number (nor 8 digits or more"
    " standing alone, as a number may): it is kept and published after the"
    " erasure (give the request's reference with letters, PIPL-2026-0042)"
)


class PrivacyServicer(pb_grpc.PrivacyServiceServicer):
    def __init__(self, keys: ConnectionPool[Any], clock: Clock) -> None:
        self.keys = keys
        self.clock = clock

    async def ErasePerson(self, request: pb.ErasePersonRequest, context: Ctx) -> pb.Erasure:
        who = vouched().identity
        if not who.is_admin:
            raise PermissionDenied("erasing a person's data is for admins")
        v = Violations()
        person = rules.text(v, "person", request.person, limit=LIMITS["person"], single_line=True)
        # No token could carry such an id (a case key's owner, say: destroying
        # its "keys" would erase that case): no person to erase. (Asked only
        # of an id the text rules took, so `person` is named once.)
        fault = subject_fault(person) if person and not v else None
        if fault is not None:
            v.add("person", fault)
        reason = rules.text(v, "reason", request.reason, limit=LIMITS["reason"], single_line=True)
        if reason and holds_contact(reason):
            # Kept and published for good, unsealed: the person's address
            # would outlive the erasure that recorded it.
            v.add("reason", CONTACT_IN_REASON)
        if not rules.REQUEST_ID.match(request.request_id):
            v.add("request_id", "must be 1–64 characters of letters, digits, '.', '_', ':' or '-'")
        v.raise_if_any()
        try:
            erasure = await asyncio.to_thread(
                erase_person,
                self.keys,
                request_id=request.request_id,
                person=person,
                erased_by=who.subject,
                reason=reason,
                # Read once the person is locked (`erase_person`).
                now=self.clock.now,
            )
        except RequestReused as exc:
            raise AlreadyExists(str(exc), reason="REQUEST_ID_REUSED") from None
        if erasure.new:
            log.info("person.erased", person=person, erased_by=who.subject)
        return erasure_message(erasure)

    async def ExportPerson(
        self, request: pb.ExportPersonRequest, context: Ctx
    ) -> AsyncIterator[pb.ExportPersonResponse]:
        # An export gathers every case service's view of the person: the
        # gateway composes it, as it composes all work that spans services.
        raise FailedPrecondition(
            "ExportPerson is served by the gateway, which gathers it from the case services"
        )
        yield pb.ExportPersonResponse()  # an async generator, as the stub expects
