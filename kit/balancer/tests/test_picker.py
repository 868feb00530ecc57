"""Unit tests of the pickers and the endpoint health state machine (no I/O)."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest

from kit.balancer.config import BalancerConfig, Policy
from kit.balancer.endpoint import EndpointState, Health
from kit.balancer.picker import ConsistentHashRing, SmoothWeightedRoundRobin
from kit.registry.model import ServiceInstance


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def endpoints(weights: dict[str, int], config: BalancerConfig | None = None) -> list[EndpointState]:
    config = config or BalancerConfig()
    return [
        EndpointState(ServiceInstance("svc", name, f"10.0.0.{i}:80", weight), config)
        for i, (name, weight) in enumerate(weights.items())
    ]


def health_of(endpoint: EndpointState) -> Health:
    """The endpoint's health (a call, so that type narrowing does not stick)."""
    return endpoint.health


def wrr(
    eps: list[EndpointState], clock: FakeClock | None = None
) -> SmoothWeightedRoundRobin[EndpointState]:
    picker: SmoothWeightedRoundRobin[EndpointState] = SmoothWeightedRoundRobin(clock or FakeClock())
    picker.set_endpoints(eps)
    return picker


def picks(picker: SmoothWeightedRoundRobin[EndpointState], n: int) -> list[str]:
    chosen = []
    for _ in range(n):
        endpoint = picker.pick()
        assert endpoint is not None
        chosen.append(endpoint.key)
    return chosen


def longest_runs(sequence: list[str]) -> dict[str, int]:
    runs: dict[str, int] = {}
    for key, group in itertools.groupby(sequence):
        runs[key] = max(runs.get(key, 0), len(list(group)))
    return runs


def test_swrr_matches_nginx_sequence() -> None:
    picker = wrr(endpoints({"a": 5, "b": 1, "c": 1}))
    assert picks(picker, 21) == list("aabacaa") * 3


@pytest.mark.parametrize(
    "weights",
    [{"a": 1, "b": 2, "c": 3}, {"a": 5, "b": 1, "c": 1}, {"a": 7, "b": 3, "c": 2, "d": 1}],
)
def test_swrr_shares_exact_per_cycle_and_runs_bounded_by_weight(weights: dict[str, int]) -> None:
    picker = wrr(endpoints(weights))
    total = sum(weights.values())
    sequence = picks(picker, total * 20)
    for cycle in range(20):
        assert Counter(sequence[cycle * total : (cycle + 1) * total]) == Counter(weights)
    for key, run in longest_runs(sequence).items():
        assert run <= weights[key]


def test_swrr_random_weights_never_exceed_weight_in_a_row() -> None:
    rng = random.Random(7)
    for _ in range(50):
        weights = {f"e{i}": rng.randint(1, 9) for i in range(rng.randint(2, 6))}
        sequence = picks(wrr(endpoints(weights)), sum(weights.values()) * 5)
        assert Counter(sequence) == Counter({k: w * 5 for k, w in weights.items()})
        for key, run in longest_runs(sequence).items():
            assert run <= weights[key]


def test_swrr_exclude_skips_endpoints() -> None:
    eps = endpoints({"a": 5, "b": 1})
    picker = wrr(eps)
    assert picks(picker, 1) == ["a"]
    chosen = picker.pick(exclude={eps[0]})
    assert chosen is eps[1]
    assert picker.pick(exclude={eps[0], eps[1]}) is None


def test_failures_lower_effective_weight_to_a_floor_and_successes_restore_it() -> None:
    config = BalancerConfig(eject_after_failures=100)
    (ep,) = endpoints({"a": 10}, config)
    ep.record_failure(0.0)
    assert ep.effective_weight == 5.0
    for _ in range(10):
        ep.record_failure(0.0)
    assert ep.effective_weight == pytest.approx(1.0)  # floor: 10% of the weight
    assert ep.health is Health.HEALTHY
    ep.record_success()
    assert ep.effective_weight == pytest.approx(2.0)  # +10% of the weight per success
    for _ in range(20):
        ep.record_success()
    assert ep.effective_weight == 10.0  # never above the configured weight


def test_lowered_weight_shifts_traffic_away() -> None:
    eps = endpoints({"a": 4, "b": 4}, BalancerConfig(eject_after_failures=100))
    eps[0].record_failure(0.0)
    eps[0].record_failure(0.0)  # effective 1 vs 4
    shares = Counter(picks(wrr(eps), 500))
    assert shares["a"] == 100
    assert shares["b"] == 400


def test_ejection_after_consecutive_failures_then_single_trial_call() -> None:
    clock = FakeClock()
    config = BalancerConfig(eject_after_failures=3, ejection_seconds=5, probe_weight_ratio=0.5)
    eps = endpoints({"a": 2, "b": 2, "c": 2}, config)
    picker = wrr(eps, clock)
    a = eps[0]
    assert not a.record_failure(clock.now)
    a.record_success()  # a success resets the consecutive count
    assert not a.record_failure(clock.now)
    assert not a.record_failure(clock.now)
    assert a.record_failure(clock.now)  # third consecutive failure ejects
    assert health_of(a) is Health.EJECTED
    assert "a" not in picks(picker, 60)

    clock.now += 5.0
    trial = picker.pick()
    assert trial is a
    assert health_of(a) is Health.PROBING
    assert "a" not in picks(picker, 30)  # one trial at a time

    assert a.record_success()
    assert health_of(a) is Health.HEALTHY
    assert a.effective_weight == 1.0  # half weight after the trial
    shares = Counter(picks(picker, 50))
    assert 0 < shares["a"] < shares["b"]
    for _ in range(5):
        a.record_success()
    assert a.effective_weight == 2.0


def test_failed_trial_ejects_again_for_twice_as_long() -> None:
    clock = FakeClock()
    config = BalancerConfig(eject_after_failures=1, ejection_seconds=2, max_ejection_seconds=5)
    eps = endpoints({"a": 1, "b": 1}, config)
    picker = wrr(eps, clock)
    a = eps[0]
    a.record_failure(clock.now)
    assert a.ejected_until == clock.now + 2
    clock.now += 2
    assert picker.pick() is a
    assert a.record_failure(clock.now)
    assert a.ejected_until == clock.now + 4
    clock.now += 4
    assert picker.pick() is a
    a.record_failure(clock.now)
    assert a.ejected_until == clock.now + 5  # capped


def test_abandoned_trial_leaves_endpoint_due_for_another_trial() -> None:
    clock = FakeClock()
    eps = endpoints({"a": 1, "b": 1}, BalancerConfig(eject_after_failures=1))
    picker = wrr(eps, clock)
    eps[0].record_failure(clock.now)
    clock.now += 60
    assert picker.pick() is eps[0]
    eps[0].record_abandoned()
    assert health_of(eps[0]) is Health.EJECTED
    assert picker.pick() is eps[0]


def test_all_ejected_still_picks_in_panic_mode() -> None:
    clock = FakeClock()
    eps = endpoints({"a": 1, "b": 1}, BalancerConfig(eject_after_failures=1))
    picker = wrr(eps, clock)
    for ep in eps:
        ep.record_failure(clock.now)
    assert Counter(picks(picker, 10)) == Counter({"a": 5, "b": 5})


def ring(
    eps: list[EndpointState], clock: FakeClock | None = None
) -> ConsistentHashRing[EndpointState]:
    hash_ring: ConsistentHashRing[EndpointState] = ConsistentHashRing(160, clock or FakeClock())
    hash_ring.set_endpoints(eps)
    return hash_ring


def owners(hash_ring: ConsistentHashRing[EndpointState], keys: list[bytes]) -> list[str]:
    result = []
    for key in keys:
        endpoint = hash_ring.pick(key)
        assert endpoint is not None
        result.append(endpoint.key)
    return result


def test_consistent_hash_is_stable_and_adding_a_node_moves_about_one_nth() -> None:
    keys = [f"user:{i}".encode() for i in range(20_000)]
    ten = endpoints({f"n{i}": 1 for i in range(10)})
    before = owners(ring(ten), keys)
    assert owners(ring(list(reversed(ten))), keys) == before  # order-independent
    assert max(Counter(before).values()) < 2 * len(keys) / 10  # reasonably even

    eleven = ten + endpoints({"n10": 1})
    after = owners(ring(eleven), keys)
    moved = [i for i in range(len(keys)) if before[i] != after[i]]
    assert all(after[i] == "n10" for i in moved)  # keys only move to the new node
    assert len(keys) / 11 * 0.6 < len(moved) < len(keys) / 11 * 1.4


def test_consistent_hash_skips_ejected_endpoint_and_takes_keys_back_after_trial() -> None:
    clock = FakeClock()
    config = BalancerConfig(eject_after_failures=1, ejection_seconds=1)
    eps = endpoints({"a": 1, "b": 1, "c": 1}, config)
    hash_ring = ring(eps, clock)
    keys = [f"k{i}".encode() for i in range(300)]
    before = owners(hash_ring, keys)
    a_keys = [k for k, owner in zip(keys, before, strict=True) if owner == "a"]
    eps[0].record_failure(clock.now)
    during = owners(hash_ring, keys)
    assert "a" not in during
    assert [o for o, b in zip(during, before, strict=True) if b != "a"] == [
        b for b in before if b != "a"
    ]
    clock.now += 1
    assert hash_ring.pick(a_keys[0]) is eps[0]  # the trial call
    eps[0].record_success()
    assert owners(hash_ring, keys) == before


def test_consistent_hash_exclude_walks_to_next_endpoint() -> None:
    eps = endpoints({"a": 1, "b": 1})
    hash_ring = ring(eps)
    first = hash_ring.pick(b"key")
    assert first is not None
    second = hash_ring.pick(b"key", exclude={first})
    assert second is not None
    assert second is not first
    assert hash_ring.pick(b"key", exclude=set(eps)) is None


def test_config_hash_key_sources() -> None:
    class Request:
        class Inner:
            id = 42

        inner = Inner()
        empty = ""

    by_meta = BalancerConfig(hash_metadata_key="x-user", hash_request_field="inner.id")
    assert by_meta.hash_key(Request(), [("x-user", "u1")]) == b"u1"
    assert by_meta.hash_key(Request(), [("other", "v")]) == b"42"
    assert BalancerConfig(hash_request_field="empty").hash_key(Request(), None) is None
    assert BalancerConfig(hash_request_field="missing").hash_key(Request(), None) is None
    with pytest.raises(ValueError, match="hash key source"):
        BalancerConfig(policy="consistent_hash")  # type: ignore[arg-type]


def test_hash_methods_name_the_hashed_methods_and_their_key_field() -> None:
    class Request:
        id = 7
        uid = 3

    config = BalancerConfig(policy=Policy.CONSISTENT_HASH, hash_methods={"/s.S/Get": "id"})
    assert config.hashes("/s.S/Get")
    assert not config.hashes("/s.S/List")
    assert config.hash_key(Request(), None, "/s.S/Get") == b"7"
    assert config.hash_key(Request(), None, "/s.S/List") is None
    assert config.hash_key(Request(), None) is None

    # A channel-wide key source still applies to the methods not named.
    both = BalancerConfig(
        policy=Policy.CONSISTENT_HASH, hash_methods={"/s.S/Get": "id"}, hash_request_field="uid"
    )
    assert both.hash_key(Request(), None, "/s.S/Get") == b"7"
    assert both.hash_key(Request(), None, "/s.S/List") == b"3"
    assert both.hashes("/s.S/List")
    assert not BalancerConfig().hashes("/s.S/Get")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hash_methods": {"/s.S/Get": "id"}}, "set policy to 'consistent_hash'"),
        ({"policy": Policy.CONSISTENT_HASH, "hash_methods": {"Get": "id"}}, "full method name"),
        ({"policy": Policy.CONSISTENT_HASH, "hash_methods": {"/s.S/Get": "a..b"}}, "field path"),
        ({"policy": Policy.CONSISTENT_HASH, "hash_methods": {"/s.S/Get": ""}}, "field path"),
        ({"policy": Policy.CONSISTENT_HASH, "hash_request_field": "x-y"}, "field path"),
    ],
)
def test_bad_hash_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BalancerConfig(**kwargs)


def test_idempotency_by_set_or_predicate() -> None:
    config = BalancerConfig(
        idempotent_methods=frozenset({"/s.S/Get"}),
        is_idempotent=lambda method: method.rsplit("/", 1)[-1].startswith("List"),
    )
    assert config.idempotent("/s.S/Get")
    assert config.idempotent("/s.S/ListAll")
    assert not config.idempotent("/s.S/Create")
