"""The server composer: every governance concern around a handler, in one scope per call.

:class:`GovernedServerInterceptor` is the one ``grpc.aio`` server interceptor of a service
process (``kit.grpcx.ServiceRunner`` installs it alone). Around each call it runs, outermost
first::

    tracing → metrics → authorization → shedding → rate limit → deadline
            → [inner interceptors] → error mapping

Tracing and metrics see every call, including the refused ones; the caller check
(:class:`kit.governance.authz.Authorizer`, installed only under TLS) refuses a caller the
method does not admit before anything else spends on it: a denied call never runs the
handler, takes no shedding slot and no rate-limit token, so a misbehaving peer cannot use up
the capacity left to the allowed ones; the shedder refuses before the rate limiter spends a
token; the error mapper (``kit.grpcx.errors.map_handler_error``)
turns a handler's exception into a status that everything outside sees. Interceptors a
service adds (sms's caller authentication) are given as ``inner`` and run between the
deadline and the error mapping, as they would in a ``grpc.aio`` chain.

Cost, the reason this is one interceptor: one wrapped handler per method, built on the first
call and reused while the server hands out the same handler object (registered services
always do); one plain ``__aenter__``/``__aexit__`` scope per call; per-method state (parsed
name, exemption, metric label children) computed once; spans built without the SDK while
nothing records them (:class:`kit.governance.tracing.Tracing`).

Health-check and reflection methods are counted in metrics and get the deadline but are
never traced, shed or rate limited. Unary-unary handlers are governed; the protos declare no
streaming RPC, so a streaming handler (the standard health service's ``Watch``, reflection)
is served as registered, without governance, apart from the caller check, which guards every
method.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import grpc
import grpc.aio
from opentelemetry.context import Context
from opentelemetry.trace import Span, TracerProvider

from kit.governance._rpc import (
    HandlerContinuation,
    MethodHandler,
    RpcMethod,
    ServerInterceptorBase,
    ServicerContext,
    is_exempt,
    parse_method,
    server_status,
)
from kit.governance.config import GovernanceConfig
from kit.governance.context import reset_deadline
from kit.governance.deadline import Deadlines
from kit.governance.metrics import GovernanceMetrics, MethodMetrics, default_metrics
from kit.governance.ratelimit import RateLimiter
from kit.governance.shedding import CpuReader, LoadShedder, SheddingConfig
from kit.governance.tracing import Tracing
from kit.ratelimit import Clock
from kit.security.identity import peer_identity

if TYPE_CHECKING:
    # Only a type here: importing kit.governance.authz at run time would load it before
    # ``python -m kit.governance.authz`` runs it (runpy warns of the double import).
    from kit.governance.authz import Authorizer, Rule

logger = logging.getLogger(__name__)

# Bound once: the scope calls them on every call.
_peer_identity = peer_identity
_enter_deadline = Deadlines.enter
_end_span = Tracing.end_server

ErrorMapper: TypeAlias = Callable[[Exception, ServicerContext, str], Any]
"""Coroutine function turning a handler's exception into ``context.abort(...)`` (must raise);
see ``kit.grpcx.errors.map_handler_error``."""


def _mapped(exc: BaseException | None) -> Exception | None:
    """The exception an error mapper gets: any but the ``AbortError`` of ``context.abort``."""
    if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
        return exc
    return None


class _Method:
    """What the scope needs about one method, computed once per method."""

    __slots__ = ("exempt", "metrics", "rpc", "rule")

    def __init__(self, rpc: RpcMethod, metrics: MethodMetrics | None, rule: Rule | None) -> None:
        self.rpc = rpc
        self.exempt = is_exempt(rpc.full)
        self.metrics = metrics
        # The caller check; None when every caller is admitted (no authorizer, or health).
        self.rule = rule


class _CallScope:
    """Everything the composer does around one execution of a handler, in order.

    With inner interceptors the error mapping is not here but inside them
    (:func:`_map_errors`): ``scope_mapper`` is then None.
    """

    __slots__ = (
        "_context",
        "_deadline",
        "_governor",
        "_method",
        "_shed",
        "_span",
        "_started",
        "_token",
    )
    _span: Span | None
    _started: float
    _token: Token[Context]

    def __init__(
        self, governor: GovernedServerInterceptor, method: _Method, context: ServicerContext
    ) -> None:
        self._governor = governor
        self._method = method
        self._context = context
        self._span = None
        self._shed = False
        self._deadline: Token[float | None] | None = None

    async def __aenter__(self) -> None:
        governor, method, context = self._governor, self._method, self._context
        metrics = governor.metrics
        if metrics is not None:
            metrics.server_in_flight.inc()
        self._started = time.perf_counter()
        exempt = method.exempt
        tracing = governor.tracing
        if tracing is not None and not exempt:
            self._span, self._token = tracing.start_server(method.rpc, context)
        try:
            rule = method.rule
            if rule is not None:
                identity = _peer_identity(context)
                if not rule.admits(identity):
                    await rule.refuse(context, identity)
            shedder = governor.shedder
            if shedder is not None and not exempt:
                if not shedder.enter():
                    await shedder.refuse(context, method.rpc)
                self._shed = True
            limiter = governor.limiter
            if limiter is not None and not exempt:
                bucket = limiter.bucket_for(method.rpc.full)
                if bucket is not None and not bucket.try_acquire():
                    await limiter.refuse(context, method.rpc, bucket)
            self._deadline = _enter_deadline(context)
        except BaseException as exc:
            # A refusal: the handler never runs, but metrics and the span see the status.
            self._release()
            self._finish(exc)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = exc
        try:
            if exc is not None:
                mapper = self._governor.scope_mapper
                unmapped = _mapped(exc)
                if mapper is not None and unmapped is not None:
                    try:
                        await mapper(unmapped, self._context, self._method.rpc.full)
                    except BaseException as mapped:
                        error = mapped
                        raise
        finally:
            self._release()
            self._finish(error)

    def _release(self) -> None:
        if self._deadline is not None:
            reset_deadline(self._deadline)
            self._deadline = None
        if self._shed:
            self._shed = False
            shedder = self._governor.shedder
            assert shedder is not None
            shedder.leave()

    def _finish(self, error: BaseException | None) -> None:
        code = server_status(self._context, error)
        metrics = self._governor.metrics
        if metrics is not None:
            metrics.server_in_flight.dec()
            recorder = self._method.metrics
            assert recorder is not None
            recorder.observe(code, time.perf_counter() - self._started)
        span = self._span
        if span is not None:
            self._span = None
            _end_span(span, self._token, code, error)


class GovernedServerInterceptor(ServerInterceptorBase):
    """Tracing, metrics, caller check, shedding, rate limits, deadline and error mapping.

    Args:
        config: which parts are on and their limits (``GovernanceConfig()`` if None).
        metrics: where to record (``default_metrics()`` if None).
        tracer_provider: for the SERVER spans (the global provider if None).
        error_mapper: the innermost step, turning a handler's exception into a status; None
            leaves exceptions as they are (UNKNOWN on the wire).
        inner: interceptors run inside the governance and outside the error mapping, in
            order (outermost first), as in a ``grpc.aio`` chain.
        cpu_reader: replaces the shedder's psutil reading (tests).
        clock: drives the rate limiter's token buckets (tests).
        authorizer: admits each call by the caller's workload identity (its verified client
            certificate); give one only when the server runs with TLS. None admits everyone
            (plaintext: development and unit tests).

    Call :meth:`aclose` (or ``aclose_interceptors``) after the server stopped: it stops the
    shedder's CPU sampler.
    """

    def __init__(
        self,
        config: GovernanceConfig | None = None,
        *,
        metrics: GovernanceMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
        error_mapper: ErrorMapper | None = None,
        inner: Sequence[ServerInterceptorBase] = (),
        cpu_reader: CpuReader | None = None,
        clock: Clock = time.monotonic,
        authorizer: Authorizer | None = None,
    ) -> None:
        config = config or GovernanceConfig()
        resolved = metrics or default_metrics()
        self.tracing = Tracing(tracer_provider) if config.tracing else None
        self.metrics = resolved if config.metrics else None
        self.shedder = (
            LoadShedder(config.shedding, metrics=resolved, cpu_reader=cpu_reader)
            if config.shedding.enabled
            else None
        )
        self.limiter = (
            RateLimiter(config.rate_limit, metrics=resolved, clock=clock)
            if config.rate_limit.limits_anything
            else None
        )
        self.error_mapper = error_mapper
        self.inner = tuple(inner)
        # With inner interceptors the mapping runs inside them (_map_errors), not in the scope.
        self.scope_mapper = None if self.inner else error_mapper
        # Full method -> (the handler the server gave, the handler wrapped around it).
        self._handlers: dict[str, tuple[MethodHandler, MethodHandler]] = {}
        self._mapped: dict[str, tuple[MethodHandler, MethodHandler]] = {}
        self._guarded: dict[str, tuple[MethodHandler, MethodHandler]] = {}
        self._ungoverned: set[str] = set()
        self.authorizer = authorizer

    def reconfigure_shedding(self, config: SheddingConfig) -> None:
        """Shed by ``config``'s limits from now on (live thresholds).

        Only the limits of a running shedder change: switching shedding on or off
        (``enabled``) needs a restart, since calls in flight hold slots of the shedder they
        entered. Such a change is logged and ignored.
        """
        if self.shedder is None or not config.enabled:
            if config.enabled != (self.shedder is not None):
                logger.warning(
                    "switching load shedding on or off needs a restart; limits unchanged",
                    extra={"enabled": config.enabled},
                )
            return
        if config != self.shedder.config:
            logger.info(
                "load shedding limits changed",
                extra={
                    "max_in_flight": config.max_in_flight,
                    "cpu_threshold": config.cpu_threshold,
                    "cpu_in_flight_floor": config.cpu_in_flight_floor,
                },
            )
            self.shedder.reconfigure(config)

    async def aclose(self) -> None:
        """Stop the shedder's CPU sampler."""
        if self.shedder is not None:
            await self.shedder.aclose()

    def _method(self, full: str) -> _Method:
        rpc = parse_method(full)
        metrics = None if self.metrics is None else self.metrics.server(rpc)
        rule = None if self.authorizer is None else self.authorizer.rule(full)
        return _Method(rpc, metrics, rule)

    async def intercept_service(  # type: ignore[override]  # grpc-stubs: continuation is async
        self, continuation: HandlerContinuation, handler_call_details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """The method's handler inside the governance scope (unary-unary handlers)."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method
        if handler.unary_unary is None:
            self._note_ungoverned(full)
            return self._guard_streaming(handler, full)
        if self.inner:
            handler = await self._through_inner(handler, handler_call_details)
            if handler is None or handler.unary_unary is None:
                return None if handler is None else self._guard_streaming(handler, full)
        cached = self._handlers.get(full)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if self.shedder is not None:
            # The CPU sampler starts with the first call (a running loop), not per call.
            self.shedder.start()
        wrapped = self._wrap(handler, self._method(full))
        self._handlers[full] = (handler, wrapped)
        return wrapped

    async def _through_inner(
        self, handler: MethodHandler, details: grpc.HandlerCallDetails
    ) -> MethodHandler | None:
        """``handler`` with the error mapping, then the inner interceptors, around it."""
        full = details.method
        mapper = self.error_mapper
        if mapper is not None:
            cached = self._mapped.get(full)
            if cached is not None and cached[0] is handler:
                handler = cached[1]
            else:
                mapped = _map_errors(handler, mapper, full)
                self._mapped[full] = (handler, mapped)
                handler = mapped
        return await _run_chain(self.inner, handler, details)

    def _guard_streaming(self, handler: MethodHandler, full: str) -> MethodHandler:
        """A streaming ``handler`` behind the caller check alone (as is if none applies)."""
        rule = None if self.authorizer is None else self.authorizer.rule(full)
        if rule is None:
            return handler
        cached = self._guarded.get(full)
        if cached is not None and cached[0] is handler:
            return cached[1]
        guarded = _guarded_streaming(handler, rule)
        self._guarded[full] = (handler, guarded)
        return guarded

    def _note_ungoverned(self, full: str) -> None:
        if full not in self._ungoverned and not is_exempt(full):
            self._ungoverned.add(full)
            logger.warning("streaming method served without governance", extra={"method": full})

    def _wrap(self, handler: MethodHandler, method: _Method) -> MethodHandler:
        """The same unary-unary handler, every execution run inside a :class:`_CallScope`."""
        unary: Callable[..., Any] | None = handler.unary_unary
        assert unary is not None
        behaviour = unary
        is_async = inspect.iscoroutinefunction(behaviour)

        async def unary_response(request: Any, context: ServicerContext) -> Any:
            async with _CallScope(self, method, context):
                result = behaviour(request, context)
                return await result if is_async or inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(
            unary_response, handler.request_deserializer, handler.response_serializer
        )


def _guarded_streaming(handler: MethodHandler, rule: Rule) -> MethodHandler:
    """The same streaming handler, the caller checked before its behaviour starts.

    The wrapper keeps the behaviour's shape, which ``grpc.aio`` inspects: a coroutine
    function (responses written with ``context.write``, as the health service's ``Watch``)
    stays one, anything else becomes an async generator (reflection).
    """
    deserializer, serializer = handler.request_deserializer, handler.response_serializer
    if handler.stream_unary is not None:
        unary_behaviour: Callable[..., Any] = handler.stream_unary

        async def unary_response(requests: Any, context: ServicerContext) -> Any:
            await rule.check(context)
            answer = unary_behaviour(requests, context)
            return await answer if inspect.isawaitable(answer) else answer

        return grpc.stream_unary_rpc_method_handler(unary_response, deserializer, serializer)

    behaviour: Callable[..., Any] | None = handler.unary_stream or handler.stream_stream
    assert behaviour is not None
    streams = behaviour

    if inspect.iscoroutinefunction(streams):

        async def written(request: Any, context: ServicerContext) -> None:
            await rule.check(context)
            await streams(request, context)

        guarded: Callable[..., Any] = written
    else:

        async def generated(request: Any, context: ServicerContext) -> AsyncIterator[Any]:
            await rule.check(context)
            responses = streams(request, context)
            if isinstance(responses, AsyncIterable):
                async for response in responses:
                    yield response
            else:
                for response in responses:
                    yield response

        guarded = generated
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(guarded, deserializer, serializer)
    return grpc.stream_stream_rpc_method_handler(guarded, deserializer, serializer)


def _map_errors(handler: MethodHandler, mapper: ErrorMapper, full: str) -> MethodHandler:
    """The innermost step alone, when inner interceptors sit between it and the scope."""
    unary: Callable[..., Any] | None = handler.unary_unary
    assert unary is not None
    behaviour = unary

    async def mapped(request: Any, context: ServicerContext) -> Any:
        try:
            answer = behaviour(request, context)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:
            unmapped = _mapped(exc)
            if unmapped is None:
                raise
            await mapper(unmapped, context, full)
            raise  # unreachable: the mapper aborts

    return grpc.unary_unary_rpc_method_handler(
        mapped, handler.request_deserializer, handler.response_serializer
    )


async def _run_chain(
    interceptors: Sequence[ServerInterceptorBase],
    handler: MethodHandler,
    details: grpc.HandlerCallDetails,
) -> MethodHandler | None:
    """What ``grpc.aio`` does with an interceptor list whose last continuation is ``handler``."""

    async def step(index: int, call_details: grpc.HandlerCallDetails) -> MethodHandler | None:
        if index == len(interceptors):
            return handler
        continuation = functools.partial(step, index + 1)
        return await interceptors[index].intercept_service(continuation, call_details)  # type: ignore[arg-type]  # grpc-stubs: continuation is async

    return await step(0, details)


@runtime_checkable
class _Closeable(Protocol):
    async def aclose(self) -> None: ...


async def aclose_interceptors(interceptors: Iterable[object]) -> None:
    """Stop the background work of the interceptors that have any (the CPU sampler)."""
    for interceptor in interceptors:
        if isinstance(interceptor, _Closeable):
            await interceptor.aclose()
