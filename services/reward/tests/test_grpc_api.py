"""gRPC-level tests of the reward service: the real process wiring (``build_runner``) on
SQLite and MariaDB, the real article service as a process, the session's real broker, and a
real ``grpc.aio`` server implementing ``PaymentService`` in memory (:class:`StandInPayments`).

Covered: PreReward → GetReward INIT → the payment's events (duplicated, stale) on the real
topic → PAYED, with ``RewardPaid`` recorded once and published by the relay; every refusal
over the wire (withdrawn, own, unknown article, zero, negative and huge amounts, another
user's reward); the repair of a missed event through ``GetPayment``; payment refusals.

The payment topic is shared by the session: amounts and rewarders are random per test, so
that events of other tests (which the new consumer group also reads) match no reward here.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from sqlalchemy import func, select

from clients.tests.articles import AUTHOR, ArticleAuthor
from kit.config import Mode
from kit.events import (
    BatchConsumer,
    ConsumedEvent,
    ConsumerConfig,
    EventProducer,
    ProducerConfig,
    TopicHandler,
    TopicSpec,
    protobuf_decoder,
)
from kit.grpcx.server import ServiceRunner
from kit.registry.tests.helpers import eventually
from kit.sql import create_engine
from kit.tests.rpc import refusal_of
from services.reward.__main__ import build_runner
from services.reward.errors import DOMAIN, Reason
from services.reward.events import PAYMENT_STATUS_TOPIC, REWARD_PAID
from services.reward.repository.dao import RewardOutboxRow
from services.reward.settings import RewardSettings
from webook.payment.v1 import payment_pb2, payment_pb2_grpc
from webook.reward.v1 import reward_pb2
from webook.reward.v1.reward_pb2_grpc import RewardServiceStub

if TYPE_CHECKING:
    from webook.reward.v1.reward_pb2_grpc import RewardServiceAsyncStub

pytestmark = pytest.mark.integration

Context = grpc.aio.ServicerContext[Any, Any]
ServeReward = Callable[..., Awaitable["RewardServiceAsyncStub"]]
DEADLINE_S = 60.0


class StandInPayments(payment_pb2_grpc.PaymentServiceServicer):
    """``Prepay`` and ``GetPayment`` over orders in memory, idempotent on the business key."""

    def __init__(self) -> None:
        self.orders: dict[str, payment_pb2.Payment] = {}
        self.refuse_prepay = False

    async def Prepay(
        self, request: payment_pb2.PrepayRequest, context: Context
    ) -> payment_pb2.PrepayResponse:
        """The order of ``biz_trade_no``, created on first sight."""
        if self.refuse_prepay:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "provider down (stand-in)")
        order = self.orders.setdefault(
            request.biz_trade_no,
            payment_pb2.Payment(
                biz_trade_no=request.biz_trade_no,
                amount_fen=request.amount_fen,
                status=payment_pb2.PAYMENT_STATUS_INIT,
            ),
        )
        if order.amount_fen != request.amount_fen:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "amount mismatch")
        return payment_pb2.PrepayResponse(
            code_url=f"weixin://wxpay/bizpayurl?pr={request.biz_trade_no}", status=order.status
        )

    async def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: Context
    ) -> payment_pb2.GetPaymentResponse:
        """The order, or NOT_FOUND."""
        order = self.orders.get(request.biz_trade_no)
        if order is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
        return payment_pb2.GetPaymentResponse(payment=order)

    async def HandleNotification(
        self, request: payment_pb2.HandleNotificationRequest, context: Context
    ) -> payment_pb2.HandleNotificationResponse:
        """Not the reward service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the stand-in")

    async def SumSucceeded(
        self, request: payment_pb2.SumSucceededRequest, context: Context
    ) -> payment_pb2.SumSucceededResponse:
        """Not the reward service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the stand-in")

    async def RunReconciliation(
        self, request: payment_pb2.RunReconciliationRequest, context: Context
    ) -> payment_pb2.RunReconciliationResponse:
        """Not the reward service's to call: refused."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the stand-in")


@pytest.fixture
async def payments() -> AsyncIterator[tuple[StandInPayments, str]]:
    """The stand-in payment service and its address."""
    stand_in = StandInPayments()
    server = grpc.aio.server()
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(stand_in, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield stand_in, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def serve_reward(
    database_url: str,
    kafka_bootstrap: str,
    article_address: str,
    payments: tuple[StandInPayments, str],
) -> AsyncIterator[ServeReward]:
    """``await serve_reward(**settings)``: a client of a new reward process."""
    runners: list[ServiceRunner] = []
    channels: list[grpc.aio.Channel] = []

    async def serve(**overrides: Any) -> RewardServiceAsyncStub:
        settings = RewardSettings(
            **{
                "mode": Mode.TEST,
                "database_url": database_url,
                "grpc_port": 0,
                "metrics_port": -1,
                "shutdown_grace": 1.0,
                "kafka_bootstrap": kafka_bootstrap,
                "peers": {"article": article_address, "payment": payments[1]},
                "payment_consumer_group": f"reward-{uuid.uuid4().hex[:10]}",
                "payment_batch_wait_seconds": 0.1,
                "kafka_session_timeout_ms": 2000,
                "kafka_heartbeat_interval_ms": 500,
                "outbox_poll_interval_seconds": 0.1,
                **overrides,
            }
        )
        runner = build_runner(settings)
        port = await runner.start()
        runners.append(runner)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return RewardServiceStub(channel)

    try:
        yield serve
    finally:
        for channel in channels:
            await channel.close(None)
        for runner in reversed(runners):
            await runner.stop()


refusal = partial(refusal_of, domain=DOMAIN)


def pre(article_id: int, uid: int, amount_fen: int) -> reward_pb2.PreRewardRequest:
    """A PreReward of an article."""
    return reward_pb2.PreRewardRequest(
        biz="article", biz_id=article_id, uid=uid, amount_fen=amount_fen
    )


async def status(stub: RewardServiceAsyncStub, rid: int, uid: int) -> int:
    """The reward's status as its rewarder sees it."""
    reply = await stub.GetReward(reward_pb2.GetRewardRequest(rid=rid, uid=uid))
    return int(reply.status)


async def outbox_rows(database_url: str, rid: int) -> int:
    """``RewardPaid`` rows of reward ``rid`` in the outbox."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(RewardOutboxRow)
                        .where(RewardOutboxRow.event_key == str(rid))
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


class PaidListener:
    """Collects ``RewardPaid`` records from the real topic (its own group, from the start)."""

    def __init__(self, bootstrap: str) -> None:
        self.seen: list[reward_pb2.RewardPaid] = []
        self.consumer = BatchConsumer(
            ConsumerConfig(
                bootstrap=bootstrap,
                group_id=f"paid-{uuid.uuid4().hex[:10]}",
                max_wait_s=0.2,
                session_timeout_ms=2000,
                heartbeat_interval_ms=500,
                retry_backoff_s=0.05,
                stop_timeout_s=5.0,
            ),
            {REWARD_PAID.name: TopicHandler(protobuf_decoder(reward_pb2.RewardPaid), self._seen)},
        )

    async def _seen(self, batch: Sequence[ConsumedEvent[reward_pb2.RewardPaid]]) -> None:
        self.seen.extend(event.payload for event in batch)


async def test_a_reward_is_paid_through_the_payment_events(
    serve_reward: ServeReward,
    author: ArticleAuthor,
    payments: tuple[StandInPayments, str],
    kafka_bootstrap: str,
    database_url: str,
) -> None:
    rng = random.Random()
    reader, amount = rng.randrange(10**6, 10**9), rng.randrange(1, 100_001)
    stub = await serve_reward(repair_after_seconds=3600)
    article_id = await author.publish()

    opened = await stub.PreReward(pre(article_id, reader, amount))
    trade_no = f"reward-{opened.rid}"
    assert opened.rid > 0
    assert opened.code_url == f"weixin://wxpay/bizpayurl?pr={trade_no}"
    assert payments[0].orders[trade_no].amount_fen == amount
    reply = await stub.GetReward(reward_pb2.GetRewardRequest(rid=opened.rid, uid=reader))
    assert (reply.status, reply.amount_fen, reply.biz, reply.biz_id) == (
        reward_pb2.REWARD_STATUS_INIT,
        amount,
        "article",
        article_id,
    )

    listener = PaidListener(kafka_bootstrap)
    listener.consumer.start()
    producer = EventProducer(
        ProducerConfig(bootstrap=kafka_bootstrap, topics=(TopicSpec(PAYMENT_STATUS_TOPIC, 3),))
    )
    producer.start()
    try:
        for state in (
            payment_pb2.PAYMENT_STATUS_SUCCESS,
            payment_pb2.PAYMENT_STATUS_SUCCESS,
            payment_pb2.PAYMENT_STATUS_FAILED,
        ):
            event = payment_pb2.PaymentStatusChanged(
                biz_trade_no=trade_no, amount_fen=amount, status=state, at_ms=1234
            )
            assert producer.publish(PAYMENT_STATUS_TOPIC, trade_no, event)
        assert await producer.flush(30)

        async def payed() -> bool:
            return await status(stub, opened.rid, reader) == reward_pb2.REWARD_STATUS_PAYED

        await eventually(payed, DEADLINE_S, "the reward paid")

        def published() -> bool:
            return any(e.rid == opened.rid and e.uid == reader for e in listener.seen)

        await eventually(published, DEADLINE_S, "RewardPaid published")
    finally:
        await producer.stop()
        await listener.consumer.stop()
    [paid] = [e for e in listener.seen if e.rid == opened.rid and e.uid == reader]
    assert (paid.biz, paid.biz_id, paid.target_uid, paid.amount_fen, paid.at_ms) == (
        "article",
        article_id,
        AUTHOR,
        amount,
        1234,
    )
    assert await outbox_rows(database_url, opened.rid) == 1
    assert await status(stub, opened.rid, reader) == reward_pb2.REWARD_STATUS_PAYED


async def test_refusals_over_the_wire(
    serve_reward: ServeReward, author: ArticleAuthor, payments: tuple[StandInPayments, str]
) -> None:
    stub = await serve_reward(payment_consumer_enabled=False)
    article_id = await author.publish()
    withdrawn = await author.publish()
    await author.withdraw(withdrawn)
    draft = await author.draft()
    reader = 4242
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    for request, expected in (
        (pre(withdrawn, reader, 1), (not_found, Reason.TARGET_NOT_FOUND)),
        (pre(draft, reader, 1), (not_found, Reason.TARGET_NOT_FOUND)),
        (pre(10**12, reader, 1), (not_found, Reason.TARGET_NOT_FOUND)),
        (pre(article_id, AUTHOR, 1), (invalid, Reason.SELF)),
        (pre(article_id, reader, 0), (invalid, Reason.INVALID_AMOUNT)),
        (pre(article_id, reader, -1), (invalid, Reason.INVALID_AMOUNT)),
        (pre(article_id, reader, 100_001), (invalid, Reason.INVALID_AMOUNT)),
        (pre(article_id, reader, 2**63 - 1), (invalid, Reason.INVALID_AMOUNT)),
        (pre(article_id, 0, 1), (invalid, Reason.INVALID_USER)),
        (
            reward_pb2.PreRewardRequest(biz="", biz_id=article_id, uid=reader, amount_fen=1),
            (invalid, Reason.INVALID_BIZ),
        ),
    ):
        assert await refusal(stub.PreReward(request)) == expected, request
    assert payments[0].orders == {}

    opened = await stub.PreReward(pre(article_id, reader, 100_000))
    for rid, uid in ((opened.rid, reader + 1), (opened.rid, AUTHOR), (opened.rid + 1, reader)):
        assert await refusal(stub.GetReward(reward_pb2.GetRewardRequest(rid=rid, uid=uid))) == (
            not_found,
            Reason.NOT_FOUND,
        )

    payments[0].refuse_prepay = True
    assert await refusal(stub.PreReward(pre(article_id, reader, 1))) == (
        grpc.StatusCode.UNAVAILABLE,
        Reason.UNAVAILABLE,
    )


async def test_get_reward_repairs_a_missed_event_through_get_payment(
    serve_reward: ServeReward,
    author: ArticleAuthor,
    payments: tuple[StandInPayments, str],
    database_url: str,
) -> None:
    stub = await serve_reward(payment_consumer_enabled=False, repair_after_seconds=0)
    article_id = await author.publish()
    reader = 5151
    opened = await stub.PreReward(pre(article_id, reader, 88))
    # Asked, but the payment service knows it unpaid yet: still INIT.
    assert await status(stub, opened.rid, reader) == reward_pb2.REWARD_STATUS_INIT
    # Paid, and the event lost: the next poll learns it from GetPayment.
    payments[0].orders[f"reward-{opened.rid}"].status = payment_pb2.PAYMENT_STATUS_SUCCESS
    assert await status(stub, opened.rid, reader) == reward_pb2.REWARD_STATUS_PAYED
    assert await outbox_rows(database_url, opened.rid) == 1
    # A payment the service never heard of (the Prepay of a reward that failed) stays INIT.
    payments[0].refuse_prepay = True
    await refusal(stub.PreReward(pre(article_id, reader, 1)))
    assert await status(stub, opened.rid + 1, reader) == reward_pb2.REWARD_STATUS_INIT
