"""The in-process executors every scheduler process registers (``local`` jobs name them).

- ``noop``: does nothing; a job that only proves the scheduler takes and releases it (a
  heartbeat of the scheduling itself, visible in the history and the metrics);
- ``log``: writes one INFO log line with the job, its fencing token and the config's
  ``message``; a job whose runs an operator can watch in the logs.

Services with real work register their own functions at wiring (``build_runner``'s
``executors``); these two keep a bare scheduler useful and testable.
"""

from __future__ import annotations

import logging
from typing import Final

from services.scheduler.executors import ExecutorRegistry, RunContext

logger = logging.getLogger(__name__)

NOOP: Final = "noop"
LOG: Final = "log"


async def noop(context: RunContext) -> None:
    """Do nothing: the run is recorded ``ok`` once the job was taken and released."""


async def log_line(context: RunContext) -> None:
    """Log that the job ran, with ``config["message"]`` (empty when absent)."""
    message = context.config.get("message", "")
    logger.info(
        "scheduled job ran",
        extra={
            "job": context.job_name,
            "token": context.token,
            "instance": context.instance,
            "scheduled_ms": context.scheduled_ms,
            "job_message": str(message),
        },
    )


def register_builtins(registry: ExecutorRegistry) -> ExecutorRegistry:
    """Register ``noop`` and ``log`` in ``registry``; returns it."""
    registry.register(NOOP, noop)
    registry.register(LOG, log_line)
    return registry
