"""In-process executors: async functions registered by name, and fencing for what they write.

A ``local`` job's config names a function of the :class:`ExecutorRegistry`
(``{"function": "ranking.refresh", ...}``); the scheduler calls it with a
:class:`RunContext` holding the run's **fencing token** (the job's version at the take) and
:meth:`RunContext.still_holder`, which asks the database whether the token is still current.

Asking is not enough to be safe: a holder may be paused right after the answer, lose its
lease, and write late. So whatever an executor changes should check the token *where the
change lands*: accept a write only if its token is at least the highest token seen for that
job, so a late writer with an older token is refused (:class:`StaleToken`). The scheduler
records such a run as ``fenced``. :class:`FencedStore` is that check for an in-process
resource, and the log that later proves "never twice at once" (docs/scheduler.md). The
``http`` and ``grpc`` executors (:mod:`services.scheduler.remote`) have the same signature
and raise :class:`StaleToken` when their callee refuses the token.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from services.scheduler.errors import Reason, SchedulerInvalidArgument

_FUNCTION_NAME: Final = re.compile(r"[A-Za-z_][\w.:-]{0,127}")


@dataclass(frozen=True, slots=True)
class RunContext:
    """What an executor receives for one run."""

    job_id: int
    job_name: str
    # The job's version at the take: higher than every earlier run's.
    token: int
    instance: str
    config: Mapping[str, Any]
    # When the run was due (ms); lateness is the start time minus this.
    scheduled_ms: int
    check_holder: Callable[[], Awaitable[bool]] = field(repr=False)

    async def still_holder(self) -> bool:
        """Whether this run's lease is still current (no other instance took the job)."""
        return await self.check_holder()


Executor = Callable[[RunContext], Coroutine[Any, Any, None]]
"""An in-process executor: raises to fail the run, :class:`StaleToken` when fenced."""


class StaleToken(Exception):
    """A write carried a token older than one already seen for the job: refused.

    ``highest`` is the highest token seen when the refusing resource says it (``None``
    when a remote callee refused without saying); ``detail`` adds what it answered.
    """

    def __init__(self, key: str, token: int, highest: int | None, *, detail: str = "") -> None:
        message = f"stale fencing token {token} for {key!r}"
        if highest is not None:
            message += f" (highest seen {highest})"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.key = key
        self.token = token
        self.highest = highest


class ExecutorRegistry:
    """The in-process executors of one scheduler process, by name."""

    def __init__(self) -> None:
        self._executors: dict[str, Executor] = {}

    def register(self, name: str, executor: Executor) -> None:
        """Make ``executor`` available as ``name`` (``ValueError`` if taken or malformed)."""
        if not _FUNCTION_NAME.fullmatch(name):
            raise ValueError(f"executor name {name!r} must be a word of at most 128 characters")
        if name in self._executors:
            raise ValueError(f"an executor named {name!r} is already registered")
        self._executors[name] = executor

    def get(self, name: str) -> Executor:
        """The executor called ``name``; ``SCHEDULER_UNKNOWN_EXECUTOR`` otherwise."""
        try:
            return self._executors[name]
        except KeyError:
            known = ", ".join(sorted(self._executors)) or "none"
            raise SchedulerInvalidArgument(
                Reason.UNKNOWN_EXECUTOR,
                f"no executor function named {name!r} (registered: {known})",
                metadata={"field": "executor_config"},
            ) from None

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._executors)


@dataclass(frozen=True, slots=True)
class FencedWrite:
    """One write a :class:`FencedStore` accepted."""

    key: str
    token: int
    value: object


class FencedStore:
    """A resource that accepts a write only with a token at least the highest seen per key.

    Equal tokens pass (one run may write several times); an older token raises
    :class:`StaleToken`. Single-threaded asyncio makes each :meth:`write` atomic. Every
    accepted write is kept in order, so a test can check that no two runs interleaved.
    """

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._log: list[FencedWrite] = []
        self.rejected = 0

    def write(self, key: str, token: int, value: object) -> None:
        """Record ``value`` under ``key`` if ``token`` is not stale; else :class:`StaleToken`."""
        highest = self._highest.get(key, 0)
        if token < highest:
            self.rejected += 1
            raise StaleToken(key, token, highest)
        self._highest[key] = token
        self._log.append(FencedWrite(key, token, value))

    def highest(self, key: str) -> int:
        """The highest token accepted for ``key`` (0 if none)."""
        return self._highest.get(key, 0)

    def writes(self, key: str) -> list[FencedWrite]:
        """The writes accepted for ``key``, in order."""
        return [entry for entry in self._log if entry.key == key]
