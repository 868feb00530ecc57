"""A ServiceRunner with etcd follows its live settings: started before its components, log
level applied at run time, stopped with the runner; none without etcd."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest

from kit.config import GrpcServiceSettings, Mode
from kit.grpcx.server import Background, ServiceRunner
from kit.liveconfig import ConfigStore
from kit.registry.tests.helpers import eventually

pytestmark = pytest.mark.integration


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
