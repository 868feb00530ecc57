"""gRPC-level tests of the account service: the real process wiring (``build_runner``) on
real SQLite/MariaDB, its reward consumer on the session's real broker (the real topic, a
group of the test's own), and the payment service as a real gRPC server (a fake of it).

Covered: a paid reward published as the reward service does is credited to its author
(never the rewarder) once, whatever the duplicates; GetAccount's refusals; RunReconciliation
against the payments over gRPC, its fencing token in metadata (as the scheduler sends it)
or in the request, and a payment service that cannot be reached.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client import REGISTRY

from devstack.infra import free_port
from kit.cache.tests.outage import eventually
from kit.config import Mode
from kit.events import BatchConsumer, EventProducer, ProducerConfig, TopicSpec
from kit.grpcx.fencing import FENCING_TOKEN_METADATA, fencing_metadata
from kit.grpcx.server import ServiceRunner
from kit.tests.rpc import refusal_of
from services.account.__main__ import build_runner
from services.account.domain import MS_PER_DAY
from services.account.errors import DOMAIN, Reason
from services.account.events import REWARD_PAID_TOPIC
from services.account.settings import AccountSettings
from services.account.tests.conftest import FakePayments
from webook.account.v1 import account_pb2
from webook.account.v1.account_pb2_grpc import AccountServiceStub
from webook.reward.v1 import reward_pb2

if TYPE_CHECKING:
    from webook.account.v1.account_pb2_grpc import AccountServiceAsyncStub

pytestmark = pytest.mark.integration

DAY = 1_796_601_600_000  # 2026-12-07 00:00 UTC
ServeAccount = Callable[..., Awaitable["AccountServiceAsyncStub"]]


@pytest.fixture
async def serve_account(database_url: str, kafka_bootstrap: str) -> AsyncIterator[ServeAccount]:
    """``await serve_account(**settings)``: a client of a new account process on the test
    database, consuming paid rewards in a group of its own (waited for to own its
    partitions) unless ``reward_consumer_enabled=False``."""
    runners: list[ServiceRunner] = []
    channels: list[grpc.aio.Channel] = []

    async def serve(**overrides: Any) -> AccountServiceAsyncStub:
        settings = AccountSettings(
            mode=Mode.TEST,
            database_url=database_url,
            kafka_bootstrap=kafka_bootstrap,
            reward_consumer_group=f"account-{uuid.uuid4().hex[:10]}",
            reward_batch_wait_seconds=0.2,
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=500,
            grpc_port=0,
            metrics_port=-1,
            shutdown_grace=1.0,
            **overrides,
        )
        runner = build_runner(settings)
        port = await runner.start()
        runners.append(runner)
        if settings.reward_consumer_enabled:
            await runner.component(BatchConsumer).wait_assigned(60)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return AccountServiceStub(channel)

    try:
        yield serve
    finally:
        for channel in channels:
            await channel.close(None)
        for runner in reversed(runners):
            await runner.stop()


refusal = partial(refusal_of, domain=DOMAIN)


async def publish(kafka_bootstrap: str, events: list[reward_pb2.RewardPaid]) -> None:
    """Publish ``events`` on the paid-reward topic keyed by reward id, as the reward
    service's outbox relay does."""
    producer = EventProducer(
        ProducerConfig(
            bootstrap=kafka_bootstrap,
            topics=(TopicSpec(REWARD_PAID_TOPIC, 3),),
            request_timeout_ms=3000,
        )
    )
    producer.start()
    try:
        for event in events:
            assert producer.publish(REWARD_PAID_TOPIC, event.rid, event)
        assert await producer.flush(15)
    finally:
        await producer.stop()


async def test_a_paid_reward_is_credited_to_its_author_once(
    serve_account: ServeAccount, payment_address: str, kafka_bootstrap: str
) -> None:
    stub = await serve_account(peers={"payment": payment_address})
    # Ids of this test's own: the topic is the session's.
    rid = random.randrange(10**9, 10**12)
    author, rewarder = random.randrange(10**6, 10**9), random.randrange(10**6, 10**9)
    event = reward_pb2.RewardPaid(
        rid=rid,
        biz="article",
        biz_id=9,
        uid=rewarder,
        target_uid=author,
        amount_fen=250,
        at_ms=DAY + 1,
    )
    await publish(kafka_bootstrap, [event] * 5)

    async def credited() -> bool:
        reply = await stub.GetAccount(account_pb2.GetAccountRequest(uid=author))
        return reply.balance_fen > 0

    await eventually(credited, "the author is credited")
    reply = await stub.GetAccount(account_pb2.GetAccountRequest(uid=author))
    assert reply.balance_fen == 225
    assert [(a.biz_key, a.amount_fen, a.type, a.at_ms) for a in reply.recent] == [
        (f"reward:{rid}", 225, account_pb2.ACTIVITY_TYPE_REWARD, DAY + 1)
    ]
    nothing = await stub.GetAccount(account_pb2.GetAccountRequest(uid=rewarder))
    assert nothing.balance_fen == 0
    assert list(nothing.recent) == []
    for uid in (0, -4):
        code, reason = await refusal(stub.GetAccount(account_pb2.GetAccountRequest(uid=uid)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_USER)


async def test_reconciliation_over_grpc_with_the_schedulers_token(
    serve_account: ServeAccount,
    payment_address: str,
    payments: FakePayments,
) -> None:
    # No consumer: the session's topic holds other tests' rewards of this day.
    stub = await serve_account(peers={"payment": payment_address}, reward_consumer_enabled=False)
    payments.paid.extend([(DAY + 5, 300), (DAY + MS_PER_DAY, 999)])
    empty = account_pb2.RunReconciliationRequest(day_start_ms=DAY)
    reply = await stub.RunReconciliation(empty, metadata=fencing_metadata(3, "account.reconcile"))
    # Nothing credited in this database yet: all of the day's payments are missing.
    assert (reply.credited_fen, reply.paid_fen, reply.difference_fen) == (0, 300, 300)
    assert reply.day_start_ms == DAY
    assert payments.calls == [(DAY, DAY + MS_PER_DAY)]
    assert REGISTRY.get_sample_value("webook_account_reconciliation_difference_fen") == 300

    code, reason = await refusal(
        stub.RunReconciliation(empty, metadata=fencing_metadata(2, "account.reconcile"))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, Reason.STALE_FENCING_TOKEN)
    # In the request, or both ways with the same value.
    with_token = account_pb2.RunReconciliationRequest(day_start_ms=DAY, fencing_token=4)
    await stub.RunReconciliation(with_token)
    await stub.RunReconciliation(with_token, metadata=fencing_metadata(4, "r"))
    for metadata in (
        fencing_metadata(5, "r"),  # differs from the request's 4
        ((FENCING_TOKEN_METADATA, "abc"),),
        ((FENCING_TOKEN_METADATA, "0"),),
    ):
        code, reason = await refusal(stub.RunReconciliation(with_token, metadata=metadata))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    code, reason = await refusal(stub.RunReconciliation(empty))  # no token at all
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_FENCING_TOKEN)
    bad_day = account_pb2.RunReconciliationRequest(day_start_ms=-1, fencing_token=9)
    code, reason = await refusal(stub.RunReconciliation(bad_day))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_DAY)


async def test_an_unreachable_payment_service_fails_the_reconciliation(
    serve_account: ServeAccount,
) -> None:
    stub = await serve_account(
        peers={"payment": f"127.0.0.1:{free_port()}"},
        payment_timeout_seconds=1.0,
        reward_consumer_enabled=False,
    )
    code, reason = await refusal(
        stub.RunReconciliation(
            account_pb2.RunReconciliationRequest(day_start_ms=DAY),
            metadata=fencing_metadata(1, "r"),
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, Reason.RECONCILIATION_FAILED)
