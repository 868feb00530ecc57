"""etcd adapter of the registry port, built on ``aetcd`` (asyncio over grpc.aio).

Registration (:meth:`EtcdRegistry.register`): grant a lease of ``ttl`` seconds, put
``<prefix>/<service>/<instance-id>`` = JSON ``{addr, weight, zone, version}`` under it, then
refresh the lease every ``ttl/3`` in a background task. If a refresh reports the lease gone
(it expired during a partition, or etcd lost its data) the task grants a new lease and puts
the key again; while etcd is unreachable it retries with capped backoff. Deregistration
cancels that task and revokes the lease (which deletes the key) within
``deregister_timeout``; if etcd is down the key simply expires with its lease.

Discovery (:meth:`EtcdRegistry.discover`): list the service prefix, then watch it from the
list's revision + 1, applying PUT/DELETE events in order. A broken watch is resumed from the
last revision seen, so no event is missed; if that revision has been compacted, or etcd's
revision went backwards (rebuilt or restored), the prefix is listed again. Errors never
clear the known instances: while etcd is unreachable, clients keep the last known set and
reconnect with capped, jittered backoff.

Credentials (:attr:`EtcdRegistryConfig.username` / ``password``): with etcd's authentication
on, the client logs in when it connects and sends the token it gets with every request. A
token etcd no longer accepts (the member restarted, or a reconnection reached another
member, which never saw it) fails with UNAUTHENTICATED; the client then logs in again on
the same channel (calls in flight are left alone) and the operation is retried like any
other failure.

Shared with the other etcd users of the kit (:mod:`kit.liveconfig`): :func:`etcd_client`
(the channel options), :class:`EtcdLogin` (renewing a refused token) and
:class:`PrefixWatch` (list a prefix, then watch it, resuming without missing an event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aetcd
import grpc

from kit.registry.backoff import Backoff
from kit.registry.errors import InvalidInstanceError, RegistryError
from kit.registry.instances import InstanceSet
from kit.registry.model import DEFAULT_PREFIX, ServiceInstance, instance_key, service_prefix

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EtcdRegistryConfig:
    """Tunables of the etcd registry; every field has a production default.

    Attributes:
        endpoint: ``host:port`` of etcd's client URL (an ``http://`` scheme is accepted).
        prefix: key prefix of all services.
        ttl: lease time-to-live in whole seconds; an instance that stops refreshing
            disappears after at most this long. etcd rounds values below its minimum (about
            2 s by default) up.
        rpc_timeout: deadline of each etcd request.
        register_timeout: how long :meth:`EtcdRegistry.register` waits for the first write
            before returning anyway (registration then continues in the background).
        deregister_timeout: upper bound on :meth:`EtcdRegistry.deregister`.
        discover_timeout: how long :meth:`EtcdRegistry.discover` waits for the first listing.
        backoff_initial: first retry delay after an etcd error.
        backoff_max: retry delay cap (keepalive retries are also capped at ``ttl/3``).
        username / password: etcd user of this process when etcd's authentication is on;
            both or neither (empty: no login).
    """

    endpoint: str = "127.0.0.1:2379"
    prefix: str = DEFAULT_PREFIX
    ttl: int = 10
    rpc_timeout: float = 3.0
    register_timeout: float = 5.0
    deregister_timeout: float = 2.0
    discover_timeout: float = 3.0
    backoff_initial: float = 0.2
    backoff_max: float = 5.0
    username: str = ""
    password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if bool(self.username) != bool(self.password):
            raise ValueError("etcd username and password go together: set both or neither")
        if self.ttl < 1:
            raise ValueError("ttl must be >= 1 second")
        positive = {
            "rpc_timeout": self.rpc_timeout,
            "register_timeout": self.register_timeout,
            "deregister_timeout": self.deregister_timeout,
            "discover_timeout": self.discover_timeout,
            "backoff_initial": self.backoff_initial,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be >= backoff_initial")
        self.host_port()

    @property
    def refresh_interval(self) -> float:
        """Seconds between lease refreshes: a third of the TTL."""
        return self.ttl / 3

    def host_port(self) -> tuple[str, int]:
        """``endpoint`` split into host and port."""
        target = self.endpoint.split("://", 1)[-1].rstrip("/")
        host, sep, port = target.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"etcd endpoint must be host:port, got {self.endpoint!r}")
        return host, int(port)


def etcd_client(config: EtcdRegistryConfig) -> aetcd.Client:
    """An ``aetcd`` client for ``config``'s endpoint and user; it connects on first use.

    Create it inside the running event loop that will use it.
    """
    host, port = config.host_port()
    max_backoff_ms = int(config.backoff_max * 1000)
    options: dict[str, Any] = {
        # grpc's default reconnect backoff grows to 120 s; after an etcd restart we want
        # the channel back within our own backoff cap.
        "grpc.initial_reconnect_backoff_ms": min(1000, max_backoff_ms),
        "grpc.max_reconnect_backoff_ms": max_backoff_ms,
        # Detect a silently dead connection under a long-lived watch; etcd permits pings
        # every 5 s or slower.
        "grpc.keepalive_time_ms": 10_000,
        "grpc.keepalive_timeout_ms": 5_000,
    }
    return aetcd.Client(
        host,
        port,
        username=config.username or None,
        password=config.password or None,
        timeout=config.rpc_timeout,
        options=options,
    )


class EtcdLogin:
    """Renews the etcd login of one shared client when etcd refuses its token.

    ``aetcd`` logs in once, when it connects, and sends that token with every request and
    with the watch stream it re-creates. Closing the client to log in again would cancel
    every call in flight on the shared channel (grpc.aio raises ``CancelledError`` in each
    awaiting task), so the login is renewed in place: a new ``Authenticate`` on the same
    channel, and the new token handed to the client and its watcher. Every task that saw
    the refusal asks, but only the first one per token renews: ``generation`` tells whether
    the token the caller used has already been replaced.
    """

    def __init__(self, client: aetcd.Client, config: EtcdRegistryConfig) -> None:
        self._client = client
        self._config = config
        self._lock = asyncio.Lock()
        self.generation = 0

    @property
    def enabled(self) -> bool:
        """Whether the client logs in at all."""
        return bool(self._config.username)

    async def renew_if_refused(self, exc: BaseException, generation: int) -> None:
        """Log in again if ``exc`` is a refused token of login ``generation``.

        ``exc`` may come from an ``aetcd`` call or from a raw call on one of its stubs.
        """
        if not (self.enabled and _refused_token(exc)):
            return
        async with self._lock:
            if generation != self.generation:
                return
            logger.info("etcd refused the login token; logging in again")
            client: Any = self._client  # the token lives in aetcd's connection state
            if client.auth_stub is None:
                return  # not connected: the next call connects and logs in
            try:
                answer = await client.auth_stub.Authenticate(
                    aetcd.rpc.AuthenticateRequest(
                        name=self._config.username, password=self._config.password
                    ),
                    timeout=self._config.rpc_timeout,
                )
            except Exception as error:
                # etcd not back yet: the caller retries after its back-off and asks again.
                logger.info("etcd login failed; retrying", extra={"error": repr(error)})
                return
            client.metadata = (("token", answer.token),)
            if client._watcher is not None:
                client._watcher._metadata = client.metadata
            self.generation += 1


def _refused_token(exc: BaseException) -> bool:
    """Whether ``exc`` is etcd refusing the login token (through aetcd or a raw stub call)."""
    if isinstance(exc, aetcd.exceptions.UnauthenticatedError):
        return True
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() is grpc.StatusCode.UNAUTHENTICATED


class _Registration:
    """Book-keeping of one registered instance."""

    __slots__ = ("instance", "key", "lease_id", "task", "value", "written", "written_event")

    def __init__(self, instance: ServiceInstance, key: bytes) -> None:
        self.instance = instance
        self.key = key
        self.value = instance.encode_value()
        self.lease_id: int | None = None
        self.written = False
        self.written_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def update(self, instance: ServiceInstance) -> None:
        self.instance = instance
        self.value = instance.encode_value()
        self.written = False
        self.written_event = asyncio.Event()

    def log_extra(self, **more: object) -> dict[str, object]:
        return {
            "registry_service": self.instance.service,
            "instance_id": self.instance.instance_id,
            "addr": self.instance.addr,
            "lease_id": self.lease_id,
            **more,
        }


class EtcdRegistry:
    """:class:`~kit.registry.port.Registry` on etcd; one connection shared by all uses.

    Create it inside the running event loop of the process and close it on shutdown
    (``async with EtcdRegistry(config) as registry: ...``).
    """

    def __init__(self, config: EtcdRegistryConfig | None = None) -> None:
        self._config = config or EtcdRegistryConfig()
        self._client = etcd_client(self._config)
        self._login = EtcdLogin(self._client, self._config)
        self._registrations: dict[bytes, _Registration] = {}
        self._discoveries: list[EtcdDiscovery] = []
        self._closed = False

    @property
    def config(self) -> EtcdRegistryConfig:
        """The configuration in use."""
        return self._config

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def register(self, instance: ServiceInstance) -> None:
        """Announce ``instance`` under a lease kept alive until :meth:`deregister`.

        Call it once the server listens. Returns after the first successful write, or after
        ``register_timeout`` if etcd is unreachable; registration then keeps retrying in the
        background (logged). Registering the same instance id again updates its value.
        """
        self._check_open()
        key = instance_key(self._config.prefix, instance).encode()
        registration = self._registrations.get(key)
        if registration is None:
            registration = _Registration(instance, key)
            self._registrations[key] = registration
        else:
            await cancel_and_wait(registration.task)
            registration.update(instance)
        registration.task = asyncio.get_running_loop().create_task(
            self._keep_registered(registration), name=f"etcd-keepalive:{key.decode()}"
        )
        try:
            await asyncio.wait_for(registration.written_event.wait(), self._config.register_timeout)
        except TimeoutError:
            logger.error(
                "registration not written yet; retrying in the background",
                extra=registration.log_extra(timeout=self._config.register_timeout),
            )

    async def deregister(self, instance: ServiceInstance) -> None:
        """Withdraw ``instance``: stop refreshing and revoke its lease (deletes the key).

        Never raises for etcd errors and returns within about ``deregister_timeout``; if
        etcd is unreachable the key disappears when its lease expires.
        """
        key = instance_key(self._config.prefix, instance).encode()
        registration = self._registrations.pop(key, None)
        if registration is not None:
            await self._withdraw(registration)

    async def discover(self, service: str) -> EtcdDiscovery:
        """Start discovering ``service``; waits up to ``discover_timeout`` for the first list.

        The returned discovery keeps watching in the background until closed (closing the
        registry closes it too).
        """
        self._check_open()
        discovery = EtcdDiscovery(
            self._client, service, self._config, self._forget, login=self._login
        )
        self._discoveries.append(discovery)
        await discovery.start()
        return discovery

    async def close(self) -> None:
        """Deregister remaining instances, close discoveries and the etcd connection."""
        if self._closed:
            return
        self._closed = True
        registrations = list(self._registrations.values())
        self._registrations.clear()
        await asyncio.gather(*(self._withdraw(r) for r in registrations))
        for discovery in list(self._discoveries):
            await discovery.close()
        try:
            await asyncio.wait_for(self._client.close(), self._config.rpc_timeout)
        except Exception as exc:
            logger.warning("closing the etcd client failed", extra={"error": repr(exc)})

    def _check_open(self) -> None:
        if self._closed:
            raise RegistryError("the registry is closed")

    def _forget(self, discovery: EtcdDiscovery) -> None:
        if discovery in self._discoveries:
            self._discoveries.remove(discovery)

    async def _keep_registered(self, registration: _Registration) -> None:
        config = self._config
        backoff = Backoff(config.backoff_initial, min(config.backoff_max, config.refresh_interval))
        failing = False
        while True:
            generation = self._login.generation
            try:
                if registration.lease_id is None:
                    lease = await self._client.lease(config.ttl)
                    registration.lease_id = int(lease.id)
                if not registration.written:
                    try:
                        await self._client.put(
                            registration.key, registration.value, lease=registration.lease_id
                        )
                    except Exception:
                        # The lease may have expired meanwhile; a put under it would keep
                        # failing. A fresh one is cheap, the unused one simply expires.
                        registration.lease_id = None
                        raise
                    registration.written = True
                    registration.written_event.set()
                    logger.info("registered", extra=registration.log_extra(ttl=config.ttl))
                else:
                    reply = await self._client.refresh_lease(registration.lease_id)
                    if reply is None or reply.TTL <= 0:
                        logger.warning(
                            "lease lost; registering again", extra=registration.log_extra()
                        )
                        registration.lease_id = None
                        registration.written = False
                        continue
                if failing:
                    logger.info("etcd reachable again", extra=registration.log_extra())
                    failing = False
                backoff.reset()
                await asyncio.sleep(config.refresh_interval)
            except Exception as exc:
                # Log the first failure of an outage loudly, the retries quietly.
                logger.log(
                    logging.DEBUG if failing else logging.WARNING,
                    "keeping the registration alive failed; retrying",
                    extra=registration.log_extra(error=repr(exc)),
                )
                failing = True
                await self._login.renew_if_refused(exc, generation)
                await asyncio.sleep(backoff.next_delay())

    async def _withdraw(self, registration: _Registration) -> None:
        await cancel_and_wait(registration.task)
        registration.task = None
        lease_id = registration.lease_id
        if lease_id is None:
            return
        try:
            await asyncio.wait_for(
                self._client.revoke_lease(lease_id), self._config.deregister_timeout
            )
        except Exception as exc:
            logger.warning(
                "could not revoke the lease; the key expires with it",
                extra=registration.log_extra(error=repr(exc)),
            )
        else:
            logger.info("deregistered", extra=registration.log_extra())


class PrefixWatch:
    """The state of one etcd key prefix, listed and then watched, kept across outages.

    :meth:`run` lists the prefix (``on_list(kvs, revision)``), then watches it from the
    listing's revision + 1, handing each event to ``on_event`` in order. A broken watch is
    resumed from the last revision seen, so no event is missed; if that revision has been
    compacted, or etcd's revision went backwards (rebuilt or restored), the prefix is listed
    again. Errors never reach the callbacks: while etcd is unreachable the owner keeps what
    it has and the loop retries with capped, jittered backoff (logging the first failure of
    an outage as a warning, the retries at debug level). ``describe()`` gives the fields
    that name the owner in those log lines.
    """

    def __init__(
        self,
        client: aetcd.Client,
        prefix: bytes,
        config: EtcdRegistryConfig,
        *,
        on_list: Callable[[Sequence[Any], int], None],
        on_event: Callable[[Any], None],
        describe: Callable[[], dict[str, object]],
        login: EtcdLogin | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._config = config
        self._on_list = on_list
        self._on_event = on_event
        self._describe = describe
        self._login = login or EtcdLogin(client, EtcdRegistryConfig())
        self.revision = 0
        self.listed = asyncio.Event()
        self.watching = False
        self.failing = False

    async def run(self) -> None:
        """List and watch until cancelled; never raises for etcd errors."""
        backoff = Backoff(self._config.backoff_initial, self._config.backoff_max)
        must_list = True
        while True:
            generation = self._login.generation
            try:
                if not must_list and self.failing:
                    must_list = await self._revision_went_back()
                if must_list:
                    await self._list()
                    must_list = False
                await self._watch(backoff)
                # The server ended the watch without an error: resume after a pause.
                await asyncio.sleep(backoff.next_delay())
            except (aetcd.RevisionCompactedError, aetcd.WatchTimeoutError) as exc:
                logger.info(
                    "cannot resume the watch; listing the prefix again",
                    extra={**self._describe(), "revision": self.revision, "error": repr(exc)},
                )
                must_list = True
                await asyncio.sleep(backoff.next_delay())
            except Exception as exc:
                logger.log(
                    logging.DEBUG if self.failing else logging.WARNING,
                    "etcd unreachable; keeping the last known state",
                    extra={**self._describe(), "revision": self.revision, "error": repr(exc)},
                )
                self.failing = True
                await self._login.renew_if_refused(exc, generation)
                await asyncio.sleep(backoff.next_delay())

    async def _list(self) -> None:
        response = await self._client.get_prefix(self._prefix)
        self.revision = int(response.header.revision)
        self._on_list(list(response), self.revision)
        self.listed.set()

    async def _revision_went_back(self) -> bool:
        """Whether etcd's revision is below the last one seen (rebuilt or restored).

        Resuming a watch from a revision the cluster has not reached would silently miss
        every change until it does; a listing recovers the true state instead.
        """
        response = await self._client.get_prefix(self._prefix, keys_only=True)
        current = int(response.header.revision)
        if current >= self.revision:
            return False
        logger.warning(
            "etcd revision went backwards; listing the prefix again",
            extra={**self._describe(), "revision": self.revision, "current": current},
        )
        return True

    async def _watch(self, backoff: Backoff) -> None:
        watch = await self._client.watch_prefix(self._prefix, start_revision=self.revision + 1)
        self.watching = True
        backoff.reset()
        if self.failing:
            logger.info("watch resumed", extra={**self._describe(), "revision": self.revision})
            self.failing = False
        try:
            async for event in watch:
                self.revision = max(self.revision, int(event.kv.mod_revision))
                self._on_event(event)
        finally:
            self.watching = False
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), self._config.rpc_timeout)


class EtcdDiscovery(InstanceSet):
    """Live instances of one service, listed and then watched in etcd (:class:`PrefixWatch`).

    Obtain it from :meth:`EtcdRegistry.discover`; the snapshot is only ever replaced by
    what etcd says, never emptied because etcd is unreachable.
    """

    def __init__(
        self,
        client: aetcd.Client,
        service: str,
        config: EtcdRegistryConfig,
        on_close: Callable[[EtcdDiscovery], None],
        *,
        login: EtcdLogin | None = None,
    ) -> None:
        super().__init__(service)
        self._config = config
        self._on_close = on_close
        self._prefix = service_prefix(config.prefix, service).encode()
        self._mirror = PrefixWatch(
            client,
            self._prefix,
            config,
            on_list=self._replace_all,
            on_event=self._apply,
            describe=lambda: {"registry_service": self.service, "instances": len(self.instances())},
            login=login,
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def watching(self) -> bool:
        """Whether a watch is established right now (false while etcd is unreachable)."""
        return self._mirror.watching

    @property
    def revision(self) -> int:
        """The etcd revision the current snapshot reflects (0 before the first listing)."""
        return self._mirror.revision

    @property
    def listed(self) -> bool:
        """Whether the service prefix has been listed at least once."""
        return self._mirror.listed.is_set()

    async def start(self) -> None:
        """Start the list-and-watch loop; wait up to ``discover_timeout`` for the first list."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._mirror.run(), name=f"etcd-discovery:{self.service}"
        )
        try:
            await asyncio.wait_for(self._mirror.listed.wait(), self._config.discover_timeout)
        except TimeoutError:
            logger.warning(
                "service not listed yet; discovery continues in the background",
                extra={"registry_service": self.service, "timeout": self._config.discover_timeout},
            )

    async def close(self) -> None:
        """Stop watching; idempotent."""
        await cancel_and_wait(self._task)
        self._task = None
        self._on_close(self)
        self._close_instance_set()

    def _replace_all(self, kvs: Sequence[Any], revision: int) -> None:
        instances = []
        for kv in kvs:
            instance = self._decode(bytes(kv.key), bytes(kv.value))
            if instance is not None:
                instances.append(instance)
        changed = self.replace(instances)
        logger.info(
            "service listed",
            extra={
                "registry_service": self.service,
                "revision": revision,
                "instances": len(instances),
                "changed": changed,
            },
        )

    def _apply(self, event: Any) -> None:
        kv = event.kv
        key = bytes(kv.key)
        instance = None
        if event.kind == aetcd.EventKind.PUT:
            instance = self._decode(key, bytes(kv.value))
        if instance is not None:
            if self.upsert(instance):
                logger.info(
                    "instance up",
                    extra={
                        "registry_service": self.service,
                        "instance_id": instance.instance_id,
                        "addr": instance.addr,
                        "weight": instance.weight,
                    },
                )
            return
        instance_id = self._instance_id(key)
        if instance_id is not None and self.remove(instance_id):
            logger.info(
                "instance down",
                extra={"registry_service": self.service, "instance_id": instance_id},
            )

    def _instance_id(self, key: bytes) -> str | None:
        if not key.startswith(self._prefix):
            return None
        instance_id = key[len(self._prefix) :].decode(errors="replace")
        return instance_id if instance_id and "/" not in instance_id else None

    def _decode(self, key: bytes, value: bytes) -> ServiceInstance | None:
        instance_id = self._instance_id(key)
        if instance_id is None:
            return None
        try:
            return ServiceInstance.decode(self.service, instance_id, value)
        except InvalidInstanceError as exc:
            logger.warning(
                "ignoring a malformed registry value",
                extra={
                    "registry_service": self.service,
                    "key": key.decode(errors="replace"),
                    "error": str(exc),
                },
            )
            return None


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait for it to finish, without swallowing our own cancellation."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait((task,))
