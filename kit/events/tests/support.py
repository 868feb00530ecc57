"""Helpers of the kit/events tests: unique names, fast test configurations, metric reads."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY

from kit.events import ConsumerConfig, ProducerConfig, TopicSpec


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def consumer_config(bootstrap: str, group: str, **overrides: Any) -> ConsumerConfig:
    """Short session and waits, so that joins and batches are quick in tests."""
    settings: dict[str, Any] = {
        "session_timeout_ms": 2000,
        "heartbeat_interval_ms": 500,
        "max_wait_s": 0.2,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.5,
        "lag_interval_s": 1.0,
        "topic_partitions": 2,
        "stop_timeout_s": 5.0,
        "metadata_max_age_ms": 2000,
    }
    settings.update(overrides)
    return ConsumerConfig(bootstrap=bootstrap, group_id=group, **settings)


def producer_config(bootstrap: str, *topics: str, **overrides: Any) -> ProducerConfig:
    """Short timeouts and backoffs for tests."""
    settings: dict[str, Any] = {
        "request_timeout_ms": 1500,
        "retry_backoff_s": 0.05,
        "retry_backoff_max_s": 0.5,
        "flush_timeout_s": 3.0,
    }
    settings.update(overrides)
    return ProducerConfig(
        bootstrap=bootstrap, topics=tuple(TopicSpec(t, 2) for t in topics), **settings
    )


def metric(name: str, **labels: str) -> float:
    """The current value of a sample in the default registry (0 if absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(
    condition: Callable[[], bool], within_s: float, interval: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds or ``within_s`` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(interval)
    return condition()
