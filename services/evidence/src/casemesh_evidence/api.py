"""gRPC entry point of the evidence service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypeAlias

import grpc

from casemesh.platform.callers import vouched
from casemesh.platform.errors import InvalidArgument
from casemesh.platform.fields import fields_of
from casemesh.platform.grpcutil import to_timestamp
from casemesh.v1 import evidence_pb2 as pb
from casemesh.v1 import evidence_pb2_grpc as pb_grpc
from casemesh_evidence.application import DamagedEvidence, EvidenceLocker, EvidenceView

Ctx: TypeAlias = grpc.aio.ServicerContext


def evidence_message(view: EvidenceView) -> pb.Evidence:
    return pb.Evidence(
        name=f"evidence/{view.id}",
        create_time=to_timestamp(view.created_at),
        **fields_of(view, "sha256", "size_bytes", "media_type", "file_name", "owner", "cases"),
    )


class EvidenceServicer(pb_grpc.EvidenceServiceServicer):
    def __init__(self, locker: EvidenceLocker) -> None:
        self.locker = locker

    async def UploadEvidence(
        self, request_iterator: AsyncIterator[pb.UploadEvidenceRequest], context: Ctx
    ) -> pb.Evidence:
        who = vouched().identity
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument.field("metadata", "the first message must carry the metadata")

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument.field("metadata", "only the first message carries it")
                yield message.chunk

        view = await self.locker.receive(
            who, first.metadata.file_name, first.metadata.declared_type, chunks()
        )
        return evidence_message(view)

    async def GetEvidence(self, request: pb.GetEvidenceRequest, context: Ctx) -> pb.Evidence:
        who = vouched().identity
        return evidence_message(await self.locker.describe(who, request.name))

    async def ReadEvidence(
        self, request: pb.ReadEvidenceRequest, context: Ctx
    ) -> AsyncIterator[pb.ReadEvidenceResponse]:
        who = vouched().identity
        try:
            async for chunk in self.locker.read(who, request.name):
                yield pb.ReadEvidenceResponse(chunk=chunk)
        except DamagedEvidence as err:
            # Not OK: the reader must not keep what it read as the file.
            await context.abort(grpc.StatusCode.DATA_LOSS, str(err))

    async def ListEvidence(
        self, request: pb.ListEvidenceRequest, context: Ctx
    ) -> pb.ListEvidenceResponse:
        who = vouched().identity
        views, token = await self.locker.list_own(who, request.page_size, request.page_token)
        return pb.ListEvidenceResponse(
            evidence=[evidence_message(v) for v in views], next_page_token=token
        )
