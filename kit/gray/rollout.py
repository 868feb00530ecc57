"""What a rollout is and which side of it a business id or a random draw lands on.

A :class:`Rollout` sends a share of the traffic to a new path: ``percent`` of it, from 0 (the
new path is off) to 100 (it is on for everyone), in steps of one basis point (0.01 %).

- ``mode="hash"``: the side is a function of the business id (a user id, a reader key). The
  id is hashed with SHA-256 together with the rollout's name (``<name>:<id>``) into one of
  10 000 buckets, and the buckets below the threshold (``percent`` x 100, in basis points)
  are on the new side. So one id always lands on the same side, in every process and after
  every restart; raising the percent only adds ids to the new side (the buckets already
  below the threshold stay below it); and two rollouts split the users independently,
  because the name is part of what is hashed.
- ``mode="random"``: each decision is a fresh draw, on the new side with probability
  ``percent`` / 100; for paths where a caller may see both sides (a cache experiment, a
  sampled check).

``allow`` lists ids that are always on the new side, whatever the percent (the team's own
accounts at 0 %); it cannot force an id off. The names of rollouts are letters, digits,
``_``, ``.`` and ``-`` (they are metric labels).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

BUCKETS: Final = 10_000
"""Buckets of the hash, one per basis point: percent 1 is 100 buckets."""

RolloutName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""The name of a rollout: 1..64 letters, digits, ``_``, ``.`` or ``-``, first a letter or digit."""

Side = Literal["new", "old"]
"""Where a decision sends a request: the rolled-out path, or the one that was there before."""

BusinessId = str | int


class Rollout(BaseModel):
    """One rollout: how it splits (``mode``), how much goes new (``percent``), who is always
    new (``allow``). See the module docstring; unknown keys and bad values are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["hash", "random"] = "hash"
    percent: float = Field(default=0.0, ge=0.0, le=100.0)
    allow: frozenset[str] = frozenset()

    @field_validator("percent")
    @classmethod
    def _whole_basis_points(cls, value: float) -> float:
        # A finer value would be rounded silently; refusing it keeps what the operator wrote
        # and what the processes apply the same number.
        if abs(value * 100 - round(value * 100)) > 1e-6:
            raise ValueError(f"percent {value} is finer than one basis point (0.01)")
        return value

    @property
    def basis_points(self) -> int:
        """The threshold: how many of the :data:`BUCKETS` are on the new side."""
        return round(self.percent * 100)

    def side(self, name: str, business_id: BusinessId | None, draw: Callable[[], float]) -> Side:
        """The side of ``business_id`` (hash mode; required there) or of a draw of ``draw()``
        in [0, 1) (random mode); ids of ``allow`` are always new."""
        if business_id is not None and str(business_id) in self.allow:
            return "new"
        threshold = self.basis_points
        if threshold <= 0:
            return "old"
        if threshold >= BUCKETS:
            return "new"
        if self.mode == "random":
            return "new" if draw() * BUCKETS < threshold else "old"
        if business_id is None:
            raise ValueError(f"rollout {name!r} splits by hash and needs a business id")
        return "new" if bucket(name, business_id) < threshold else "old"


def bucket(name: str, business_id: BusinessId) -> int:
    """The bucket, in ``[0, BUCKETS)``, of ``business_id`` in rollout ``name``: the first 8
    bytes of SHA-256 of ``<name>:<id>``, modulo :data:`BUCKETS` (the bias of the modulo over
    2**64 values is far below one basis point)."""
    digest = hashlib.sha256(f"{name}:{business_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


OFF: Final = Rollout()
"""A rollout at 0 %: what an unknown rollout without a declared default is."""
