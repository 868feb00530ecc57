"""Fixtures of the deployment checks: the observed stack, started once per module using it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.infra import private_broker
from tests.deploy import traffic
from tests.deploy.stack import ObservedStack, observed_stack


@pytest.fixture(scope="module")
def driven_stack(
    tmp_path_factory: pytest.TempPathFactory,
    infra_dir: Path,
) -> Iterator[ObservedStack]:
    """The observed stack after :func:`tests.deploy.traffic.drive`, freshly scraped; on a
    broker of its own (``devstack.infra.private_broker``)."""
    work = tmp_path_factory.mktemp("observed-stack")
    with (
        private_broker(work / "broker") as kafka_bootstrap,
        observed_stack(work, infra_dir, kafka_bootstrap) as stack,
    ):
        traffic.drive(stack)
        stack.prometheus.wait_for_scrapes_after(time.time(), len(stack.live_targets()))
        yield stack
