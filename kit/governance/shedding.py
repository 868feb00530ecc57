"""Adaptive load shedding on the server: refuse work early instead of queueing it.

A call is refused with RESOURCE_EXHAUSTED (and counted in
``webook_grpc_server_rejected_total{reason="shed"}``) before its handler runs when either

1. the server already executes ``max_in_flight`` calls (a hard bound on concurrency), or
2. the process is CPU-saturated (smoothed CPU usage ≥ ``cpu_threshold``) and already executes
   at least ``cpu_in_flight_floor`` calls.

Rule 2 is the adaptive part, in the spirit of kratos' BBR limiter: while the CPU has headroom,
concurrency costs nothing and only the hard bound applies; once the event loop is saturated,
each extra concurrent call only lengthens everybody's latency, so the server keeps a small
working set (the floor) and refuses the rest, which the client-side breakers and balancers can
send elsewhere. The floor keeps a hot but lightly loaded process serving.

CPU usage is this process's CPU time per wall-clock second (1.0 = one core busy; an asyncio
server is bound by its one event-loop thread), sampled by a background task every
``cpu_sample_interval`` seconds with psutil and smoothed with an exponentially weighted moving
average: requests never pay for sampling. The sampler starts on the first call (or ``start()``)
and is stopped by ``aclose()``. Health-check and reflection methods are never shed (the server
composer, :class:`kit.governance.GovernedServerInterceptor`, does not ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import grpc
import psutil

from kit.governance._rpc import RpcMethod, ServicerContext
from kit.governance.metrics import GovernanceMetrics, default_metrics

CpuReader: TypeAlias = Callable[[], float]
"""Returns the CPU usage since its previous call, in cores (1.0 = one core fully busy)."""


@dataclass(frozen=True, slots=True)
class SheddingConfig:
    """Load shedding limits; ``cpu_threshold=None`` disables the CPU rule.

    ``cpu_decay`` is the EWMA weight of the previous value: with the defaults the smoothed
    usage follows a step change with a time constant of about 2 s.
    """

    enabled: bool = True
    max_in_flight: int = 512
    cpu_threshold: float | None = 0.9
    cpu_in_flight_floor: int = 64
    cpu_sample_interval: float = 0.5
    cpu_decay: float = 0.8

    def __post_init__(self) -> None:
        """Validate the limits."""
        if self.max_in_flight < 1 or self.cpu_in_flight_floor < 0:
            raise ValueError("max_in_flight must be >= 1 and cpu_in_flight_floor >= 0")
        if self.cpu_sample_interval <= 0 or not (0 <= self.cpu_decay < 1):
            raise ValueError("cpu_sample_interval must be > 0 and 0 <= cpu_decay < 1")


def process_cpu_reader() -> CpuReader:
    """A reader of this process's CPU usage (psutil; the first reading is 0)."""
    process = psutil.Process()
    process.cpu_percent(interval=None)
    return lambda: process.cpu_percent(interval=None) / 100.0


class CpuSampler:
    """Keeps a smoothed CPU usage up to date from a background asyncio task."""

    def __init__(self, interval: float, decay: float, read: CpuReader | None = None) -> None:
        """Sample ``read`` (this process's CPU by default) every ``interval`` seconds."""
        self._interval = interval
        self._decay = decay
        self._read = read
        self._usage = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def usage(self) -> float:
        """The smoothed CPU usage, in cores."""
        return self._usage

    @property
    def running(self) -> bool:
        """Whether the sampling task is running."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start sampling in the running event loop (no-op if already started)."""
        if self._task is None:
            read = self._read or process_cpu_reader()
            # A fresh context: the first request's contextvars (trace, deadline) are not its own.
            self._task = asyncio.get_running_loop().create_task(
                self._run(read), name="webook-cpu-sampler", context=contextvars.Context()
            )

    async def _run(self, read: CpuReader) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self._usage = self._usage * self._decay + read() * (1.0 - self._decay)

    async def aclose(self) -> None:
        """Stop sampling and wait for the task to finish."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LoadShedder:
    """Admits calls while in-flight work and CPU leave room; refuses the rest.

    A call takes a slot with :meth:`enter` and gives it back with :meth:`leave`; a call that
    gets no slot is answered by :meth:`refuse` (RESOURCE_EXHAUSTED, counted).
    """

    def __init__(
        self,
        config: SheddingConfig | None = None,
        *,
        metrics: GovernanceMetrics | None = None,
        cpu_reader: CpuReader | None = None,
    ) -> None:
        """Shed by ``config``; ``cpu_reader`` replaces the psutil reading (tests)."""
        self._config = config or SheddingConfig()
        self._metrics = metrics or default_metrics()
        self._in_flight = 0
        self._sampler: CpuSampler | None = None
        if self._config.cpu_threshold is not None:
            self._sampler = CpuSampler(
                self._config.cpu_sample_interval, self._config.cpu_decay, cpu_reader
            )

    @property
    def config(self) -> SheddingConfig:
        """The limits in force."""
        return self._config

    def reconfigure(self, config: SheddingConfig) -> None:
        """Shed by ``config`` from now on (live thresholds); calls in flight keep their slot.

        Turning the CPU rule on starts a sampler (when an event loop runs, else at
        :meth:`start`); turning it off leaves a running sampler alone, unread. The sampling
        interval and decay of a running sampler stay as they were.
        """
        self._config = config
        if config.cpu_threshold is not None and self._sampler is None:
            self._sampler = CpuSampler(config.cpu_sample_interval, config.cpu_decay)
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return
            self._sampler.start()

    @property
    def in_flight(self) -> int:
        """Calls admitted by this shedder and still executing."""
        return self._in_flight

    @property
    def sampler(self) -> CpuSampler | None:
        """The CPU sampler (None when the CPU rule is disabled)."""
        return self._sampler

    @property
    def cpu_usage(self) -> float:
        """The smoothed CPU usage the CPU rule looks at (0 if the rule is disabled)."""
        return 0.0 if self._sampler is None else self._sampler.usage

    def start(self) -> None:
        """Start the CPU sampler now instead of on the first call."""
        if self._sampler is not None:
            self._sampler.start()

    async def aclose(self) -> None:
        """Stop the CPU sampler."""
        if self._sampler is not None:
            await self._sampler.aclose()

    def enter(self) -> bool:
        """Take an in-flight slot, unless one more call would be shed (then False)."""
        config, in_flight = self._config, self._in_flight
        if in_flight >= config.max_in_flight or (
            config.cpu_threshold is not None
            and in_flight >= config.cpu_in_flight_floor
            and self.cpu_usage >= config.cpu_threshold
        ):
            return False
        self._in_flight = in_flight + 1
        return True

    def leave(self) -> None:
        """Give back a slot taken by :meth:`enter`."""
        self._in_flight -= 1

    async def refuse(self, context: ServicerContext, method: RpcMethod) -> None:
        """Count the call as shed and abort it with RESOURCE_EXHAUSTED (always raises)."""
        self._metrics.count_rejected(method, "shed")
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED, f"server overloaded, {method.full} shed"
        )
