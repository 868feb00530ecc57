"""The process's side of the configuration centre: settings that follow etcd.

:class:`LiveSettings` holds the settings a process applies (:attr:`LiveSettings.current`):
its *base* settings (defaults < file < environment, read at start) with the live keys found
in etcd under ``/webook/config/<environment>/<service>/`` laid over them. It is a component
(``start``/``stop``): the :class:`~kit.grpcx.server.ServiceRunner` of a process with etcd
starts one before anything else, and the gateway runs one in its lifespan.

- **Start**: list the service's prefix, validate, apply; then watch it from the listing's
  revision + 1 (:class:`~kit.registry.etcd.PrefixWatch`, which resumes a broken watch
  without missing an event). A change is applied as soon as its watch event arrives; the
  keys of one transaction arrive together and are applied together.
- **Validation** before applying: the whole model is rebuilt from the base settings and the
  remote values (:func:`~kit.liveconfig.schema.overlay`). Invalid remote values are never
  applied: the last good settings stay, the error is logged with the keys and messages and
  counted, and ``webook_config_valid`` is 0 until valid values arrive. Keys that are not
  live settings of the process are ignored, with a warning, and counted.
- **Outage**: while etcd is unreachable the applied settings stay. Each apply that changed
  the remote values is copied to disk (:mod:`kit.liveconfig.disk_copy`); a process that
  cannot reach etcd within ``start_timeout_s`` at start applies that copy, and keeps trying
  etcd in the background: once back, the current values are applied.
- **Subscribers** (:meth:`LiveSettings.subscribe`) get ``(old, new)`` after each applied
  change, in order of subscription; one that fails is logged and the others still run.

Spans: ``config.apply`` around each apply. Metrics: :mod:`kit.liveconfig.metrics`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from pydantic import BaseModel

from kit.liveconfig import disk_copy, metrics
from kit.liveconfig.schema import (
    ConfigInvalid,
    decode_value,
    key_problem,
    live_fields,
    overlay,
    service_key_prefix,
)
from kit.logging import set_log_level
from kit.observability.tracing import set_trace_sample_ratio
from kit.registry.etcd import (
    EtcdLogin,
    EtcdRegistryConfig,
    PrefixWatch,
    cancel_and_wait,
    etcd_client,
)

logger = logging.getLogger(__name__)
TRACER_NAME = "webook.liveconfig"

T = TypeVar("T", bound=BaseModel)
Subscriber = Callable[[T, T], Awaitable[None] | None]

DEFAULT_START_TIMEOUT_S = 2.0


class LiveSettings(Generic[T]):
    """The applied settings of one process, following etcd (see the module docstring).

    Args:
        base: the settings read at start (defaults < file < environment).
        service: the service's name (the key segment and the metrics label).
        endpoint, username, password, environment, cache_dir: where and as whom to read;
            by default from ``base`` (``etcd_endpoints[0]``, ``etcd_username``,
            ``etcd_password``, ``config_environment``, ``config_cache_dir`` of
            :class:`kit.config.ClientSettings`).
        start_timeout_s: how long :meth:`start` waits for etcd before using the disk copy.
        backoff_initial_s / backoff_max_s: retry delays while etcd is unreachable.
    """

    def __init__(
        self,
        base: T,
        service: str,
        *,
        endpoint: str | None = None,
        username: str | None = None,
        password: str | None = None,
        environment: str | None = None,
        cache_dir: Path | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        rpc_timeout_s: float = 3.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 2.0,
    ) -> None:
        settings: Any = base
        if endpoint is None:
            endpoints = list(settings.etcd_endpoints)
            if not endpoints:
                raise ValueError("live settings need an etcd endpoint")
            endpoint = endpoints[0]
        if username is None:
            username = str(settings.etcd_username)
            password = settings.etcd_password.get_secret_value()
        self._settings_type: type[T] = type(base)
        live_fields(self._settings_type)  # refuses a secret declared live, at once
        self.base = base
        self.current: T = base
        self.version = 0
        self.service = service
        self.environment: str = environment or str(settings.config_environment)
        self._prefix = service_key_prefix(self.environment, service).encode()
        directory = Path(cache_dir if cache_dir is not None else settings.config_cache_dir)
        self.disk_copy_path = disk_copy.copy_path(directory, self.environment, service)
        self._config = EtcdRegistryConfig(
            endpoint=endpoint,
            username=username,
            password=password or "",
            rpc_timeout=rpc_timeout_s,
            backoff_initial=backoff_initial_s,
            backoff_max=backoff_max_s,
        )
        self._start_timeout_s = start_timeout_s
        self._subscribers: list[Subscriber[T]] = []
        self._tracer = trace.get_tracer(TRACER_NAME)
        # The remote map as etcd says (decoded values by key), the revision it reflects, and
        # whether it changed since the last apply.
        self._remote: dict[str, Any] = {}
        self._remote_revision = 0
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._applied_remote: dict[str, Any] | None = None
        self._saved: dict[str, Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: Any = None
        self._watch: PrefixWatch | None = None
        self._labels = {"service": service}
        metrics.VALID.labels(**self._labels).set(1)
        metrics.VERSION.labels(**self._labels).set(0)
        # Counters exported at 0 from the start, so that increase() sees the first failure.
        metrics.APPLY_FAILURES.labels(**self._labels)
        metrics.IGNORED_KEYS.labels(**self._labels)

    @property
    def synced(self) -> bool:
        """Whether the values etcd holds have been seen (listed) at least once."""
        return self._synced.is_set()

    @property
    def watching(self) -> bool:
        """Whether the watch on etcd is established right now."""
        return self._watch is not None and self._watch.watching

    def subscribe(self, callback: Subscriber[T]) -> None:
        """Call ``callback(old, new)`` (plain or ``async``) after each applied change."""
        self._subscribers.append(callback)

    async def start(self) -> None:
        """Apply what etcd holds (or, if it cannot be reached within ``start_timeout_s``, the
        disk copy), then follow etcd in the background."""
        if self._tasks:
            return
        self._client = etcd_client(self._config)
        self._watch = PrefixWatch(
            self._client,
            self._prefix,
            self._config,
            on_list=self._listed,
            on_event=self._changed,
            describe=lambda: {"config_service": self.service, "environment": self.environment},
            login=EtcdLogin(self._client, self._config),
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._watch.run(), name=f"live-settings-watch:{self.service}"),
            loop.create_task(self._apply_changes(), name=f"live-settings-apply:{self.service}"),
        ]
        try:
            await asyncio.wait_for(self._synced.wait(), self._start_timeout_s)
        except TimeoutError:
            await self._apply_disk_copy()

    async def stop(self) -> None:
        """Stop following etcd; the applied settings stay as they are. Idempotent."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        client, self._client = self._client, None
        if client is not None:
            try:
                await asyncio.wait_for(client.close(), self._config.rpc_timeout)
            except Exception as exc:
                logger.warning("closing the etcd client failed", extra={"error": repr(exc)})

    # --- etcd -> remote map ---------------------------------------------------------------

    def _key_name(self, key: bytes) -> str:
        return key[len(self._prefix) :].decode(errors="replace")

    def _listed(self, kvs: Sequence[Any], revision: int) -> None:
        self._remote = {self._key_name(bytes(kv.key)): decode_value(bytes(kv.value)) for kv in kvs}
        self._remote_revision = revision
        self._dirty.set()

    def _changed(self, event: Any) -> None:
        name = self._key_name(bytes(event.kv.key))
        if event.kind == "PUT":
            self._remote[name] = decode_value(bytes(event.kv.value))
        else:
            self._remote.pop(name, None)
        self._remote_revision = int(event.kv.mod_revision)
        # Applied by _apply_changes once the events of this watch response are all in: the
        # keys one transaction changed are applied together, never half of them.
        self._dirty.set()

    async def _apply_changes(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._apply(dict(self._remote), self._remote_revision, source="etcd")
            self._synced.set()

    async def _apply_disk_copy(self) -> None:
        if self._synced.is_set():
            return
        copy = disk_copy.load(self.disk_copy_path)
        logger.warning(
            "etcd unreachable at start; using the local copy of the settings"
            if copy is not None
            else "etcd unreachable at start and no local copy; using the base settings",
            extra={
                "config_service": self.service,
                "environment": self.environment,
                "path": str(self.disk_copy_path),
                "timeout_s": self._start_timeout_s,
            },
        )
        if copy is not None:
            await self._apply(copy.values, copy.version, source="disk copy")

    # --- remote map -> applied settings ----------------------------------------------------

    async def _apply(self, remote: Mapping[str, Any], revision: int, *, source: str) -> bool:
        """Validate ``remote`` over the base settings and apply it; ``False`` if invalid."""
        with self._tracer.start_as_current_span(
            "config.apply",
            attributes={
                "liveconfig.service": self.service,
                "liveconfig.environment": self.environment,
                "liveconfig.revision": revision,
                "liveconfig.source": source,
            },
        ) as span:
            ignored = {
                key: problem
                for key in remote
                if (problem := key_problem(self._settings_type, key)) is not None
            }
            if ignored:
                metrics.IGNORED_KEYS.labels(**self._labels).inc(len(ignored))
                logger.warning(
                    "ignoring settings in etcd that are not live",
                    extra={"config_service": self.service, "revision": revision, "keys": ignored},
                )
            live = {key: value for key, value in remote.items() if key not in ignored}
            try:
                new = overlay(self._settings_type, self.base, live)
            except ConfigInvalid as exc:
                metrics.APPLY_FAILURES.labels(**self._labels).inc()
                metrics.VALID.labels(**self._labels).set(0)
                span.set_status(Status(StatusCode.ERROR, "invalid configuration"))
                logger.error(
                    "invalid settings in etcd; keeping the last good ones",
                    extra={
                        "config_service": self.service,
                        "environment": self.environment,
                        "revision": revision,
                        "source": source,
                        "keys": sorted(exc.errors),
                        "errors": exc.errors,
                    },
                )
                return False
            old = self.current
            changed = {
                name: getattr(new, name)
                for name in sorted(live_fields(self._settings_type))
                if getattr(new, name) != getattr(old, name)
            }
            if changed:
                self.current = new
            self.version = revision
            self._applied_remote = live
            metrics.VALID.labels(**self._labels).set(1)
            metrics.VERSION.labels(**self._labels).set(revision)
            metrics.APPLIED_AT.labels(**self._labels).set(time.time())
            span.set_attribute("liveconfig.changed", sorted(changed))
            if changed:
                # Live settings are never secrets (live_fields refuses them): values may
                # be logged.
                logger.info(
                    "settings applied",
                    extra={
                        "config_service": self.service,
                        "environment": self.environment,
                        "revision": revision,
                        "source": source,
                        "changed": changed,
                    },
                )
            if source == "etcd":
                self._save(live, revision)
        if changed:
            await self._notify(old, new)
        return True

    def _save(self, live: dict[str, Any], revision: int) -> None:
        if self._saved is None:
            existing = disk_copy.load(self.disk_copy_path)
            self._saved = existing.values if existing is not None else {}
        if live == self._saved:
            return
        try:
            disk_copy.save(self.disk_copy_path, disk_copy.DiskCopy(revision, live))
        except OSError as exc:
            logger.warning(
                "cannot write the local copy of the settings",
                extra={"path": str(self.disk_copy_path), "error": repr(exc)},
            )
            return
        self._saved = live

    async def _notify(self, old: T, new: T) -> None:
        for callback in list(self._subscribers):
            try:
                result = callback(old, new)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "a subscriber of the live settings failed",
                    extra={"config_service": self.service, "subscriber": repr(callback)},
                )


def apply_observability(old: BaseModel, new: BaseModel) -> None:
    """Subscriber applying ``log_level`` and ``trace_sample_ratio`` (the live settings of
    :class:`kit.config.BaseServiceSettings`) to the running process when they changed."""
    level = getattr(new, "log_level", None)
    if isinstance(level, str) and level != getattr(old, "log_level", None):
        set_log_level(level)
    ratio = getattr(new, "trace_sample_ratio", None)
    if isinstance(ratio, float) and ratio != getattr(old, "trace_sample_ratio", None):
        set_trace_sample_ratio(ratio)


def live_settings_for(service: str, settings: T) -> LiveSettings[T] | None:
    """The live settings of a process whose ``settings`` name etcd endpoints, following its
    log level and trace sample ratio (:func:`apply_observability`); ``None`` without etcd.

    What a composition root that is not a :class:`~kit.grpcx.server.ServiceRunner` (the
    gateway) calls: start it before the components that read it, stop it last.
    """
    if not getattr(settings, "etcd_endpoints", None):
        return None
    live = LiveSettings(settings, service)
    live.subscribe(apply_observability)
    return live
