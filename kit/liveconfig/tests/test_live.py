"""LiveSettings on a real etcd: applied within a deadline, invalid never applied, outages.

Every wait is on a condition with a generous deadline (the machine may be loaded); nothing
asserts a duration.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devstack.infra import etcd_process, free_port
from kit.config import Mode
from kit.liveconfig import DELETE, ConfigStore, LiveSettings, apply_observability
from kit.liveconfig.tests.demo import DemoSettings
from kit.observability.tracing import ExportAwareTracerProvider, service_resource
from kit.registry.tests.helpers import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0


def metric(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


@pytest.fixture
def names() -> tuple[str, str]:
    """An environment and a service name of this test only (metrics are per service)."""
    run = uuid.uuid4().hex[:8]
    return f"t-{run}", f"demo-{run}"


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


def base_settings(endpoint: str, tmp_path: Path, **values: Any) -> DemoSettings:
    return DemoSettings(
        mode=Mode.TEST,
        etcd_endpoints=[endpoint],
        config_cache_dir=tmp_path / "cache",
        **values,
    )


async def test_a_change_is_applied_and_a_delete_goes_back_to_the_base(
    etcd_endpoint: str, tmp_path: Path, store: ConfigStore, names: tuple[str, str]
) -> None:
    env, service = names
    await store.set(env, service, {"soft_limit": 3}, who="t", why="before start")
    live = LiveSettings(
        base_settings(etcd_endpoint, tmp_path, hard_limit=40), service, environment=env
    )
    seen: list[tuple[int, int]] = []

    async def record(old: DemoSettings, new: DemoSettings) -> None:
        seen.append((old.soft_limit, new.soft_limit))

    live.subscribe(record)
    await live.start()
    try:
        assert live.current.soft_limit == 3  # started on the remote value
        assert live.current.hard_limit == 40  # the environment's, not in etcd
        change = await store.set(env, service, {"soft_limit": 7}, who="t", why="raise")
        await eventually(lambda: live.current.soft_limit == 7, DEADLINE_S, "change applied")
        assert live.version >= change.revision
        assert metric("webook_config_version", service) == live.version
        assert metric("webook_config_valid", service) == 1
        # Subscribers hear of the values applied at start too.
        await eventually(lambda: seen == [(10, 3), (3, 7)], DEADLINE_S, "subscriber told")

        await store.set(env, service, {"soft_limit": DELETE}, who="t", why="back")
        await eventually(lambda: live.current.soft_limit == 10, DEADLINE_S, "default again")
        assert live.current.model_config["frozen"]
    finally:
        await live.stop()


async def test_invalid_values_are_never_applied_and_counted(
    etcd_endpoint: str,
    tmp_path: Path,
    store: ConfigStore,
    names: tuple[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kit.liveconfig.live")
    env, service = names
    live = LiveSettings(base_settings(etcd_endpoint, tmp_path), service, environment=env)
    await live.start()
    try:
        await store.set(env, service, {"soft_limit": 4}, who="t", why="good")
        await eventually(lambda: live.current.soft_limit == 4, DEADLINE_S, "good value")
        # Written around the store's validation, as a direct etcd write would be: the soft
        # limit above the hard one, in one transaction with a valid key.
        await store.set(env, service, {"soft_limit": 99, "log_level": "DEBUG"}, who="t", why="bad")
        await eventually(
            lambda: metric("webook_config_apply_failures_total", service) == 1,
            DEADLINE_S,
            "failure counted",
        )
        assert live.current.soft_limit == 4
        assert live.current.log_level == "INFO"  # nothing of an invalid map is applied
        assert metric("webook_config_valid", service) == 0
        # Only this module's records: a closed loop from an earlier test can log an asyncio error.
        failure = next(
            r
            for r in caplog.records
            if r.levelno == logging.ERROR and r.name == "kit.liveconfig.live"
        )
        assert failure.__dict__["keys"] == ["*"]

        await store.set(env, service, {"soft_limit": 5}, who="t", why="fixed")
        await eventually(lambda: live.current.soft_limit == 5, DEADLINE_S, "valid again")
        assert live.current.log_level == "DEBUG"
        assert metric("webook_config_valid", service) == 1
    finally:
        await live.stop()


async def test_keys_that_are_not_live_are_ignored(
    etcd_endpoint: str, tmp_path: Path, store: ConfigStore, names: tuple[str, str]
) -> None:
    env, service = names
    live = LiveSettings(base_settings(etcd_endpoint, tmp_path), service, environment=env)
    await live.start()
    try:
        await store.set(env, service, {"port": 1, "hard_limit": 60}, who="t", why="mixed")
        await eventually(lambda: live.current.hard_limit == 60, DEADLINE_S, "live key applied")
        assert live.current.port == 8000
        assert metric("webook_config_ignored_keys_total", service) == 1
        assert metric("webook_config_valid", service) == 1
    finally:
        await live.stop()


async def test_outage_keeps_values_and_a_restart_starts_from_the_disk_copy(
    tmp_path: Path, names: tuple[str, str]
) -> None:
    env, service = names
    port = free_port()
    endpoint = f"127.0.0.1:{port}"
    etcd = etcd_process(tmp_path / "etcd-data", port, free_port(), tmp_path)
    etcd.die_with_parent = True
    await asyncio.to_thread(etcd.start)
    first: LiveSettings[DemoSettings] | None = None
    second: LiveSettings[DemoSettings] | None = None
    try:
        async with ConfigStore.connect([endpoint]) as store:
            await store.set(env, service, {"soft_limit": 6}, who="t", why="before outage")
        first = LiveSettings(base_settings(endpoint, tmp_path), service, environment=env)
        await first.start()
        assert first.current.soft_limit == 6
        assert first.disk_copy_path.exists()

        await asyncio.to_thread(etcd.stop)
        await eventually(lambda: not first.watching, DEADLINE_S, "watch broken")
        assert first.current.soft_limit == 6  # the last applied value stays

        # A process restarted during the outage starts with the last applied values.
        second = LiveSettings(
            base_settings(endpoint, tmp_path), service, environment=env, start_timeout_s=1.0
        )
        await second.start()
        assert second.current.soft_limit == 6
        assert not second.synced

        await asyncio.to_thread(etcd.start)
        async with ConfigStore.connect([endpoint]) as store:
            await store.set(env, service, {"soft_limit": 8}, who="t", why="after outage")
        for process in (first, second):
            await eventually(
                lambda p=process: p.current.soft_limit == 8,  # type: ignore[misc]
                30,
                "caught up after the outage",
            )
        assert second.synced
    finally:
        for started in (first, second):
            if started is not None:
                await started.stop()
        await asyncio.to_thread(etcd.stop)


async def test_log_level_and_trace_ratio_follow_the_remote_values(
    etcd_endpoint: str, tmp_path: Path, store: ConfigStore, names: tuple[str, str]
) -> None:
    env, service = names
    provider = ExportAwareTracerProvider(resource=service_resource(service), sample_ratio=1.0)
    live = LiveSettings(base_settings(etcd_endpoint, tmp_path), service, environment=env)

    def follow(old: DemoSettings, new: DemoSettings) -> None:
        apply_observability(old, new)
        if new.trace_sample_ratio != old.trace_sample_ratio:
            provider.gate.set_ratio(new.trace_sample_ratio)

    live.subscribe(follow)
    root = logging.getLogger()
    level = root.level
    await live.start()
    try:
        await store.set(
            env, service, {"log_level": "error", "trace_sample_ratio": 0.0}, who="t", why="quiet"
        )
        await eventually(lambda: root.level == logging.ERROR, DEADLINE_S, "log level applied")
        assert live.current.log_level == "ERROR"
        await eventually(lambda: provider.gate.ratio == 0.0, DEADLINE_S, "ratio applied")
        provider.gate.enable_recording()
        span = provider.get_tracer("test").start_span("root")
        assert not span.get_span_context().trace_flags.sampled
        span.end()
    finally:
        await live.stop()
        root.setLevel(level)
