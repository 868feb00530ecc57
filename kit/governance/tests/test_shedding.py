"""Load shedding: a slot per call up to the in-flight bound, fewer while the CPU is saturated.

The shedder on its own; on the wire (refusals counted, health checks never shed), see
``test_server.py``.
"""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from kit.governance import GovernanceMetrics, LoadShedder, SheddingConfig
from kit.governance.tests.support import wait_for


def test_calls_beyond_the_in_flight_limit_are_refused_until_a_slot_is_free() -> None:
    shedder = LoadShedder(SheddingConfig(max_in_flight=3, cpu_threshold=None))
    assert shedder.sampler is None

    assert [shedder.enter() for _ in range(5)] == [True, True, True, False, False]
    assert shedder.in_flight == 3
    shedder.leave()
    assert shedder.enter()
    assert not shedder.enter()
    for _ in range(3):
        shedder.leave()
    assert shedder.in_flight == 0


async def test_hot_cpu_sheds_above_the_floor_and_recovers_when_it_cools() -> None:
    cpu = [1.0]
    config = SheddingConfig(
        max_in_flight=100,
        cpu_threshold=0.8,
        cpu_in_flight_floor=2,
        cpu_sample_interval=0.01,
        cpu_decay=0.0,
    )
    shedder = LoadShedder(
        config, metrics=GovernanceMetrics(CollectorRegistry()), cpu_reader=lambda: cpu[0]
    )
    try:
        shedder.start()
        assert shedder.sampler is not None
        assert shedder.sampler.running
        await wait_for(lambda: shedder.cpu_usage >= 0.8)
        # Hot: the floor of two calls is kept, the rest refused.
        assert [shedder.enter() for _ in range(6)] == [True, True] + [False] * 4

        cpu[0] = 0.1
        await wait_for(lambda: shedder.cpu_usage < 0.8)
        assert [shedder.enter() for _ in range(6)] == [True] * 6
        assert shedder.in_flight == 8
    finally:
        await shedder.aclose()
    assert shedder.sampler is not None
    assert not shedder.sampler.running
    assert shedder.cpu_usage < 0.8


@pytest.mark.parametrize(
    "config",
    [
        {"max_in_flight": 0},
        {"cpu_in_flight_floor": -1},
        {"cpu_sample_interval": 0.0},
        {"cpu_decay": 1.0},
    ],
)
def test_config_is_validated(config: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        SheddingConfig(**config)  # type: ignore[arg-type]
