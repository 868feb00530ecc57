"""gRPC servicer of ``webook.interactive.v1.InteractiveService``: proto ↔ domain only.

Every method makes exactly one :class:`~services.interactive.service.InteractiveService`
call, which validates the input. Errors are :class:`kit.errors.AppError` subclasses that the
server's error interceptor turns into status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.interactive.domain import Interactive
from services.interactive.service import InteractiveService
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


def interactive_to_proto(intr: Interactive) -> interactive_pb2.Interactive:
    """The wire form of an object's counts and flags."""
    return interactive_pb2.Interactive(
        biz=intr.biz,
        biz_id=intr.biz_id,
        read_cnt=intr.counts.read_cnt,
        like_cnt=intr.counts.like_cnt,
        collect_cnt=intr.counts.collect_cnt,
        liked=intr.liked,
        collected=intr.collected,
    )


class InteractiveServicer(interactive_pb2_grpc.InteractiveServiceServicer):
    """Serves the interactive service's RPCs on top of :class:`InteractiveService`."""

    def __init__(self, service: InteractiveService) -> None:
        self._service = service

    async def IncrReadCnt(
        self, request: interactive_pb2.IncrReadCntRequest, context: Context
    ) -> interactive_pb2.IncrReadCntResponse:
        """Count one read (reads normally arrive as events)."""
        await self._service.incr_read(request.biz, request.biz_id)
        return interactive_pb2.IncrReadCntResponse()

    async def Like(
        self, request: interactive_pb2.LikeRequest, context: Context
    ) -> interactive_pb2.LikeResponse:
        """Like; liking again changes nothing."""
        await self._service.like(request.biz, request.biz_id, request.uid)
        return interactive_pb2.LikeResponse()

    async def CancelLike(
        self, request: interactive_pb2.CancelLikeRequest, context: Context
    ) -> interactive_pb2.CancelLikeResponse:
        """Take a like back; without a like, nothing changes."""
        await self._service.cancel_like(request.biz, request.biz_id, request.uid)
        return interactive_pb2.CancelLikeResponse()

    async def Collect(
        self, request: interactive_pb2.CollectRequest, context: Context
    ) -> interactive_pb2.CollectResponse:
        """Collect into collection ``cid`` (0: default); collecting again moves it there."""
        await self._service.collect(request.biz, request.biz_id, request.uid, request.cid)
        return interactive_pb2.CollectResponse()

    async def CancelCollect(
        self, request: interactive_pb2.CancelCollectRequest, context: Context
    ) -> interactive_pb2.CancelCollectResponse:
        """Take the object out of the user's collections."""
        await self._service.cancel_collect(request.biz, request.biz_id, request.uid)
        return interactive_pb2.CancelCollectResponse()

    async def Get(
        self, request: interactive_pb2.GetRequest, context: Context
    ) -> interactive_pb2.GetResponse:
        """Counts and, for ``uid`` > 0, the user's liked/collected flags."""
        intr = await self._service.get(request.biz, request.biz_id, request.uid)
        return interactive_pb2.GetResponse(intr=interactive_to_proto(intr))

    async def GetByIds(
        self, request: interactive_pb2.GetByIdsRequest, context: Context
    ) -> interactive_pb2.GetByIdsResponse:
        """Counts of up to 100 objects (every requested positive id is in the answer)."""
        found = await self._service.get_by_ids(request.biz, request.biz_ids)
        return interactive_pb2.GetByIdsResponse(
            intrs={biz_id: interactive_to_proto(intr) for biz_id, intr in found.items()}
        )
