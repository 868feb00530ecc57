"""Circuit breaker: the SRE throttling math, a real dependency failing and recovering, and
client errors never counting against the callee."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import CollectorRegistry

from kit.errors import ResourceExhausted
from kit.governance import (
    CLIENT_ERROR_CODES,
    DEFAULT_FAILURE_CODES,
    AdaptiveThrottle,
    BreakerConfig,
    BreakerOpenError,
    CircuitBreaker,
    GovernanceConfig,
    GovernanceMetrics,
    GovernedServerInterceptor,
    RateLimit,
    RateLimitConfig,
    SheddingConfig,
    SlidingWindow,
    UnaryClientPolicy,
    counts_against,
)
from kit.governance._rpc import parse_method
from kit.governance.breaker import is_client_error
from kit.governance.tests.support import (
    LOGIN,
    PROFILE,
    ManualClock,
    OpenGoverned,
    ScriptedRandom,
    ScriptedUserService,
    StartServer,
    sample,
)
from kit.grpcx.errors import map_handler_error, rich_status_metadata
from webook.user.v1 import user_pb2


def throttle(
    clock: ManualClock, rand: ScriptedRandom, *, k: float = 1.5, min_requests: int = 0
) -> AdaptiveThrottle:
    config = BreakerConfig(k=k, window=10.0, buckets=10, min_requests=min_requests)
    return AdaptiveThrottle(config, clock=clock, random_source=rand)


def record(breaker: AdaptiveThrottle, *, accepted: int = 0, failed: int = 0) -> None:
    for _ in range(accepted):
        breaker.record(accepted=True)
    for _ in range(failed):
        breaker.record(accepted=False)


def test_probability_follows_the_sre_formula() -> None:
    breaker = throttle(ManualClock(), ScriptedRandom())
    record(breaker, accepted=2, failed=8)

    # (requests - K * accepts) / (requests + 1) = (10 - 1.5 * 2) / 11
    assert breaker.rejection_probability() == pytest.approx(7 / 11)


def test_probability_is_zero_while_enough_calls_are_accepted() -> None:
    breaker = throttle(ManualClock(), ScriptedRandom())
    record(breaker, accepted=20, failed=10)  # 30 - 1.5 * 20 = 0

    assert breaker.rejection_probability() == 0.0
    breaker.record(accepted=False)
    assert breaker.rejection_probability() > 0.0


def test_k_sets_how_many_failures_are_tolerated() -> None:
    clock, rand = ManualClock(), ScriptedRandom()
    strict, lenient = throttle(clock, rand, k=1.1), throttle(clock, rand, k=2.0)
    for breaker in (strict, lenient):
        record(breaker, accepted=6, failed=4)

    assert strict.rejection_probability() == pytest.approx((10 - 1.1 * 6) / 11)
    assert lenient.rejection_probability() == 0.0


def test_nothing_is_rejected_below_min_requests() -> None:
    breaker = throttle(ManualClock(), ScriptedRandom(0.0), min_requests=5)
    record(breaker, failed=4)

    assert breaker.rejection_probability() == 0.0
    assert breaker.allow()
    breaker.record(accepted=False)
    assert breaker.rejection_probability() == pytest.approx(5 / 6)


def test_allow_draws_against_the_probability_and_counts_rejections() -> None:
    rand = ScriptedRandom()
    breaker = throttle(ManualClock(), rand)
    record(breaker, failed=3)  # p = 3 / 4

    rand.value = 0.8
    assert breaker.allow()
    rand.value = 0.7
    assert not breaker.allow()
    # The rejected call counts as a request that was not accepted: p = 4 / 5.
    assert breaker.rejection_probability() == pytest.approx(4 / 5)


def test_history_ages_out_of_the_window() -> None:
    clock = ManualClock()
    breaker = throttle(clock, ScriptedRandom())
    record(breaker, failed=6)
    clock.advance(5.0)
    record(breaker, failed=4)
    assert breaker.rejection_probability() == pytest.approx(10 / 11)

    clock.advance(5.5)  # the first six fell out of the 10 s window
    assert breaker.rejection_probability() == pytest.approx(4 / 5)
    clock.advance(60.0)
    assert breaker.rejection_probability() == 0.0


def test_sliding_window_counts_per_bucket() -> None:
    clock = ManualClock()
    window = SlidingWindow(window=1.0, buckets=4, clock=clock)
    window.add(accepted=True)
    clock.advance(0.25)
    window.add(accepted=False)
    window.add(accepted=True)
    assert window.totals() == (3, 2)

    clock.advance(0.75)  # the first bucket expired
    assert window.totals() == (2, 1)
    clock.advance(0.25)
    assert window.totals() == (0, 0)


@pytest.mark.parametrize(
    "config",
    [
        {"k": 0.0},
        {"window": 0.0},
        {"buckets": 0},
        {"min_requests": -1},
        {"failure_codes": DEFAULT_FAILURE_CODES | {grpc.StatusCode.NOT_FOUND}},
        {"failure_codes": frozenset({grpc.StatusCode.UNAUTHENTICATED})},
    ],
)
def test_config_is_validated(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        BreakerConfig(**config)


def test_method_scope_keeps_one_breaker_per_method() -> None:
    per_service = CircuitBreaker("user", BreakerConfig())
    per_method = CircuitBreaker("user", BreakerConfig(scope="method"))

    assert per_service.throttle_for(PROFILE) is per_service.throttle_for(LOGIN)
    assert per_method.throttle_for(PROFILE) is not per_method.throttle_for(LOGIN)
    assert per_method.key_for(PROFILE.encode()) == f"user{PROFILE}"


async def test_opens_on_failures_rejects_locally_degrades_and_closes_on_recovery(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    servicer = ScriptedUserService()
    rand = ScriptedRandom(0.5)
    target = "breaker-it-user"

    async def degraded_profile(request: user_pb2.ProfileRequest) -> user_pb2.ProfileResponse:
        return user_pb2.ProfileResponse(user=user_pb2.User(id=request.id, nickname="fallback"))

    breaker = CircuitBreaker(
        target,
        BreakerConfig(min_requests=5),
        fallbacks={PROFILE: degraded_profile},
        clock=ManualClock(),
        random_source=rand,
    )
    stub = await open_governed(
        await start_server(servicer), UnaryClientPolicy(target, breaker=breaker)
    )
    login = user_pb2.LoginRequest(email="a@b.c")
    rejected_before = sample("webook_breaker_rejected_total", target=target)

    # The dependency fails every call: after min_requests failures the breaker opens.
    servicer.failure = grpc.StatusCode.UNAVAILABLE
    for _ in range(5):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Login(login)
        assert not isinstance(failed.value, BreakerOpenError)
    assert servicer.calls == 5
    assert sample("webook_breaker_state", target=target) == 1.0

    # While open, calls are rejected locally: nothing reaches the server.
    for _ in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as rejected:
            await stub.Login(login)
        assert isinstance(rejected.value, BreakerOpenError)
        assert rejected.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == 5
    assert sample("webook_breaker_rejected_total", target=target) - rejected_before == 10

    # A method with a fallback gets the degraded answer instead of an error.
    response = await stub.Profile(user_pb2.ProfileRequest(id=7))
    assert response.user.nickname == "fallback"
    assert servicer.calls == 5

    # The dependency recovers; the calls that still get through push the probability to 0.
    servicer.failure = None
    rand.value = 0.999
    for _ in range(100):
        if breaker.throttle_for(LOGIN).rejection_probability() == 0.0:
            break
        await stub.Login(login)
    assert breaker.throttle_for(LOGIN).rejection_probability() == 0.0
    assert sample("webook_breaker_state", target=target) == 0.0

    rand.value = 0.0  # closed: even the most eager draw lets the call through
    response = await stub.Profile(user_pb2.ProfileRequest(id=7))
    assert response.user.nickname == "real"


class QuotaUserService(ScriptedUserService):
    """``Profile`` refuses with an application quota error (RESOURCE_EXHAUSTED, ErrorInfo)."""

    async def Profile(
        self, request: user_pb2.ProfileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> user_pb2.ProfileResponse:
        self.calls += 1
        raise ResourceExhausted("TOO_MANY_PROFILES", "profile quota spent")


async def test_client_errors_never_count_against_the_callee(
    start_server: StartServer, open_governed: OpenGoverned
) -> None:
    """Every answer about the request or the caller is an accept, through the real composers."""
    scripted = ScriptedUserService()
    quota = QuotaUserService()
    limited = ScriptedUserService()
    limiter = GovernedServerInterceptor(
        GovernanceConfig(
            tracing=False,
            shedding=SheddingConfig(enabled=False),
            rate_limit=RateLimitConfig(per_method={PROFILE: RateLimit(rate=0.001, burst=1)}),
        ),
        error_mapper=map_handler_error,
    )
    mapped = GovernedServerInterceptor(
        GovernanceConfig(tracing=False, shedding=SheddingConfig(enabled=False)),
        error_mapper=map_handler_error,
    )
    addresses = {
        "scripted": await start_server(scripted),
        "quota": await start_server(quota, [mapped]),
        "limited": await start_server(limited, [limiter]),
    }
    breaker = CircuitBreaker(
        "breaker-client-errors",
        # K = 1: any call not accepted makes the rejection probability positive.
        BreakerConfig(min_requests=1, k=1.0),
        metrics=GovernanceMetrics(CollectorRegistry()),
        clock=ManualClock(),
        random_source=ScriptedRandom(0.0),
    )
    policy = UnaryClientPolicy("breaker-client-errors", breaker=breaker)
    stubs = {name: await open_governed(address, policy) for name, address in addresses.items()}

    async def fails_with(name: str, code: grpc.StatusCode) -> None:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs[name].Profile(user_pb2.ProfileRequest(id=1))
        assert caught.value.code() is code

    answered = CLIENT_ERROR_CODES - {grpc.StatusCode.OK, grpc.StatusCode.CANCELLED}
    for code in sorted(answered, key=lambda code: code.value[0]):
        scripted.failure = code
        await fails_with("scripted", code)
    await fails_with("quota", grpc.StatusCode.RESOURCE_EXHAUSTED)  # ErrorInfo
    await stubs["limited"].Profile(user_pb2.ProfileRequest(id=1))
    await fails_with("limited", grpc.StatusCode.RESOURCE_EXHAUSTED)  # RetryInfo
    assert (scripted.calls, quota.calls, limited.calls) == (8, 1, 1)
    throttle = breaker.throttle_for(PROFILE)
    assert throttle.rejection_probability() == 0.0

    # The callee failing does count: one UNAVAILABLE is enough with K = 1.
    scripted.failure = grpc.StatusCode.UNAVAILABLE
    await fails_with("scripted", grpc.StatusCode.UNAVAILABLE)
    assert throttle.rejection_probability() > 0.0


def rpc_error(code: grpc.StatusCode, trailing: tuple[tuple[str, bytes], ...] = ()) -> Any:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), "scripted", None
    )


def test_only_an_overloaded_servers_resource_exhausted_counts() -> None:
    quota = rich_status_metadata(ResourceExhausted("TOO_MANY", "slow down"))
    codes = DEFAULT_FAILURE_CODES

    assert counts_against(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED), codes)  # shed
    assert not counts_against(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, quota), codes)
    for code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        assert counts_against(rpc_error(code), codes)
        assert counts_against(rpc_error(code, quota), codes)
    for code in CLIENT_ERROR_CODES:
        assert not counts_against(rpc_error(code), codes)
    # A code left out of the configuration does not count either.
    assert not counts_against(
        rpc_error(grpc.StatusCode.INTERNAL), codes - {grpc.StatusCode.INTERNAL}
    )


def _fed(breaker: CircuitBreaker, codes: list[grpc.StatusCode]) -> tuple[int, float]:
    """Offer one call per code, each admitted one failing with it: how many calls the
    breaker rejected, and its rejection probability after."""
    rejected = 0
    for code in codes:
        admitted = breaker.admit(parse_method(PROFILE))
        if isinstance(admitted, BreakerOpenError):
            rejected += 1
        else:
            breaker.record_error(*admitted, rpc_error(code))
    return rejected, breaker.throttle_for(PROFILE).rejection_probability()


def test_a_breaker_fed_only_client_errors_never_opens() -> None:
    """The shared mechanism itself: 1,000 client errors of every kind, on the most sensitive
    settings, leave the breaker closed; server errors on the same settings open it."""
    config = BreakerConfig(k=1.0, min_requests=1)

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(
            "client-errors",
            config,
            metrics=GovernanceMetrics(CollectorRegistry()),
            clock=ManualClock(),
            random_source=ScriptedRandom(0.0),
        )

    client_errors = sorted(CLIENT_ERROR_CODES - {grpc.StatusCode.OK}, key=lambda c: c.name)
    assert _fed(breaker(), client_errors * (1000 // len(client_errors) + 1)) == (0, 0.0)
    for server_error in DEFAULT_FAILURE_CODES:
        rejected, probability = _fed(breaker(), [server_error] * 20)
        # The random source draws 0.0: once open, every further call is rejected locally.
        assert (rejected, probability > 0.9) == (19, True), server_error


def test_client_errors_never_count_even_if_configured() -> None:
    """``counts_against`` is the one rule: a caller's own failure set cannot name a client
    error (BreakerConfig refuses it, and the function ignores it anyway)."""
    everything = frozenset(grpc.StatusCode)
    for code in grpc.StatusCode:
        assert is_client_error(code) is (code in CLIENT_ERROR_CODES)
        if is_client_error(code):
            assert not counts_against(rpc_error(code), everything), code
    assert counts_against(rpc_error(grpc.StatusCode.INTERNAL), everything)
    assert counts_against(rpc_error(grpc.StatusCode.DATA_LOSS), everything)


def test_the_client_error_set_is_what_the_project_decided() -> None:
    """Changing the set changes who can open a breaker: a deliberate decision, reviewed."""
    assert {code.name for code in CLIENT_ERROR_CODES} == {
        "OK",
        "CANCELLED",
        "INVALID_ARGUMENT",
        "OUT_OF_RANGE",
        "FAILED_PRECONDITION",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "ABORTED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
    }
    assert not CLIENT_ERROR_CODES & DEFAULT_FAILURE_CODES
