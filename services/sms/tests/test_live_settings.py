"""Live settings of the sms service: provider weights, health thresholds and retries.

The unit tests drive the provider chain's subscription (:meth:`ProviderChain.apply`)
directly; the integration test runs the real composition root on a real etcd and changes
the weights through the configuration centre, with no rebuild of anything. Waits are on
conditions with generous deadlines; nothing asserts a duration.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from kit.config import Mode
from kit.liveconfig import ConfigInvalid, ConfigStore, validate_changes
from kit.migrations import upgrade_async
from kit.registry.tests.helpers import eventually
from services.sms.__main__ import build_runner, chain_follower
from services.sms.metrics import SmsMetrics
from services.sms.providers import ProviderChain, health_policy
from services.sms.providers.failover import FailoverProvider
from services.sms.providers.health import HealthPolicy
from services.sms.providers.port import AllProvidersFailed, ProviderTimeout
from services.sms.providers.retry import RetryingProvider
from services.sms.settings import (
    CallerSettings,
    HealthSettings,
    ProviderKind,
    ProviderSettings,
    SmsSettings,
)
from services.sms.tests.fakes import ScriptedProvider
from webook.sms.v1 import sms_pb2, sms_pb2_grpc

DEADLINE_S = 15.0
OPS_TOKEN = "ops-static-token-0123456789abcdef"
PHONE = "13812345678"


def metrics() -> SmsMetrics:
    return SmsMetrics(CollectorRegistry())


async def first_attempts(failover: FailoverProvider, sends: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(sends):
        counts[(await failover.send("t", ["1"], ["13800138000"])).provider] += 1
    return counts


async def test_weights_share_first_attempts_and_change_in_place() -> None:
    a, b = ScriptedProvider("a", None), ScriptedProvider("b", None)
    m = metrics()
    failover = FailoverProvider([a, b], HealthPolicy(), m, weights={"a": 3})
    assert await first_attempts(failover, 8) == {"a": 6, "b": 2}
    assert m.provider_weight.labels("a")._value.get() == 3

    failover.set_weights({"a": 1, "b": 4})
    assert await first_attempts(failover, 10) == {"a": 2, "b": 8}
    assert failover.weights == {"a": 1, "b": 4}
    assert m.provider_weight.labels("b")._value.get() == 4


async def test_weight_zero_takes_a_provider_out_of_rotation_and_failover() -> None:
    a = ScriptedProvider("a", None)
    b = ScriptedProvider("b", ProviderTimeout("b", "slow"))
    failover = FailoverProvider([a, b], HealthPolicy(), metrics(), weights={"a": 0})
    with pytest.raises(AllProvidersFailed):
        await failover.send("t", [], ["13800138000"])
    assert a.calls == []  # not even as the failover of a failed send
    assert failover.could_send()
    with pytest.raises(ValueError, match="at least one provider"):
        failover.set_weights({"a": 0, "b": 0})
    assert failover.weights == {"a": 0, "b": 1}  # a refused change leaves the weights
    failover.set_weights({"a": 2, "c": 1})  # unknown names are ignored
    assert failover.weights == {"a": 2, "b": 1}


def sms_settings(tmp_path: Path, **values: Any) -> SmsSettings:
    return SmsSettings(
        mode="test",
        providers=[
            ProviderSettings(name=name, kind=ProviderKind.LOCAL, log_file=str(tmp_path / name))
            for name in ("a", "b")
        ],
        **values,
    )


async def test_the_chain_follows_health_thresholds_and_retries(tmp_path: Path) -> None:
    old = sms_settings(tmp_path, retry={"max_retries": 2, "base_delay_s": 0, "max_delay_s": 0})
    a = ScriptedProvider("a", ProviderTimeout("a", "slow"))
    b = ScriptedProvider("b", ProviderTimeout("b", "slow"))
    failover = FailoverProvider([a, b], health_policy(old.health), metrics())
    retrying = RetryingProvider(failover, max_retries=2, base_delay_s=0, max_delay_s=0)
    chain = ProviderChain(retrying, failover, retrying)
    new = old.model_copy(
        update={
            "health": HealthSettings(consecutive_timeouts=1, cooldown_s=7.0),
            "retry": old.retry.model_copy(update={"max_retries": 0}),
            "provider_weights": {"b": 5},
        }
    )
    chain_follower(chain)(old, new)
    assert failover.health("a").policy.cooldown_s == 7.0
    assert failover.weights == {"a": 1, "b": 5}
    # One send, no retry (max_retries 0): b first (the heavier), then a; one timeout each
    # now takes both out (consecutive_timeouts 1).
    with pytest.raises(AllProvidersFailed):
        await chain.provider.send("t", [], ["13800138000"])
    assert (len(a.calls), len(b.calls)) == (1, 1)
    assert not failover.health("a").healthy
    assert not failover.health("b").healthy
    assert not failover.could_send()


def test_invalid_live_values_are_refused(tmp_path: Path) -> None:
    base = sms_settings(tmp_path)
    assert validate_changes(SmsSettings, base, {}, {"provider_weights": {"a": 0}}) == {
        "provider_weights": {"a": 0}
    }
    for changes, key in (
        ({"provider_weights": {"c": 1}}, "*"),  # not a configured provider
        ({"provider_weights": {"a": 0, "b": 0}}, "*"),  # nobody left in rotation
        ({"provider_weights": {"a": -1}}, "provider_weights"),
        ({"health": {"cooldown_s": 0}}, "health"),
        ({"providers": []}, "providers"),  # restart-only: holds secrets
    ):
        with pytest.raises(ConfigInvalid) as refused:
            validate_changes(SmsSettings, base, {}, changes)
        assert key in refused.value.errors, (changes, refused.value.errors)
    # webookctl judges over the class's defaults (test mode), which cannot know a
    # deployment's providers: names pass there, values are still checked.
    defaults = SmsSettings.model_construct(mode=Mode.TEST)
    assert validate_changes(SmsSettings, defaults, {}, {"provider_weights": {"tencent": 0}})
    with pytest.raises(ConfigInvalid):
        validate_changes(SmsSettings, defaults, {}, {"provider_weights": {"tencent": -1}})


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


def config_valid() -> float:
    return REGISTRY.get_sample_value("webook_config_valid", {"service": "sms"}) or 0.0


@pytest.mark.integration
async def test_a_running_sms_takes_new_weights_from_etcd(
    tmp_path: Path, redis_url: str, redis_client: object, etcd_endpoint: str, store: ConfigStore
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    await upgrade_async("sms", database_url)
    environment = f"t-{uuid.uuid4().hex[:8]}"
    settings = sms_settings(
        tmp_path,
        grpc_port=0,
        metrics_port=-1,
        shutdown_grace=0.5,
        database_url=database_url,
        redis_url=redis_url,
        etcd_endpoints=[etcd_endpoint],
        registry_prefix=f"/{environment}/services",
        config_environment=environment,
        config_cache_dir=tmp_path / "config-cache",
        callers={"ops": CallerSettings(token=OPS_TOKEN, templates=["*"], admin=True)},
    )
    m = metrics()
    runner = build_runner(settings, metrics=m)
    await runner.start()
    live = runner.live
    assert live is not None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runner.port}")
    stub = sms_pb2_grpc.SmsServiceStub(channel)

    async def providers_used(sends: int) -> Counter[str]:
        used: Counter[str] = Counter()
        for index in range(sends):
            answer = await stub.Send(
                sms_pb2.SendRequest(tpl_id="promo", args=[str(index)], numbers=[PHONE]),
                metadata=(("authorization", f"Bearer {OPS_TOKEN}"),),
                timeout=30,
            )
            used[answer.provider] += 1
        return used

    try:
        assert await providers_used(4) == {"a": 2, "b": 2}

        await store.set(environment, "sms", {"provider_weights": {"a": 0}}, who="t", why="drain")
        await eventually(
            lambda: m.provider_weight.labels("a")._value.get() == 0, DEADLINE_S, "weights applied"
        )
        assert await providers_used(4) == {"b": 4}

        # Written straight to etcd (webookctl would refuse it): never applied.
        bad = {"provider_weights": {"a": 0, "b": 0}}
        with pytest.raises(ConfigInvalid):
            validate_changes(SmsSettings, settings, {"provider_weights": {"a": 0}}, bad)
        await store.set(environment, "sms", bad, who="t", why="mistake")
        await eventually(lambda: config_valid() == 0, DEADLINE_S, "invalid values seen")
        current = live.current
        assert isinstance(current, SmsSettings)
        assert current.provider_weights == {"a": 0}  # the last good values stay
        assert await providers_used(2) == {"b": 2}

        await store.set(environment, "sms", {"provider_weights": {"a": 1}}, who="t", why="back")
        await eventually(lambda: config_valid() == 1, DEADLINE_S, "valid values again")
        assert (await providers_used(4))["a"] == 2
    finally:
        await channel.close(None)
        await runner.stop()
