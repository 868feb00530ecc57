"""Rollouts follow the configuration centre on a real etcd: two replicas of one service
apply each step of a roll-out (0 -> 1 -> 10 %), a rollback and a value written to etcd
without validation (refused: the last good rollout stays).

Every wait is on a condition with a generous deadline; nothing asserts a duration.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from kit.config import ClientSettings, Mode
from kit.gray import Gray, Rollout
from kit.liveconfig import ConfigStore, LiveSettings
from kit.registry.tests.helpers import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 10.0
READERS = [f"user:{n}" for n in range(10_000)]


def share_new(gray: Gray, name: str) -> float:
    """Percent of :data:`READERS` on the new side of ``name``."""
    return sum(gray.is_new(name, reader) for reader in READERS) / len(READERS) * 100


def apply_failures() -> float:
    """Remote settings the test service's processes refused as invalid."""
    sample = REGISTRY.get_sample_value(
        "webook_config_apply_failures_total", {"service": "graytest"}
    )
    return sample or 0.0


@pytest.fixture
async def store(etcd_endpoint: str) -> AsyncIterator[ConfigStore]:
    async with ConfigStore.connect([etcd_endpoint]) as opened:
        yield opened


@pytest.fixture
async def replicas(
    etcd_endpoint: str, tmp_path: Path
) -> AsyncIterator[list[LiveSettings[ClientSettings]]]:
    """Two processes' live settings for one service in an environment of this test only."""
    env = f"t-{uuid.uuid4().hex[:8]}"
    lives = [
        LiveSettings(
            ClientSettings(
                mode=Mode.TEST,
                etcd_endpoints=[etcd_endpoint],
                config_environment=env,
                config_cache_dir=tmp_path / f"replica-{n}",
            ),
            "graytest",
        )
        for n in range(2)
    ]
    try:
        for live in lives:
            await live.start()
        yield lives
    finally:
        for live in lives:
            await live.stop()


async def test_every_replica_follows_each_step_and_the_rollback(
    store: ConfigStore, replicas: list[LiveSettings[ClientSettings]]
) -> None:
    env = replicas[0].environment
    name = "ranking"
    grays = [Gray(live, defaults={name: Rollout(percent=0)}) for live in replicas]
    assert all(share_new(gray, name) == 0 for gray in grays)

    async def step(percent: float, why: str) -> int:
        record = await store.set(
            env, "graytest", {"gray_rollouts": {name: {"percent": percent}}}, who="t", why=why
        )
        await eventually(
            lambda: all(gray.rollout(name).percent == percent for gray in grays),
            DEADLINE_S,
            f"every replica at {percent} %",
        )
        return record.version

    one_percent = await step(1, "first step")
    first = [{r for r in READERS if gray.is_new(name, r)} for gray in grays]
    # The replicas agree reader by reader: a reader's side does not depend on the process.
    assert first[0] == first[1]
    assert abs(len(first[0]) / len(READERS) * 100 - 1) <= 1

    await step(10, "second step")
    second = {r for r in READERS if grays[0].is_new(name, r)}
    assert first[0] <= second
    assert abs(len(second) / len(READERS) * 100 - 10) <= 1

    await store.rollback(env, "graytest", one_percent, who="t", why="back to 1 %")
    await eventually(
        lambda: all(gray.rollout(name).percent == 1 for gray in grays),
        DEADLINE_S,
        "every replica back at 1 %",
    )
    assert {r for r in READERS if grays[1].is_new(name, r)} == first[0]

    await step(0, "off")
    assert all(share_new(gray, name) == 0 for gray in grays)


async def test_an_invalid_rollout_in_etcd_is_never_applied(
    store: ConfigStore, replicas: list[LiveSettings[ClientSettings]]
) -> None:
    env = replicas[0].environment
    live = replicas[0]
    gray = Gray(live)
    await store.set(
        env, "graytest", {"gray_rollouts": {"feed": {"percent": 5}}}, who="t", why="start"
    )
    await eventually(lambda: gray.rollout("feed").percent == 5, DEADLINE_S, "5 % applied")
    failures = apply_failures()
    # Written without the validation webookctl does: the processes refuse it themselves.
    await store.set(
        env,
        "graytest",
        {"gray_rollouts": {"feed": {"mode": "sticky", "percent": 50}}},
        who="t",
        why="bypassing validation",
    )
    await eventually(lambda: apply_failures() > failures, DEADLINE_S, "the change refused")
    assert gray.rollout("feed") == Rollout(percent=5)
