"""gRPC-level tests: the real process wiring (:func:`build_runner`) on a free port.

They check what clients such as the gateway rely on: status codes and the
``google.rpc.ErrorInfo`` reason and domain of every refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from kit.config import Mode
from kit.migrations import upgrade_async
from kit.tests.rpc import refusal_of
from services.user.__main__ import build_runner
from services.user.errors import DOMAIN, Reason
from services.user.settings import UserSettings
from webook.user.v1 import user_pb2
from webook.user.v1.user_pb2_grpc import UserServiceStub

if TYPE_CHECKING:
    # Exists only in the .pyi: the type of UserServiceStub on an asyncio channel.
    from webook.user.v1.user_pb2_grpc import UserServiceAsyncStub

pytestmark = pytest.mark.integration

PASSWORD = "hello#123"


@pytest.fixture
async def stub(
    tmp_path: Path, redis_url: str, kafka_bootstrap: str
) -> AsyncIterator[UserServiceAsyncStub]:
    """A client of a user service served by ``build_runner`` on SQLite, Redis and Kafka."""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'user.db'}"
    await upgrade_async("user", database_url)
    settings = UserSettings(
        mode=Mode.TEST,
        database_url=database_url,
        redis_url=redis_url,
        kafka_bootstrap=kafka_bootstrap,
        grpc_port=0,
        metrics_port=-1,
        bcrypt_cost=4,
        shutdown_grace=1.0,
    )
    runner = build_runner(settings)
    port = await runner.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield UserServiceStub(channel)
    finally:
        await runner.stop()


refusal = partial(refusal_of, domain=DOMAIN)


async def test_happy_path(stub: UserServiceAsyncStub) -> None:
    signed_up = (
        await stub.Signup(user_pb2.SignupRequest(email="Ann@Example.com", password=PASSWORD))
    ).user
    assert signed_up.id > 0
    assert signed_up.email == "ann@example.com"
    assert not signed_up.HasField("wechat")

    logged_in = await stub.Login(user_pb2.LoginRequest(email="ann@example.com", password=PASSWORD))
    assert logged_in.user == signed_up

    edited = await stub.UpdateNonSensitiveInfo(
        user_pb2.UpdateNonSensitiveInfoRequest(
            id=signed_up.id, nickname="Ann", birthday="1990-05-01", about_me="hi"
        )
    )
    assert (edited.user.nickname, edited.user.birthday) == ("Ann", "1990-05-01")
    profile = await stub.Profile(user_pb2.ProfileRequest(id=signed_up.id))
    assert profile.user == edited.user

    by_phone = await stub.FindOrCreateByPhone(
        user_pb2.FindOrCreateByPhoneRequest(phone="13800138000")
    )
    assert by_phone.created
    by_wechat = await stub.FindOrCreateByWechat(
        user_pb2.FindOrCreateByWechatRequest(info=user_pb2.WechatInfo(open_id="o1", union_id="u1"))
    )
    assert by_wechat.created
    assert by_wechat.user.wechat == user_pb2.WechatInfo(open_id="o1", union_id="u1")
    again = await stub.FindOrCreateByWechat(
        user_pb2.FindOrCreateByWechatRequest(info=user_pb2.WechatInfo(open_id="o1"))
    )
    assert (again.created, again.user.id) == (False, by_wechat.user.id)

    batch = await stub.GetByIds(
        user_pb2.GetByIdsRequest(ids=[signed_up.id, by_phone.user.id, 10_000])
    )
    assert set(batch.users) == {signed_up.id, by_phone.user.id}
    assert batch.users[by_phone.user.id].phone == "+8613800138000"


def _tomorrow_but_one() -> str:
    return (datetime.now(UTC).date() + timedelta(days=2)).isoformat()


Scenario = Callable[["UserServiceAsyncStub", int], Awaitable[object]]

SCENARIOS: dict[str, tuple[Scenario, grpc.StatusCode, Reason]] = {
    "invalid email": (
        lambda s, _: s.Signup(user_pb2.SignupRequest(email="not-an-email", password=PASSWORD)),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_EMAIL,
    ),
    "weak password": (
        lambda s, _: s.Signup(user_pb2.SignupRequest(email="b@example.com", password="password")),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.WEAK_PASSWORD,
    ),
    "password over 72 bytes": (
        lambda s, _: s.Signup(
            user_pb2.SignupRequest(email="b@example.com", password="a1#" + "x" * 70)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.PASSWORD_TOO_LONG,
    ),
    "duplicate email": (
        lambda s, _: s.Signup(user_pb2.SignupRequest(email="ME@example.com", password=PASSWORD)),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.EMAIL_TAKEN,
    ),
    "wrong password": (
        lambda s, _: s.Login(user_pb2.LoginRequest(email="me@example.com", password="wrong#123")),
        grpc.StatusCode.UNAUTHENTICATED,
        Reason.INVALID_CREDENTIALS,
    ),
    "unknown email": (
        lambda s, _: s.Login(user_pb2.LoginRequest(email="who@example.com", password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
        Reason.INVALID_CREDENTIALS,
    ),
    "unknown user": (
        lambda s, uid: s.Profile(user_pb2.ProfileRequest(id=uid + 1000)),
        grpc.StatusCode.NOT_FOUND,
        Reason.NOT_FOUND,
    ),
    "edit unknown user": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid + 1000, nickname="x")
        ),
        grpc.StatusCode.NOT_FOUND,
        Reason.NOT_FOUND,
    ),
    "oversized nickname": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, nickname="n" * 65)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_NICKNAME,
    ),
    "oversized about me": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, about_me="a" * 1025)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_ABOUT_ME,
    ),
    "impossible birthday": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, birthday="2023-02-30")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_BIRTHDAY,
    ),
    "future birthday": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, birthday=_tomorrow_but_one())
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_BIRTHDAY,
    ),
    "markup in nickname": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, nickname="<b>me</b>")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_NICKNAME,
    ),
    "markup in about me": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, about_me="hi <script>x()</script>")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_ABOUT_ME,
    ),
    "character reference in about me": (
        lambda s, uid: s.UpdateNonSensitiveInfo(
            user_pb2.UpdateNonSensitiveInfoRequest(id=uid, about_me="&lt;img src=x&gt;")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_ABOUT_ME,
    ),
    "invalid phone": (
        lambda s, _: s.FindOrCreateByPhone(user_pb2.FindOrCreateByPhoneRequest(phone="12345")),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_PHONE,
    ),
    "missing wechat info": (
        lambda s, _: s.FindOrCreateByWechat(user_pb2.FindOrCreateByWechatRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_WECHAT_INFO,
    ),
    "too many ids": (
        lambda s, _: s.GetByIds(user_pb2.GetByIdsRequest(ids=range(1, 102))),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.TOO_MANY_IDS,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_refusals_carry_status_and_reason(stub: UserServiceAsyncStub, scenario: str) -> None:
    existing = await stub.Signup(user_pb2.SignupRequest(email="me@example.com", password=PASSWORD))
    call, code, reason = SCENARIOS[scenario]
    assert await refusal(call(stub, existing.user.id)) == (code, reason)


async def test_login_guessing_is_throttled_over_grpc(
    stub: UserServiceAsyncStub, redis_client: object
) -> None:
    """Direct gRPC callers meet the per-account limit (default: 5 failures), registered or
    not, and then even the right password is refused with RESOURCE_EXHAUSTED."""
    await stub.Signup(user_pb2.SignupRequest(email="guess@example.com", password=PASSWORD))
    for email in ("guess@example.com", "ghost@example.com"):
        wrong = user_pb2.LoginRequest(email=email, password="wrong#123")
        for _ in range(5):
            assert await refusal(stub.Login(wrong)) == (
                grpc.StatusCode.UNAUTHENTICATED,
                Reason.INVALID_CREDENTIALS,
            )
        right = user_pb2.LoginRequest(email=email, password=PASSWORD)
        assert await refusal(stub.Login(right)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            Reason.LOGIN_THROTTLED,
        )


async def test_both_forms_of_a_phone_are_one_account_over_grpc(stub: UserServiceAsyncStub) -> None:
    first = await stub.FindOrCreateByPhone(user_pb2.FindOrCreateByPhoneRequest(phone="13900000003"))
    second = await stub.FindOrCreateByPhone(
        user_pb2.FindOrCreateByPhoneRequest(phone="+8613900000003")
    )
    assert first.created
    assert (second.created, second.user.id) == (False, first.user.id)
    assert second.user.phone == "+8613900000003"
