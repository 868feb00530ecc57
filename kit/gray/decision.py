"""The process's side of gray releases: :class:`Gray` decides, per request, from the live
settings.

The rollouts are the ``gray_rollouts`` live setting of :class:`kit.config.ClientSettings`
(rollout name -> :class:`~kit.gray.rollout.Rollout`), so an operator changes them with
``webookctl config set <service> gray_rollouts=...`` and every process of the service
applies the change as soon as its :class:`~kit.liveconfig.LiveSettings` does. :class:`Gray`
reads ``source.current.gray_rollouts`` at every decision and keeps nothing of it between
decisions: the decision after an applied change already follows it, and 0 turns a new path
off at once.

A rollout absent from the setting takes the default its code declared (``defaults``), else
0 %: the code that ships a new path says what it does before anyone configured it, and
removing the setting (``--unset gray_rollouts``) brings every rollout back to its default.

Each decision is counted (:mod:`kit.gray.metrics`) and, when a span is recording, set on it
as the attribute ``webook.gray.<rollout>`` (``new``/``old``), so a trace says which path the
request took. A change of the applied percent is logged once per process.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from typing import Protocol

from opentelemetry import trace
from prometheus_client import Counter

from kit.gray import metrics
from kit.gray.rollout import OFF, BusinessId, Rollout, Side

logger = logging.getLogger(__name__)


class HasRollouts(Protocol):
    """Settings carrying the rollouts (:class:`kit.config.ClientSettings` and subclasses)."""

    @property
    def gray_rollouts(self) -> Mapping[str, Rollout]:
        """Rollouts by name."""
        ...


class RolloutSource(Protocol):
    """Where the settings in force are read: a :class:`~kit.liveconfig.LiveSettings`, or
    :class:`FixedSettings` in a process without etcd."""

    @property
    def current(self) -> HasRollouts:
        """The settings in force now."""
        ...


class FixedSettings:
    """A :class:`RolloutSource` that never changes: the settings a process read at start
    (a process without etcd, whose settings are not live)."""

    def __init__(self, settings: HasRollouts) -> None:
        self._settings = settings

    @property
    def current(self) -> HasRollouts:
        """The settings given."""
        return self._settings


class Gray:
    """Decides which side of a rollout a request takes (see the module docstring).

    Args:
        source: the settings in force, read at each decision.
        defaults: the percent (a :class:`Rollout`) of each rollout the code ships, used
            while the setting does not name it.
        draw: a uniform draw in [0, 1) for random mode (``random.random``; tests pass their
            own).
    """

    def __init__(
        self,
        source: RolloutSource,
        *,
        defaults: Mapping[str, Rollout] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._source = source
        self._defaults = dict(defaults or {})
        self._draw = draw
        self._counters: dict[tuple[str, Side], Counter] = {}
        # The percent last exported per rollout: the gauge is written and the change logged
        # only when it moves, not at every decision.
        self._exported: dict[str, float] = {}

    def rollout(self, name: str) -> Rollout:
        """The rollout ``name`` as configured now (its default, or 0 %, when not set)."""
        configured = self._source.current.gray_rollouts.get(name)
        if configured is not None:
            return configured
        return self._defaults.get(name, OFF)

    def side(self, name: str, business_id: BusinessId | None = None) -> Side:
        """The side of ``business_id`` (hash mode: required) or of a random draw in rollout
        ``name``, counted and set on the current span."""
        rollout = self.rollout(name)
        side = rollout.side(name, business_id, self._draw)
        self._export(name, rollout)
        counter = self._counters.get((name, side))
        if counter is None:
            counter = metrics.DECISIONS.labels(rollout=name, side=side)
            self._counters[(name, side)] = counter
        counter.inc()
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(f"webook.gray.{name}", side)
        return side

    def is_new(self, name: str, business_id: BusinessId | None = None) -> bool:
        """Whether the request takes the new path of rollout ``name`` (:meth:`side`)."""
        return self.side(name, business_id) == "new"

    def _export(self, name: str, rollout: Rollout) -> None:
        before = self._exported.get(name)
        if before == rollout.percent:
            return
        self._exported[name] = rollout.percent
        metrics.PERCENT.labels(rollout=name).set(rollout.percent)
        logger.info(
            "gray rollout applied",
            extra={
                "rollout": name,
                "mode": rollout.mode,
                "percent": rollout.percent,
                "previous_percent": before,
                "allowed_ids": len(rollout.allow),
            },
        )
