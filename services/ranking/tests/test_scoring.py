"""Unit tests of the hot score and the bounded top-K heap."""

from __future__ import annotations

import functools
import random

import pytest

from services.ranking.scoring import MS_PER_HOUR, TopK, hot_score, top_k


def test_the_score_is_the_documented_formula() -> None:
    assert hot_score(11, 2 * MS_PER_HOUR) == pytest.approx(10 / 4**1.5)
    assert hot_score(2, 0) == pytest.approx(1 / 2**1.5)


def test_unliked_articles_score_zero_not_a_negative_that_favours_old_ones() -> None:
    assert hot_score(0, 0) == 0.0
    assert hot_score(0, 1000 * MS_PER_HOUR) == 0.0
    assert hot_score(1, 5 * MS_PER_HOUR) == 0.0


def test_the_score_decays_with_age_and_grows_with_likes() -> None:
    assert hot_score(10, MS_PER_HOUR) > hot_score(10, 10 * MS_PER_HOUR)
    assert hot_score(10, MS_PER_HOUR) < hot_score(11, MS_PER_HOUR)
    # A fresh article with few likes overtakes a day-old one with many.
    assert hot_score(10, 0) > hot_score(50, 24 * MS_PER_HOUR)


def test_a_negative_age_from_clock_skew_counts_as_zero() -> None:
    assert hot_score(5, -10 * MS_PER_HOUR) == hot_score(5, 0)


def test_top_k_matches_a_full_sort_on_random_input() -> None:
    rng = random.Random(21)
    items = [(float(rng.randint(0, 50)), item_id, f"a{item_id}") for item_id in range(2000)]
    rng.shuffle(items)
    expected = sorted(items, key=lambda t: (t[0], t[1]), reverse=True)[:37]
    assert top_k(items, 37) == [(score, item) for score, _, item in expected]


def test_ties_are_broken_by_the_higher_id_whatever_the_arrival_order() -> None:
    items = [(1.0, 3, "c"), (1.0, 9, "i"), (2.0, 1, "a"), (1.0, 5, "e")]
    answers = set()
    for seed in range(20):
        shuffled = items[:]
        random.Random(seed).shuffle(shuffled)
        answers.add(tuple(top_k(shuffled, 3)))
    assert answers == {((2.0, "a"), (1.0, "i"), (1.0, "e"))}


def test_k_larger_than_n_keeps_everything_in_order() -> None:
    assert top_k([(1.0, 1, "x"), (3.0, 2, "y"), (2.0, 3, "z")], 10) == [
        (3.0, "y"),
        (2.0, "z"),
        (1.0, "x"),
    ]


def test_empty_input_gives_an_empty_ranking() -> None:
    assert top_k([], 5) == []
    assert TopK[str](5).best() == []


def test_the_heap_never_holds_more_than_k() -> None:
    keeper: TopK[int] = TopK(4)
    for item_id in range(100):
        keeper.offer(float(item_id % 7), item_id, item_id)
        assert len(keeper) <= 4
    assert keeper.offered == 100
    assert [item for _, item in keeper.best()] == [97, 90, 83, 76]


def test_items_are_never_compared_so_any_payload_works() -> None:
    class Opaque:
        """No ordering."""

    payloads = [Opaque() for _ in range(5)]
    ranked = top_k([(1.0, i, p) for i, p in enumerate(payloads)], 3)
    assert [item for _, item in ranked] == [payloads[4], payloads[3], payloads[2]]


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        TopK[int](0)


def test_offer_built_builds_only_what_it_keeps_and_ranks_as_offer() -> None:
    rng = random.Random(7)
    stream = [(float(rng.randint(0, 50)), item_id) for item_id in range(2000)]
    eager: TopK[str] = TopK(10)
    lazy: TopK[str] = TopK(10)
    built: list[int] = []

    def build(item_id: int) -> str:
        built.append(item_id)
        return f"article-{item_id}"

    for score, item_id in stream:
        eager.offer(score, item_id, f"article-{item_id}")
        lazy.offer_built(score, item_id, functools.partial(build, item_id))
    assert lazy.best() == eager.best()
    assert lazy.offered == eager.offered == 2000
    # every kept item was built once, and far fewer than all were built
    kept = {item for _, item in lazy.best()}
    assert kept <= {f"article-{item_id}" for item_id in built}
    assert len(built) == len(set(built)) < 200
