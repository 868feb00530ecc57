"""gRPC servicer of ``webook.reward.v1.RewardService``: proto ↔ domain translation only.

Every method makes exactly one :class:`~services.reward.service.RewardService` call;
refusals are :class:`kit.errors.AppError` subclasses that the server's error interceptor
turns into status codes with a ``google.rpc.ErrorInfo`` reason.
"""

from __future__ import annotations

from typing import Any

import grpc

from services.reward.service import RewardService
from webook.reward.v1 import reward_pb2, reward_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class RewardServicer(reward_pb2_grpc.RewardServiceServicer):
    """Serves the reward service's RPCs on top of :class:`RewardService`."""

    def __init__(self, service: RewardService) -> None:
        self._service = service

    async def PreReward(
        self, request: reward_pb2.PreRewardRequest, context: Context
    ) -> reward_pb2.PreRewardResponse:
        """A new reward with its payment opened."""
        reward = await self._service.pre_reward(
            request.biz, request.biz_id, request.uid, request.amount_fen
        )
        return reward_pb2.PreRewardResponse(code_url=reward.code_url, rid=reward.id)

    async def GetReward(
        self, request: reward_pb2.GetRewardRequest, context: Context
    ) -> reward_pb2.GetRewardResponse:
        """The rewarder's view of a reward."""
        reward = await self._service.get_reward(request.rid, request.uid)
        return reward_pb2.GetRewardResponse(
            status=reward_pb2.RewardStatus.ValueType(int(reward.status)),
            amount_fen=reward.amount_fen,
            biz=reward.biz,
            biz_id=reward.biz_id,
        )
