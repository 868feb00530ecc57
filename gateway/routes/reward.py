"""Rewards and the account: ``POST /articles/pub/reward``, ``POST /reward/detail`` and
``GET /account``, for logged-in users.

Rewarding asks the reward service (which checks that the article is published and not the
caller's own, and opens a WeChat Pay order through the payment service) for a code URL the
front end shows as a QR code; the front end then polls ``/reward/detail`` until it reads
``RewardStatusPayed``. Once paid, the author's share is credited to the author's account
(docs/reward.md, docs/account.md), which ``GET /account`` shows. Refusals of the services
(an amount out of bounds, one's own or an unpublished article, someone else's reward) are
code 4 with their message; unavailability is code 5 (:mod:`gateway.errors`).
"""

from __future__ import annotations

import logging
from typing import Final

from fastapi import APIRouter

from gateway.deps import LOGGED_IN, NOT_LOGGED_IN, PrincipalDep, RuntimeDep
from gateway.envelope import Result
from gateway.presenters import format_time
from gateway.schemas.reward import (
    UNKNOWN_STATUS,
    AccountActivityView,
    AccountView,
    ActivityText,
    RewardArticleRequest,
    RewardCodeView,
    RewardDetailRequest,
    RewardStatusText,
)
from webook.account.v1 import account_pb2
from webook.reward.v1 import reward_pb2

logger = logging.getLogger(__name__)

BIZ: Final = "article"
_STATUS: Final[dict[int, RewardStatusText]] = {
    reward_pb2.REWARD_STATUS_INIT: "RewardStatusInit",
    reward_pb2.REWARD_STATUS_PAYED: "RewardStatusPayed",
    reward_pb2.REWARD_STATUS_FAILED: "RewardStatusFailed",
}
_ACTIVITY: Final[dict[int, ActivityText]] = {
    account_pb2.ACTIVITY_TYPE_REWARD: "reward",
    account_pb2.ACTIVITY_TYPE_REWARD_PLATFORM_SHARE: "reward_platform_share",
}

router = APIRouter(tags=["reward"], dependencies=LOGGED_IN, responses=NOT_LOGGED_IN)


@router.post(
    "/articles/pub/reward",
    summary="Reward an article's author",
    description=(
        "Opens a WeChat Pay order of `amt` fen for rewarding the author of published article "
        "`id`; answers the code URL to show as a QR code and the reward id to poll with "
        "/reward/detail. Rewarding one's own or an unpublished article, or an amount out of "
        "the service's bounds (1 to 100000 fen by default), answers code 4."
    ),
)
async def reward_article(
    body: RewardArticleRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[RewardCodeView]:
    """The reward's code URL and id."""
    reply = await runtime.stubs.reward.PreReward(
        reward_pb2.PreRewardRequest(
            biz=BIZ, biz_id=body.id, uid=principal.uid, amount_fen=body.amt
        ),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=RewardCodeView(codeURL=reply.code_url, rid=reply.rid))


@router.post(
    "/reward/detail",
    summary="A reward's status",
    description=(
        '`data` is "RewardStatusInit" until paid, then "RewardStatusPayed" (or '
        '"RewardStatusFailed"). Only the rewarder may read a reward: any other id answers '
        "code 4."
    ),
)
async def reward_detail(
    body: RewardDetailRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Result[RewardStatusText]:
    """The status of one of the caller's rewards."""
    reply = await runtime.stubs.reward.GetReward(
        reward_pb2.GetRewardRequest(rid=body.rid, uid=principal.uid),
        timeout=runtime.grpc_timeout,
    )
    status = _STATUS.get(reply.status)
    if status is None:
        logger.warning("reward status unknown", extra={"rid": body.rid, "status": reply.status})
        return Result(data=UNKNOWN_STATUS)
    return Result(data=status)


@router.get(
    "/account",
    summary="The caller's balance",
    description="The balance in fen (rewards received, after the platform's share) and the "
    "newest ledger rows.",
)
async def account(principal: PrincipalDep, runtime: RuntimeDep) -> Result[AccountView]:
    """The caller's account."""
    reply = await runtime.stubs.account.GetAccount(
        account_pb2.GetAccountRequest(uid=principal.uid), timeout=runtime.grpc_timeout
    )
    zone = runtime.settings.zone
    return Result(
        data=AccountView(
            balance=reply.balance_fen,
            recent=[
                AccountActivityView(
                    bizKey=row.biz_key,
                    amount=row.amount_fen,
                    type=_ACTIVITY.get(row.type, "unknown"),
                    time=format_time(row.at_ms, zone),
                )
                for row in reply.recent
            ],
        )
    )
