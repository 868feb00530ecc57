"""Multicallables and call objects of :class:`~kit.balancer.channel.BalancedChannel`.

A unary-unary call runs as one task: pick an endpoint (by hash key for the methods the
configuration routes by hash), take a call slot on it, send, and on a failover code retry an
idempotent method on an endpoint not tried yet, within the caller's deadline and
``max_attempts``. The call object implements grpc.aio's unary call interface, so code
written against a plain channel (``await stub.Method(req)``, ``call.code()``) works
unchanged. There are no streaming calls: no proto declares a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, Protocol, cast

import grpc

from kit.balancer.config import BalancerConfig
from kit.balancer.subchannel import Subchannel

logger = logging.getLogger(__name__)

MetadataArg = grpc.aio.Metadata | Iterable[tuple[str, str | bytes]] | None
Serializer = Callable[[Any], bytes] | None
Deserializer = Callable[[bytes], Any] | None

_LOCAL_CANCELLATION = "Locally cancelled by application!"


class UnaryPolicy(Protocol):
    """Governance around a whole unary call (e.g. :class:`kit.governance.UnaryClientPolicy`).

    ``call`` runs ``run(timeout, metadata)`` (the attempts, with failover) once, or answers
    without it (a breaker fallback), and returns the response.
    """

    def call(
        self,
        full_method: str,
        request: Any,
        budget: float | None,
        metadata: MetadataArg,
        run: Callable[[float | None, MetadataArg], Awaitable[Any]],
    ) -> Awaitable[Any]:
        """Govern one logical call."""
        ...


class Router(Protocol):
    """What call objects need from the balanced channel."""

    @property
    def policy(self) -> UnaryPolicy | None:
        """Governance applied around every unary-unary call, if any."""
        ...

    @property
    def config(self) -> BalancerConfig:
        """The channel's configuration."""
        ...

    @property
    def hashing(self) -> bool:
        """Whether calls are routed by hash key."""
        ...

    def _pick(self, hash_key: bytes | None, exclude: set[Subchannel] | None) -> Subchannel | None:
        """Pick an endpoint, or ``None`` when none is left; raises once closed."""
        ...

    def _membership_change(self) -> asyncio.Future[None]:
        """A future resolved at the next change of endpoints (or when the channel closes)."""
        ...

    def _no_endpoint(self) -> grpc.aio.AioRpcError:
        """Count and build the UNAVAILABLE error for 'no endpoint'."""
        ...

    def _record(self, subchannel: Subchannel, code: grpc.StatusCode | None) -> None:
        """Feed a call's outcome (``None``: abandoned) to the endpoint's health."""
        ...

    def _record_success(self, subchannel: Subchannel) -> None:
        """Feed a successful call to the endpoint's health."""
        ...

    def _failed_over(self, code: grpc.StatusCode) -> None:
        """Count a failover after ``code``."""
        ...

    def _start_if_unawaited(self, call: BalancedUnaryUnaryCall) -> None:
        """Start ``call`` in a task two loop iterations on unless it is awaited by then."""
        ...

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task until done, so that closing the channel can end it."""
        ...


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """An :class:`grpc.aio.AioRpcError` raised by the balancer itself (no endpoint reached)."""
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


def _deadline_exceeded() -> grpc.aio.AioRpcError:
    return rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")


async def _wait_any(
    future: asyncio.Future[None], interrupt: asyncio.Future[None] | None, deadline: float | None
) -> None:
    """Wait until ``future`` or ``interrupt`` is done, or ``deadline`` (loop time) passes."""
    waiters = {future} if interrupt is None else {future, interrupt}
    timeout = None
    if deadline is not None:
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)


async def _wait_for_slot(
    subchannel: Subchannel, deadline: float | None, interrupt: asyncio.Future[None] | None
) -> None:
    """Queue for a call slot on ``subchannel`` (all taken) until ``deadline``."""
    waiter = subchannel.slots.wait()
    owned = False
    try:
        await _wait_any(waiter, interrupt, deadline)
        owned = waiter.done()
    finally:
        if not owned:
            subchannel.slots.abandon(waiter)
    if not owned:
        if interrupt is not None and interrupt.done():
            raise asyncio.CancelledError
        raise _deadline_exceeded()


async def _wait_for_endpoint(
    router: Router,
    hash_key: bytes | None,
    deadline: float | None,
    interrupt: asyncio.Future[None] | None,
) -> Subchannel | None:
    """Wait until an endpoint can be picked; ``None`` once ``deadline`` passed."""
    while True:
        subchannel = router._pick(hash_key, None)
        if subchannel is not None:
            return subchannel
        changed = router._membership_change()
        await _wait_any(changed, interrupt, deadline)
        if interrupt is not None and interrupt.done():
            raise asyncio.CancelledError
        if not changed.done():
            return None


def _endpoint_callable(subchannel: Subchannel, owner: _MultiCallable) -> Any:
    """The endpoint channel's unary multicallable for ``owner``'s method, created once."""
    target = subchannel.callables.get(owner)
    if target is None:
        extra = {"_registered_method": True} if owner.registered else {}
        target = subchannel.channel.unary_unary(
            owner.method, owner.serializer, owner.deserializer, **extra
        )
        subchannel.callables[owner] = target
    return target


class _MultiCallable:
    """Shared state of the balanced multicallables."""

    def __init__(
        self,
        router: Router,
        method: str,
        serializer: Serializer,
        deserializer: Deserializer,
        registered: bool,
    ) -> None:
        self.router = router
        self.method = method
        self.serializer = serializer
        self.deserializer = deserializer
        self.registered = registered
        self.idempotent = router.config.idempotent(method)
        # Whether this method's calls pick their endpoint by hash key.
        self.hashed = router.hashing and router.config.hashes(method)


class BalancedUnaryUnaryMultiCallable(_MultiCallable, grpc.aio.UnaryUnaryMultiCallable[Any, Any]):
    """``channel.unary_unary(...)`` of a balanced channel."""

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: MetadataArg = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> BalancedUnaryUnaryCall:
        return BalancedUnaryUnaryCall(
            self, request, timeout, metadata, credentials, wait_for_ready, compression
        )


_PENDING, _RUNNING, _DONE = 0, 1, 2


class BalancedUnaryUnaryCall(grpc.aio.UnaryUnaryCall[Any, Any]):
    """A unary call that may be sent to several endpoints in turn (failover).

    The attempts run inside the task that awaits the call, so the common
    ``await stub.Method(request)`` costs no extra task, nor do calls handed to
    ``asyncio.gather``, ``wait_for`` or ``create_task`` in the iteration they were made
    (those wrap the call in a task whose first step comes before the unawaited calls are
    started). Cancelling the awaiting task cancels the call, as with a plain channel. A
    call nobody awaits within two loop iterations (or whose status is asked for first)
    runs in a task of its own, so every call is sent without waiting for its caller.
    """

    def __init__(
        self,
        owner: BalancedUnaryUnaryMultiCallable,
        request: Any,
        timeout: float | None,
        metadata: MetadataArg,
        credentials: grpc.CallCredentials | None,
        wait_for_ready: bool | None,
        compression: grpc.Compression | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._owner = owner
        self._request = request
        self._metadata = metadata
        self._credentials = credentials
        self._wait_for_ready = wait_for_ready
        self._compression = compression
        self._deadline = None if timeout is None else loop.time() + timeout
        self._state = _PENDING
        self._task: asyncio.Task[None] | None = None
        self._attempt: grpc.aio.UnaryUnaryCall[Any, Any] | None = None
        self._response: Any = None
        self._error: Exception | None = None
        self._cancelled = False
        self._cancel_requested = False
        self._interrupt: asyncio.Future[None] | None = None
        self._finished: asyncio.Future[None] | None = None
        self._callbacks: list[Callable[[Any], None]] = []
        owner.router._start_if_unawaited(self)

    def __await__(self) -> Generator[Any, None, Any]:
        if self._state == _PENDING:
            self._state = _RUNNING
            return (yield from self._drive().__await__())
        return (yield from self._outcome().__await__())

    # -- driving ---------------------------------------------------------------------

    def _start_unawaited(self) -> None:
        """Run in a task of its own: nobody awaited the call in the iteration it was made."""
        if self._state == _PENDING:
            self._start_task()

    def _start_task(self) -> None:
        self._state = _RUNNING
        self._task = self._loop.create_task(self._drive_in_background())
        self._owner.router._track(self._task)

    async def _drive_in_background(self) -> None:
        # The outcome is kept on the call for whoever asks; the task itself holds none.
        with contextlib.suppress(Exception):
            await self._drive()

    async def _drive(self) -> Any:
        try:
            policy = self._owner.router.policy
            if policy is None:
                response = await self._attempts()
            else:
                response = await policy.call(
                    self._owner.method,
                    self._request,
                    self.time_remaining(),
                    self._metadata,
                    self._governed_attempts,
                )
        except asyncio.CancelledError:
            self._finish(None, None, cancelled=True)
            raise
        except Exception as exc:
            self._finish(None, exc, cancelled=False)
            raise
        self._finish(response, None, cancelled=False)
        return response

    async def _governed_attempts(self, budget: float | None, metadata: MetadataArg) -> Any:
        """The attempts, under the timeout and metadata the policy settled on."""
        self._deadline = None if budget is None else self._loop.time() + budget
        self._metadata = metadata
        return await self._attempts()

    def _interruption(self) -> asyncio.Future[None] | None:
        """What :meth:`cancel` resolves to stop a wait of an inline-driven call."""
        if self._task is not None:
            return None  # cancelling the task interrupts it
        if self._interrupt is None:
            self._interrupt = self._loop.create_future()
        return self._interrupt

    async def _attempts(self) -> Any:
        owner = self._owner
        router = owner.router
        config = router.config
        max_attempts = config.max_attempts if owner.idempotent else 1
        hash_key = (
            config.hash_key(self._request, self._metadata, owner.method) if owner.hashed else None
        )
        tried: set[Subchannel] | None = None
        last_error: grpc.aio.AioRpcError | None = None
        attempt = 0
        while True:
            subchannel = router._pick(hash_key, tried)
            if subchannel is None:
                if last_error is not None:
                    raise last_error
                if not self._wait_for_ready:
                    raise router._no_endpoint()
                subchannel = await _wait_for_endpoint(
                    router, hash_key, self._deadline, self._interruption()
                )
                if subchannel is None:
                    raise _deadline_exceeded()
            if not subchannel.slots.try_take():
                await _wait_for_slot(subchannel, self._deadline, self._interruption())
            try:
                if self._cancel_requested:
                    raise asyncio.CancelledError
                if subchannel.retired:
                    # The endpoint left while this call waited for a slot: pick again.
                    continue
                timeout = self.time_remaining()
                if timeout is not None and timeout <= 0:
                    raise last_error or _deadline_exceeded()
                attempt += 1
                call = _endpoint_callable(subchannel, owner)(
                    self._request,
                    timeout=timeout,
                    metadata=self._metadata,
                    credentials=self._credentials,
                    wait_for_ready=self._wait_for_ready,
                    compression=self._compression,
                )
                self._attempt = call
                try:
                    response = await call
                except grpc.aio.AioRpcError as error:
                    code = error.code()
                    router._record(subchannel, code)
                    if (
                        attempt >= max_attempts
                        or code not in config.failover_codes
                        or self._expired()
                    ):
                        raise
                    router._failed_over(code)
                    logger.debug(
                        "failing over",
                        extra={
                            "method": owner.method,
                            "endpoint": subchannel.label,
                            "code": code.name,
                            "attempt": attempt,
                        },
                    )
                    last_error = error
                    tried = tried or set()
                    tried.add(subchannel)
                    continue
                except asyncio.CancelledError:
                    router._record(subchannel, None)
                    raise
                router._record_success(subchannel)
                return response
            finally:
                subchannel.slots.release()

    def _finish(self, response: Any, error: Exception | None, *, cancelled: bool) -> None:
        self._state = _DONE
        self._response = response
        self._error = error
        self._cancelled = cancelled
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)
        for callback in self._callbacks:
            self._loop.call_soon(callback, self)
        self._callbacks.clear()

    def _expired(self) -> bool:
        return self._deadline is not None and self._loop.time() >= self._deadline

    async def _wait_done(self) -> None:
        if self._state == _PENDING:
            self._start_task()
        if self._state != _DONE:
            if self._finished is None:
                self._finished = self._loop.create_future()
            await asyncio.wait((self._finished,))

    async def _outcome(self) -> Any:
        await self._wait_done()
        if self._cancelled:
            raise asyncio.CancelledError
        if self._error is not None:
            raise self._error
        return self._response

    # -- grpc.aio.UnaryUnaryCall --------------------------------------------------------

    def cancelled(self) -> bool:
        if self._state != _DONE:
            return False
        error = self._error
        return self._cancelled or (
            isinstance(error, grpc.aio.AioRpcError) and error.code() is grpc.StatusCode.CANCELLED
        )

    def done(self) -> bool:
        return self._state == _DONE

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._loop.time())

    def cancel(self) -> bool:
        if self._state == _DONE:
            return False
        if self._state == _PENDING:
            self._finish(None, None, cancelled=True)
            return True
        if self._task is not None:
            return self._task.cancel()
        # Driven inside the awaiting task: stop whatever it is waiting for.
        self._cancel_requested = True
        if self._attempt is not None and not self._attempt.done():
            self._attempt.cancel()
        if self._interrupt is not None and not self._interrupt.done():
            self._interrupt.set_result(None)
        return True

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._state == _DONE:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._wait_done()
        if isinstance(self._error, grpc.aio.AioRpcError):
            return self._error.initial_metadata()
        if self._attempt is not None and not self._cancelled:
            return await self._attempt.initial_metadata()
        return grpc.aio.Metadata()

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._wait_done()
        if isinstance(self._error, grpc.aio.AioRpcError):
            return cast(grpc.aio.Metadata, self._error.trailing_metadata())
        if self._attempt is not None and not self._cancelled:
            return await self._attempt.trailing_metadata()
        return grpc.aio.Metadata()

    async def code(self) -> grpc.StatusCode:
        await self._wait_done()
        if self._cancelled:
            return grpc.StatusCode.CANCELLED
        if self._error is None:
            return grpc.StatusCode.OK
        if isinstance(self._error, grpc.aio.AioRpcError):
            return self._error.code()
        return grpc.StatusCode.UNKNOWN

    async def details(self) -> str:
        await self._wait_done()
        if self._cancelled:
            return _LOCAL_CANCELLATION
        if isinstance(self._error, grpc.aio.AioRpcError):
            return self._error.details() or ""
        return "" if self._error is None else repr(self._error)

    async def wait_for_connection(self) -> None:
        await self._wait_done()
        if self._cancelled:
            raise asyncio.CancelledError
        if self._error is not None:
            raise self._error
