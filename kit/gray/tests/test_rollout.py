"""Rollouts and :class:`Gray` on in-memory settings: the same id on the same side, about
``percent`` of many ids on the new side, raising the percent only adds ids, 0 is none at
once, random draws, the allow-list, validation, metrics and span attributes."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from prometheus_client import REGISTRY
from pydantic import ValidationError

from kit.config import ClientSettings, Mode
from kit.gray import BUCKETS, FixedSettings, Gray, Rollout, bucket
from kit.liveconfig import ConfigInvalid, validate_changes

IDS = [f"user:{n}" for n in range(100_000)]


@dataclass
class Settings:
    """Stands for the live settings' ``current``: only the rollouts."""

    gray_rollouts: Mapping[str, Rollout] = field(default_factory=dict)


@dataclass
class Source:
    """A settings source whose ``current`` the test replaces, as a live change would."""

    current: Settings = field(default_factory=Settings)

    def set(self, **rollouts: Rollout) -> None:
        self.current = Settings(gray_rollouts=rollouts)


def new_ids(rollout: Rollout, name: str, ids: list[str]) -> set[str]:
    return {i for i in ids if rollout.side(name, i, random.random) == "new"}


@pytest.fixture
def name() -> str:
    """A rollout name of this test only (metrics are per rollout)."""
    return f"r-{uuid.uuid4().hex[:8]}"


def test_the_same_id_always_lands_on_the_same_side() -> None:
    rollout = Rollout(percent=37.5)
    first = [rollout.side("ranking", i, random.random) for i in IDS[:5000]]
    again = [rollout.side("ranking", i, random.random) for i in IDS[:5000]]
    assert first == again
    # The bucket is a function of the name and the id alone (no process salt): every
    # process and every restart agree.
    assert bucket("ranking", "user:42") == bucket("ranking", "user:42")
    assert all(0 <= bucket("ranking", i) < BUCKETS for i in IDS[:1000])
    assert bucket("ranking", 42) == bucket("ranking", "42")


@pytest.mark.parametrize("percent", [1.0, 10.0, 33.33, 50.0, 99.0])
def test_about_percent_of_many_ids_are_on_the_new_side(percent: float) -> None:
    share = len(new_ids(Rollout(percent=percent), "ranking", IDS)) / len(IDS) * 100
    assert abs(share - percent) <= 1.0


def test_raising_the_percent_only_adds_ids() -> None:
    sides = [new_ids(Rollout(percent=p), "ranking", IDS) for p in (0, 1, 10, 50, 100)]
    for smaller, larger in itertools.pairwise(sides):
        assert smaller <= larger
    assert (len(sides[0]), len(sides[-1])) == (0, len(IDS))


def test_rollouts_split_the_same_ids_independently() -> None:
    a = new_ids(Rollout(percent=50), "ranking", IDS)
    b = new_ids(Rollout(percent=50), "feed", IDS)
    # Independent halves overlap on about a quarter; the same split would overlap on half.
    assert abs(len(a & b) / len(IDS) - 0.25) <= 0.01


def test_zero_turns_the_new_path_off_at_once(name: str) -> None:
    source = Source()
    source.set(**{name: Rollout(percent=100)})
    gray = Gray(source)
    assert all(gray.is_new(name, i) for i in IDS[:2000])
    source.set(**{name: Rollout(percent=0)})
    assert not any(gray.is_new(name, i) for i in IDS[:2000])


def test_hundred_is_everyone_even_without_an_id(name: str) -> None:
    gray = Gray(FixedSettings(Settings({name: Rollout(percent=100)})))
    assert gray.is_new(name)
    assert not Gray(FixedSettings(Settings({name: Rollout(percent=0)}))).is_new(name)


def test_hash_mode_between_the_ends_needs_an_id(name: str) -> None:
    gray = Gray(FixedSettings(Settings({name: Rollout(percent=10)})))
    with pytest.raises(ValueError, match="needs a business id"):
        gray.is_new(name)


def test_random_mode_draws_each_decision(name: str) -> None:
    draws = iter([0.0999, 0.1, 0.5, 0.0])
    gray = Gray(
        FixedSettings(Settings({name: Rollout(mode="random", percent=10)})),
        draw=lambda: next(draws),
    )
    # The same id, four decisions: each follows its own draw.
    assert [gray.side(name, "user:1") for _ in range(4)] == ["new", "old", "old", "new"]


def test_random_mode_sends_about_percent_of_decisions(name: str) -> None:
    draw = random.Random(20).random
    gray = Gray(FixedSettings(Settings({name: Rollout(mode="random", percent=25)})), draw=draw)
    share = sum(gray.is_new(name) for _ in range(100_000)) / 1000
    assert abs(share - 25) <= 1.0


def test_allowed_ids_are_always_new(name: str) -> None:
    rollout = Rollout(percent=0, allow=frozenset({"user:7", "42"}))
    gray = Gray(FixedSettings(Settings({name: rollout})))
    assert gray.is_new(name, "user:7")
    assert gray.is_new(name, 42)
    assert not gray.is_new(name, "user:8")
    random_rollout = Rollout(mode="random", percent=0, allow=frozenset({"user:7"}))
    assert Gray(FixedSettings(Settings({name: random_rollout}))).is_new(name, "user:7")


def test_an_unset_rollout_runs_at_its_default_or_off(name: str) -> None:
    source = Source()
    gray = Gray(source, defaults={name: Rollout(percent=100)})
    assert gray.rollout(name) == Rollout(percent=100)
    assert gray.rollout("never-declared") == Rollout(percent=0)
    source.set(**{name: Rollout(percent=5)})
    assert gray.rollout(name).percent == 5


def _sample(metric: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def test_decisions_are_counted_by_side_and_the_percent_exported(name: str) -> None:
    source = Source()
    source.set(**{name: Rollout(percent=10)})
    gray = Gray(source)
    sides = [gray.side(name, i) for i in IDS[:10_000]]
    decisions = "webook_gray_decisions_total"
    assert _sample(decisions, {"rollout": name, "side": "new"}) == sides.count("new")
    assert _sample(decisions, {"rollout": name, "side": "old"}) == sides.count("old")
    assert _sample("webook_gray_percent", {"rollout": name}) == 10
    source.set(**{name: Rollout(percent=0)})
    gray.side(name, "user:1")
    assert _sample("webook_gray_percent", {"rollout": name}) == 0


def test_the_side_is_set_on_the_recording_span(name: str) -> None:
    tracer = TracerProvider().get_tracer("test")
    gray = Gray(FixedSettings(Settings({name: Rollout(percent=100)})))
    with tracer.start_as_current_span("request") as span:
        gray.side(name, "user:1")
    assert isinstance(span, ReadableSpan)
    assert span.attributes is not None
    assert span.attributes[f"webook.gray.{name}"] == "new"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"percent": -1}, "greater than or equal to 0"),
        ({"percent": 100.5}, "less than or equal to 100"),
        ({"percent": 1.005}, "finer than one basis point"),
        ({"mode": "sticky"}, "'hash' or 'random'"),
        ({"percent": 5, "groups": ["beta"]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_rollouts_are_refused(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rollout.model_validate(value)


def test_gray_rollouts_is_a_live_setting_validated_before_it_is_written() -> None:
    client_settings = ClientSettings(mode=Mode.TEST)
    good = {"search_affinity": {"percent": 1, "allow": ["user:7"]}}
    assert validate_changes(ClientSettings, client_settings, {}, {"gray_rollouts": good}) == {
        "gray_rollouts": good
    }
    for bad in (
        {"search_affinity": {"mode": "sticky", "percent": 1}},
        {"search_affinity": {"percent": 101}},
        {"bad name": {"percent": 1}},
    ):
        with pytest.raises(ConfigInvalid) as refused:
            validate_changes(ClientSettings, client_settings, {}, {"gray_rollouts": bad})
        assert set(refused.value.errors) == {"gray_rollouts"}
