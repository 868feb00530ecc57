"""Rewarding an article end to end: gateway, reward, article, payment, WeChat Pay, account.

A reader rewards another user's published article through the gateway (``POST
/articles/pub/reward``, the amount in fen as the front end sends it); the reward service
checks the article with the article service and opens a WeChat Pay order through the
payment service, here at the WeChat Pay emulator. The reader "scans and pays" at the
emulator, which posts the signed, encrypted notification to the gateway's
``/pay/callback``; the payment service records it and publishes the status change, the
reward service marks the reward paid (``/reward/detail`` says ``RewardStatusPayed``) and
publishes ``RewardPaid``, and the account service credits the author's share (90 %, the
platform's 10 % rounded down), which the author reads at ``GET /account``. Rewarding one's
own or a withdrawn article, and amounts out of bounds, are refused.

Other tests of the session run in the same stack, so only this test's own users' accounts
are asserted. Every wait is on a condition, with a deadline generous for a loaded machine.
"""

from __future__ import annotations

import functools
from typing import Any, Final

import httpx
import pytest

from kit.cache.tests.outage import eventually
from tests.e2e.conftest import RunningStack, signed_up

pytestmark = pytest.mark.e2e

# How long the payment's events may take to reach the reward and the account on a loaded
# two-core machine; a bound, not a measurement.
DEADLINE_S: Final = 90.0
# Two rewards: one cent (the front end's "打赏一分钱", whose platform share rounds down to
# 0) and 19.99 yuan (platform 199 fen, author 1800).
AMOUNTS_FEN: Final = (1, 1999)
AUTHOR_SHARE_FEN: Final = 1 + 1800


async def data_of(response: httpx.Response) -> Any:
    """The ``data`` of a successful envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0, body
    return body["data"]


async def published(client: httpx.AsyncClient, author: dict[str, str], title: str) -> int:
    """A new article of ``author``, published; its id."""
    draft = {"title": title, "content": "值得打赏的文章"}
    return int(await data_of(await client.post("/articles/publish", json=draft, headers=author)))


async def reward_status(client: httpx.AsyncClient, reader: dict[str, str], rid: int) -> str:
    """What ``/reward/detail`` says of reward ``rid``."""
    status: str = await data_of(
        await client.post("/reward/detail", json={"rid": rid}, headers=reader)
    )
    return status


async def is_paid(client: httpx.AsyncClient, reader: dict[str, str], rid: int) -> bool:
    """Whether ``/reward/detail`` says reward ``rid`` is paid."""
    return await reward_status(client, reader, rid) == "RewardStatusPayed"


async def balance(client: httpx.AsyncClient, user: dict[str, str]) -> int:
    """The user's balance in fen."""
    account = await data_of(await client.get("/account", headers=user))
    return int(account["balance"])


async def test_a_reader_rewards_an_author_and_the_author_is_credited_its_share(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    author = await signed_up(client, "reward-author")
    reader = await signed_up(client, "reward-reader")
    aid = await published(client, author, "打赏我")

    rewards: list[int] = []
    async with httpx.AsyncClient(base_url=stack.wechatpay_base, timeout=10) as wechatpay:
        for amount in AMOUNTS_FEN:
            code = await data_of(
                await client.post(
                    "/articles/pub/reward", json={"id": aid, "amt": amount}, headers=reader
                )
            )
            rid = int(code["rid"])
            assert code["codeURL"].startswith("weixin://wxpay/bizpayurl?pr=")
            assert await reward_status(client, reader, rid) == "RewardStatusInit"
            # The payer scans the code and pays; WeChat Pay notifies the gateway.
            paid = await wechatpay.post("/emulator/pay", json={"out_trade_no": f"reward-{rid}"})
            assert paid.status_code == 200, paid.text
            assert paid.json()["amount"]["total"] == amount
            rewards.append(rid)

        for rid in rewards:
            await eventually(
                functools.partial(is_paid, client, reader, rid), f"reward {rid} paid", DEADLINE_S
            )
            delivery = (await wechatpay.get(f"/emulator/notifications/reward-{rid}")).json()
            assert delivery["delivered"] is True, delivery
            assert delivery["statuses"][-1] == 204

    async def credited() -> bool:
        return await balance(client, author) == AUTHOR_SHARE_FEN

    await eventually(credited, "the author's share credited", DEADLINE_S)
    account = await data_of(await client.get("/account", headers=author))
    shares = sorted((row["bizKey"], row["amount"], row["type"]) for row in account["recent"])
    assert shares == sorted(
        [(f"reward:{rewards[0]}", 1, "reward"), (f"reward:{rewards[1]}", 1800, "reward")]
    )
    # Never the rewarder; and someone else's reward is not found, not revealed.
    assert await balance(client, reader) == 0
    other = await client.post("/reward/detail", json={"rid": rewards[0]}, headers=author)
    assert other.json()["code"] == 4


@pytest.mark.parametrize(
    ("amount", "problem"),
    [(0, "invalid amt"), (-1, "invalid amt"), (2**63, "invalid amt"), (100_001, None)],
)
async def test_amounts_out_of_bounds_are_refused(
    stack: RunningStack, client: httpx.AsyncClient, amount: int, problem: str | None
) -> None:
    author = await signed_up(client, "reward-bounds-author")
    reader = await signed_up(client, "reward-bounds-reader")
    aid = await published(client, author, "bounds")

    answer = await client.post(
        "/articles/pub/reward", json={"id": aid, "amt": amount}, headers=reader
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["code"] == 4, body
    assert body["data"] is None
    if problem is not None:  # refused at the edge; above 100000 fen, by the reward service
        assert body["msg"] == problem


async def test_ones_own_and_a_withdrawn_article_cannot_be_rewarded(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    author = await signed_up(client, "reward-self")
    reader = await signed_up(client, "reward-late")
    aid = await published(client, author, "mine")

    own = (
        await client.post("/articles/pub/reward", json={"id": aid, "amt": 1}, headers=author)
    ).json()
    assert own["code"] == 4, own

    await data_of(await client.post("/articles/withdraw", json={"id": aid}, headers=author))
    withdrawn = (
        await client.post("/articles/pub/reward", json={"id": aid, "amt": 1}, headers=reader)
    ).json()
    assert withdrawn["code"] == 4, withdrawn
    unknown = (
        await client.post("/articles/pub/reward", json={"id": 2**62, "amt": 1}, headers=reader)
    ).json()
    assert unknown["code"] == 4, unknown
    assert await balance(client, author) == 0


async def test_a_forged_notification_is_refused_so_wechat_pay_would_retry(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    forged = await client.post(
        "/pay/callback",
        content=b'{"id": "forged", "resource": {}}',
        headers={
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": "1",
            "Wechatpay-Nonce": "n",
            "Wechatpay-Signature": "c2lnbmF0dXJl",
            "Wechatpay-Serial": "0",
        },
    )
    assert forged.status_code == 401
    assert forged.json()["code"] == "FAIL"
