"""A ServiceRunner with etcd follows its live settings: started before its components, log
level, load-shedding bound and the outbound channels' tuning applied at run time, stopped
with the runner; none without etcd."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from kit.balancer import BalancedChannel
from kit.config import GrpcServiceSettings, Mode
from kit.governance import UnaryClientPolicy
from kit.grpcx.process import wire_clients
from kit.grpcx.server import Background, ServiceRunner
from kit.liveconfig import ConfigStore
from kit.registry.tests.helpers import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0


async def test_no_live_settings_without_etcd() -> None:
    settings = GrpcServiceSettings(mode=Mode.TEST, metrics_port=-1)
    assert ServiceRunner("plain", settings).live is None


async def test_components_start_on_the_live_values_and_follow_changes(
    etcd_endpoint: str, tmp_path: Path
) -> None:
    env = f"t-{uuid.uuid4().hex[:8]}"
    settings = GrpcServiceSettings(
        mode=Mode.TEST,
        metrics_port=-1,
        shutdown_grace=0.5,
        etcd_endpoints=[etcd_endpoint],
        register_instance=False,
        config_environment=env,
        config_cache_dir=tmp_path,
    )
    async with ConfigStore.connect([etcd_endpoint]) as store:
        await store.set(env, "kittest", {"log_level": "WARNING"}, who="t", why="quiet start")
        runner = ServiceRunner("kittest", settings)
        assert runner.live is not None
        live = runner.live
        seen_at_start: list[str] = []
        runner.start_before_serving(
            Background(lambda: seen_at_start.append(live.current.log_level), lambda: None)
        )
        root = logging.getLogger()
        level = root.level
        try:
            await runner.start()
            assert seen_at_start == ["WARNING"]
            assert root.level == logging.WARNING
            await store.set(env, "kittest", {"log_level": "DEBUG"}, who="t", why="look closer")
            await eventually(lambda: root.level == logging.DEBUG, 10, "log level applied")
        finally:
            await runner.stop()
            root.setLevel(level)
        assert not live.watching


async def test_shedding_bound_and_client_tuning_follow_etcd(
    etcd_endpoint: str, tmp_path: Path
) -> None:
    """``shed_max_in_flight`` reaches the running server's shedder and ``client_tuning`` the
    channels a service built with ``wire_clients``, both from the values applied at start
    and from each later change; switching shedding off live is ignored (needs a restart)."""
    env = f"t-{uuid.uuid4().hex[:8]}"
    peer = "127.0.0.1:1"  # never dialled: tuning a channel opens no connection
    settings = GrpcServiceSettings(
        mode=Mode.TEST,
        metrics_port=-1,
        shutdown_grace=0.5,
        etcd_endpoints=[etcd_endpoint],
        register_instance=False,
        config_environment=env,
        config_cache_dir=tmp_path,
        peers={"peer": peer},
    )
    async with ConfigStore.connect([etcd_endpoint]) as store:
        await store.set(
            env,
            "kittest",
            {"shed_max_in_flight": 40, "client_tuning": {"breaker_k": 1.7}},
            who="t",
            why="start tuned",
        )
        runner = ServiceRunner("kittest", settings)
        clients = wire_clients(runner, settings)
        shedder = runner.governance.shedder
        assert shedder is not None
        assert shedder.config.max_in_flight == 512  # the environment's, until started
        try:
            await runner.start()
            channel = await clients.channel("peer")
            assert isinstance(channel, BalancedChannel)
            policy = channel.policy
            assert isinstance(policy, UnaryClientPolicy)
            assert policy.breaker is not None
            breaker = policy.breaker
            # Applied at start, before the first channel was opened.
            assert shedder.config.max_in_flight == 40
            assert breaker.config.k == 1.7

            await store.set(
                env,
                "kittest",
                {
                    "shed_max_in_flight": 7,
                    "client_tuning": {
                        "breaker_k": 2.5,
                        "eject_after_failures": 2,
                        "endpoint_weights": {"peer": {peer: 9}},
                    },
                },
                who="t",
                why="retune",
            )
            await eventually(
                lambda: shedder.config.max_in_flight == 7, DEADLINE_S, "shedding bound applied"
            )
            assert shedder.config.cpu_in_flight_floor == 7  # min(64, bound), as at start
            await eventually(lambda: breaker.config.k == 2.5, DEADLINE_S, "tuning applied")
            assert policy.breaker is breaker  # the same breaker, history kept
            assert channel.config.eject_after_failures == 2
            assert [endpoint.weight for endpoint in channel.endpoints()] == [9.0]

            # Off (0) needs a restart: the process keeps shedding at the last bound.
            change = await store.set(
                env, "kittest", {"shed_max_in_flight": 0}, who="t", why="try off"
            )
            live = runner.live
            assert live is not None
            await eventually(lambda: live.version >= change.revision, DEADLINE_S, "applied")
            assert live.current.shed_max_in_flight == 0
            assert runner.governance.shedder is shedder
            assert shedder.config.max_in_flight == 7
        finally:
            await runner.stop()


async def test_a_negative_shedding_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="shed_max_in_flight"):
        GrpcServiceSettings(mode=Mode.TEST, shed_max_in_flight=-1)
