"""Rewards, the account and WeChat Pay's callback through the whole gateway over fakes.

``POST /articles/pub/reward``, ``POST /reward/detail``, ``GET /account`` and
``POST /pay/callback`` over in-process fakes of the reward, account and payment stubs that
record what the gateway asked and refuse as the real services do (gRPC errors with their
kinds, reasons and messages). The real services behind the real gateway, paying through
the WeChat Pay emulator, are covered by ``tests/e2e/test_reward.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from devstack.infra import free_port
from gateway.app import create_app
from gateway.tests.conftest import USER_AGENT, bearer, client_for, fake_stubs, make_settings
from gateway.tests.conftest import rpc_error as as_rpc_error
from kit.errors import AppError, InvalidArgument, NotFound, Unauthenticated, Unavailable
from webook.account.v1 import account_pb2
from webook.payment.v1 import payment_pb2
from webook.reward.v1 import reward_pb2

pytestmark = pytest.mark.integration

# 2026-01-02 03:04:05 UTC, shown in the default zone (Asia/Shanghai, UTC+8).
AT_MS = 1_767_323_045_000
REWARD = "reward.webook"
PAYMENT = "payment.webook"


@dataclass
class FakeReward:
    """The reward service's stub: rewards by id, its refusals; ``refusal`` fails every call."""

    pre_rewards: list[reward_pb2.PreRewardRequest] = field(default_factory=list)
    lookups: list[reward_pb2.GetRewardRequest] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    refusal: AppError | None = None

    async def PreReward(
        self, request: reward_pb2.PreRewardRequest, **_: Any
    ) -> reward_pb2.PreRewardResponse:
        """A new reward, INIT, with its code URL."""
        self.pre_rewards.append(request)
        if self.refusal is not None:
            raise as_rpc_error(self.refusal)
        rid = len(self.pre_rewards) + 40
        self.statuses[rid] = reward_pb2.REWARD_STATUS_INIT
        return reward_pb2.PreRewardResponse(code_url=f"weixin://wxpay/bizpayurl?pr={rid}", rid=rid)

    async def GetReward(
        self, request: reward_pb2.GetRewardRequest, **_: Any
    ) -> reward_pb2.GetRewardResponse:
        """The reward's status; NOT_FOUND for an unknown one."""
        self.lookups.append(request)
        if self.refusal is not None:
            raise as_rpc_error(self.refusal)
        if request.rid not in self.statuses:
            raise as_rpc_error(NotFound("REWARD_NOT_FOUND", "reward not found", domain=REWARD))
        return reward_pb2.GetRewardResponse(
            status=self.statuses[request.rid],  # type: ignore[arg-type]
            amount_fen=1,
            biz="article",
            biz_id=7,
        )


@dataclass
class FakePayment:
    """The payment service's stub: records notifications; ``refusal`` refuses them."""

    notifications: list[payment_pb2.HandleNotificationRequest] = field(default_factory=list)
    refusal: AppError | None = None

    async def HandleNotification(
        self, request: payment_pb2.HandleNotificationRequest, **_: Any
    ) -> payment_pb2.HandleNotificationResponse:
        """Recorded, or the refusal."""
        self.notifications.append(request)
        if self.refusal is not None:
            raise as_rpc_error(self.refusal)
        return payment_pb2.HandleNotificationResponse()


@dataclass
class FakeAccount:
    """The account service's stub: user 2 holds an author's share of 90 fen."""

    asked: list[int] = field(default_factory=list)

    async def GetAccount(
        self, request: account_pb2.GetAccountRequest, **_: Any
    ) -> account_pb2.GetAccountResponse:
        """The balance and ledger of user 2; nothing for anyone else."""
        self.asked.append(request.uid)
        if request.uid != 2:
            return account_pb2.GetAccountResponse()
        row = account_pb2.Activity(
            biz_key="reward:41", amount_fen=90, type=account_pb2.ACTIVITY_TYPE_REWARD, at_ms=AT_MS
        )
        return account_pb2.GetAccountResponse(balance_fen=90, recent=[row])


@dataclass
class Fakes:
    """The fakes behind one gateway."""

    reward: FakeReward = field(default_factory=FakeReward)
    payment: FakePayment = field(default_factory=FakePayment)
    account: FakeAccount = field(default_factory=FakeAccount)


@pytest.fixture
def fakes() -> Fakes:
    """Fresh fakes."""
    return Fakes()


@pytest.fixture
async def app(redis_url: str, redis_client: aioredis.Redis, fakes: Fakes) -> AsyncIterator[FastAPI]:
    """The gateway over the fakes."""
    stubs = fake_stubs(reward=fakes.reward, payment=fakes.payment, account=fakes.account)
    application = create_app(make_settings(redis_url, free_port()), stubs=stubs)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the gateway."""
    async with client_for(app) as client:
        yield client


def as_user(app: FastAPI, uid: int) -> dict[str, str]:
    """Headers of a request made by logged-in ``uid``."""
    return bearer(app.state.runtime.tokens.issue(uid, USER_AGENT).access)


async def test_a_reward_answers_the_code_url_and_the_reward_id(
    app: FastAPI, http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await http.post(
        "/articles/pub/reward", json={"id": 7, "amt": 1}, headers=as_user(app, 3)
    )

    assert response.status_code == 200
    assert response.json() == {
        "code": 0,
        "msg": "OK",
        "data": {"codeURL": "weixin://wxpay/bizpayurl?pr=41", "rid": 41},
    }
    [asked] = fakes.reward.pre_rewards
    assert (asked.biz, asked.biz_id, asked.uid, asked.amount_fen) == ("article", 7, 3, 1)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"id": 7, "amt": 0}, "invalid amt"),
        ({"id": 7, "amt": -5}, "invalid amt"),
        ({"id": 7, "amt": 2**63}, "invalid amt"),
        ({"id": 7, "amt": "1"}, "amt must be an integer"),
        ({"id": 7, "amt": 1.5}, "amt must be an integer"),
        ({"id": 7, "amt": True}, "amt must be an integer"),
        ({"id": 0, "amt": 1}, "invalid id"),
        ({"amt": 1}, "missing field: id"),
        ({"id": 7}, "missing field: amt"),
    ],
)
async def test_bad_rewards_are_refused_at_the_edge(
    app: FastAPI, http: httpx.AsyncClient, fakes: Fakes, body: dict[str, Any], problem: str
) -> None:
    response = await http.post("/articles/pub/reward", json=body, headers=as_user(app, 3))

    assert response.json() == {"code": 4, "msg": problem, "data": None}
    assert fakes.reward.pre_rewards == []


@pytest.mark.parametrize(
    ("refusal", "answer"),
    [
        (
            InvalidArgument("REWARD_SELF", "you cannot reward your own article", domain=REWARD),
            {"code": 4, "msg": "you cannot reward your own article", "data": None},
        ),
        (
            InvalidArgument("REWARD_INVALID_AMOUNT", "amount must be 1..100000 fen", domain=REWARD),
            {"code": 4, "msg": "amount must be 1..100000 fen", "data": None},
        ),
        (
            NotFound("REWARD_TARGET_NOT_FOUND", "article not found", domain=REWARD),
            {"code": 4, "msg": "article not found", "data": None},
        ),
        (
            Unavailable("REWARD_UNAVAILABLE", "payment is down", domain=REWARD),
            {"code": 5, "msg": "system error", "data": None},
        ),
    ],
)
async def test_the_reward_services_refusals(
    app: FastAPI,
    http: httpx.AsyncClient,
    fakes: Fakes,
    refusal: AppError,
    answer: dict[str, Any],
) -> None:
    fakes.reward.refusal = refusal
    response = await http.post(
        "/articles/pub/reward", json={"id": 7, "amt": 1}, headers=as_user(app, 3)
    )
    assert response.status_code == 200
    assert response.json() == answer


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/articles/pub/reward", {"id": 7, "amt": 1}),
        ("POST", "/reward/detail", {"rid": 41}),
        ("GET", "/account", None),
    ],
)
async def test_rewards_and_the_account_need_a_login(
    http: httpx.AsyncClient, fakes: Fakes, method: str, path: str, body: Any
) -> None:
    response = await http.request(method, path, json=body)
    assert response.status_code == 401
    assert fakes.reward.pre_rewards == fakes.reward.lookups == []
    assert fakes.account.asked == []


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (reward_pb2.REWARD_STATUS_INIT, "RewardStatusInit"),
        (reward_pb2.REWARD_STATUS_PAYED, "RewardStatusPayed"),
        (reward_pb2.REWARD_STATUS_FAILED, "RewardStatusFailed"),
        (reward_pb2.REWARD_STATUS_UNSPECIFIED, "RewardStatusUnknown"),
    ],
)
async def test_the_detail_is_the_front_ends_status_text(
    app: FastAPI, http: httpx.AsyncClient, fakes: Fakes, status: int, text: str
) -> None:
    fakes.reward.statuses[41] = status
    response = await http.post("/reward/detail", json={"rid": 41}, headers=as_user(app, 3))
    assert response.json() == {"code": 0, "msg": "OK", "data": text}
    [asked] = fakes.reward.lookups
    assert (asked.rid, asked.uid) == (41, 3)


async def test_someone_elses_or_an_unknown_reward_is_not_found(
    app: FastAPI, http: httpx.AsyncClient, fakes: Fakes
) -> None:
    response = await http.post("/reward/detail", json={"rid": 99}, headers=as_user(app, 3))
    assert response.json() == {"code": 4, "msg": "reward not found", "data": None}
    bad = await http.post("/reward/detail", json={"rid": -1}, headers=as_user(app, 3))
    assert bad.json()["code"] == 4
    assert [r.rid for r in fakes.reward.lookups] == [99]


async def test_the_account_shows_the_callers_balance_in_fen(
    app: FastAPI, http: httpx.AsyncClient, fakes: Fakes
) -> None:
    author = (await http.get("/account", headers=as_user(app, 2))).json()
    assert author == {
        "code": 0,
        "msg": "OK",
        "data": {
            "balance": 90,
            "recent": [
                {
                    "bizKey": "reward:41",
                    "amount": 90,
                    "type": "reward",
                    "time": "2026-01-02 11:04:05",
                }
            ],
        },
    }
    nobody = (await http.get("/account", headers=as_user(app, 5))).json()
    assert nobody["data"] == {"balance": 0, "recent": []}
    assert fakes.account.asked == [2, 5]


async def test_the_callback_forwards_the_raw_notification_and_answers_204(
    http: httpx.AsyncClient, fakes: Fakes
) -> None:
    body = b'{"id": "n-1", "resource": {"ciphertext": "..."}}'
    headers = {
        "Content-Type": "application/json",
        "Wechatpay-Timestamp": "1767323045",
        "Wechatpay-Nonce": "abc",
        "Wechatpay-Signature": "c2ln",
        "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A72",
        "Cookie": "ssid=secret",
        "Authorization": "Bearer someone",
    }

    response = await http.post("/pay/callback", content=body, headers=headers)

    assert response.status_code == 204
    assert response.content == b""
    [forwarded] = fakes.payment.notifications
    assert forwarded.body == body
    assert dict(forwarded.headers) == {
        "content-type": "application/json",
        "wechatpay-timestamp": "1767323045",
        "wechatpay-nonce": "abc",
        "wechatpay-signature": "c2ln",
        "wechatpay-serial": "5157F09EFDC096DE15EBE81A47057A72",
    }


@pytest.mark.parametrize(
    ("refusal", "status", "message"),
    [
        (
            Unauthenticated("PAYMENT_BAD_SIGNATURE", "does not verify", domain=PAYMENT),
            401,
            "does not verify",
        ),
        (
            InvalidArgument(
                "PAYMENT_MALFORMED_NOTIFICATION", "resource does not decrypt", domain=PAYMENT
            ),
            400,
            "resource does not decrypt",
        ),
        # A system error's cause stays in the gateway's log.
        (
            Unavailable("PAYMENT_CONCURRENT_CONFLICT", "rows collided", domain=PAYMENT),
            500,
            "not recorded, retry later",
        ),
    ],
)
async def test_a_refused_notification_answers_fail_so_wechat_pay_retries(
    http: httpx.AsyncClient, fakes: Fakes, refusal: AppError, status: int, message: str
) -> None:
    fakes.payment.refusal = refusal
    response = await http.post("/pay/callback", content=b"{}")
    assert response.status_code == status
    assert response.json() == {"code": "FAIL", "message": message}
    assert len(fakes.payment.notifications) == 1


async def test_the_routes_are_documented_in_openapi(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    reward = paths["/articles/pub/reward"]["post"]
    assert reward["security"]
    assert reward["tags"] == ["reward"]
    assert "401" in reward["responses"]
    assert paths["/reward/detail"]["post"]["security"]
    assert paths["/account"]["get"]["security"]
    callback = paths["/pay/callback"]["post"]
    assert "security" not in callback
    assert {"204", "400", "401", "500"} <= set(callback["responses"])
    assert "422" not in callback["responses"]
