"""Endpoint pickers: smooth weighted round robin and a consistent-hash ring.

Both work on :class:`~kit.balancer.endpoint.EndpointState` objects shared with the
channel, honour ejection (skip ejected endpoints; the first pick after a cool-down is the
endpoint's single trial call) and take an ``exclude`` set for failover. When every
candidate is ejected they still pick one ("panic mode"): sending to a suspect endpoint beats
failing every call.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import time
from collections.abc import Callable, Sequence, Set
from typing import Generic, TypeVar

from kit.balancer.endpoint import EndpointState, Health

E = TypeVar("E", bound=EndpointState)

Clock = Callable[[], float]


class SmoothWeightedRoundRobin(Generic[E]):
    """nginx's smooth weighted round robin over effective weights.

    Each pick adds every candidate's effective weight to its current weight, chooses the
    largest current weight (first one on ties) and subtracts the total from it. Over
    ``sum(weights)`` picks each endpoint is chosen ``weight`` times, interleaved as evenly as
    possible ({a:5, b:1, c:1} gives ``a a b a c a a``).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._endpoints: list[E] = []

    @property
    def endpoints(self) -> tuple[E, ...]:
        """The candidates, in pick-priority order."""
        return tuple(self._endpoints)

    def set_endpoints(self, endpoints: Sequence[E]) -> None:
        """Replace the candidates (kept endpoints keep their current weights)."""
        self._endpoints = list(endpoints)

    def pick(self, exclude: Set[E] | None = None) -> E | None:
        """Choose an endpoint not in ``exclude``; ``None`` when there is none."""
        healthy = Health.HEALTHY
        best: E | None = None
        best_current = -math.inf
        total = 0.0
        trial: E | None = None
        for endpoint in self._endpoints:
            if endpoint.health is not healthy:
                if (
                    trial is None
                    and (exclude is None or endpoint not in exclude)
                    and endpoint.probe_due(self._clock())
                ):
                    trial = endpoint
                continue
            if exclude is not None and endpoint in exclude:
                continue
            effective = endpoint.effective_weight
            current = endpoint.current_weight + effective
            endpoint.current_weight = current
            total += effective
            if current > best_current:
                best = endpoint
                best_current = current
        if trial is not None:
            # The trial call replaces this round's weighted pick: undo the increments.
            for endpoint in self._endpoints:
                if endpoint.health is healthy and (exclude is None or endpoint not in exclude):
                    endpoint.current_weight -= endpoint.effective_weight
            trial.begin_probe()
            return trial
        if best is not None:
            best.current_weight = best_current - total
            return best
        return self._panic_pick(exclude)

    def _panic_pick(self, exclude: Set[E] | None) -> E | None:
        best: E | None = None
        total = 0.0
        for endpoint in self._endpoints:
            if exclude is not None and endpoint in exclude:
                continue
            endpoint.current_weight += endpoint.effective_weight
            total += endpoint.effective_weight
            if best is None or endpoint.current_weight > best.current_weight:
                best = endpoint
        if best is not None:
            best.current_weight -= total
        return best


def ring_hash(data: bytes) -> int:
    """64-bit hash used for ring points and keys (stable across processes and runs)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class ConsistentHashRing(Generic[E]):
    """A hash ring with ``virtual_nodes`` points per endpoint, placed by instance id.

    A key goes to the first endpoint clockwise from its hash, so adding or removing one of
    N endpoints moves only about 1/N of the keys, and every client process maps a key to the
    same instance. Unavailable endpoints are skipped clockwise (their keys move to the
    next endpoint while they are out). Weights are ignored by this policy.
    """

    def __init__(self, virtual_nodes: int = 160, clock: Clock = time.monotonic) -> None:
        if virtual_nodes < 1:
            raise ValueError("virtual_nodes must be >= 1")
        self._virtual_nodes = virtual_nodes
        self._clock = clock
        self._hashes: list[int] = []
        self._owners: list[E] = []
        self._count = 0
        self._points: dict[str, list[int]] = {}

    def set_endpoints(self, endpoints: Sequence[E]) -> None:
        """Rebuild the ring for ``endpoints`` (points of known ids are cached)."""
        points = sorted(
            (point, index)
            for index, endpoint in enumerate(endpoints)
            for point in self._points_of(endpoint.key)
        )
        self._points = {e.key: self._points[e.key] for e in endpoints}
        self._hashes = [point for point, _ in points]
        self._owners = [endpoints[index] for _, index in points]
        self._count = len(endpoints)

    def pick(self, key: bytes, exclude: Set[E] | None = None) -> E | None:
        """The endpoint owning ``key``, or the next available one clockwise."""
        size = len(self._hashes)
        if size == 0:
            return None
        start = bisect.bisect_left(self._hashes, ring_hash(key))
        owner = self._owners[start % size]
        if owner.health is Health.HEALTHY and (exclude is None or owner not in exclude):
            return owner
        seen: set[str] = set()
        fallback: E | None = None
        for offset in range(size):
            endpoint = self._owners[(start + offset) % size]
            if endpoint.key in seen:
                continue
            seen.add(endpoint.key)
            if exclude is None or endpoint not in exclude:
                if endpoint.health is Health.HEALTHY:
                    return endpoint
                if endpoint.probe_due(self._clock()):
                    endpoint.begin_probe()
                    return endpoint
                if fallback is None:
                    fallback = endpoint
            if len(seen) == self._count:
                break
        return fallback

    def _points_of(self, key: str) -> list[int]:
        points = self._points.get(key)
        if points is None:
            points = [ring_hash(f"{key}#{i}".encode()) for i in range(self._virtual_nodes)]
            self._points[key] = points
        return points
