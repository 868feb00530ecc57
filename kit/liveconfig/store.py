"""The operator's side of the configuration centre: read, change, audit and restore.

:class:`ConfigStore` is what ``webookctl config`` runs on. Each change of a service's
settings in one environment is **one etcd transaction** that writes (or deletes) the
changed keys under ``/webook/config/<environment>/<service>/`` *and* the change record
``/webook/config-history/<environment>/<service>/<version:020d>`` (JSON: who, why, when,
the service's whole remote map before and after). Versions count the changes of one
service in one environment, from 1.

No lost update: a change reads the current map and the latest version together (one
read transaction), and its write transaction only succeeds if version + 1 is still free
and no key of the map was written since the read. When another change got in first, the
change is computed again on the new state (a ``set`` of some keys keeps the other
operator's keys), up to ``max_attempts`` times, then :class:`ConflictError`.

Who may write is enforced by etcd's roles (``devstack.credentials.etcd_grants``): only the
``config-operator`` user writes under ``/webook/config/`` and ``/webook/config-history/``;
every workload reads its own settings and nothing else.

Error tree::

    ConfigStoreError      etcd refused or could not be reached (wraps the etcd error)
    ├── ConflictError     concurrent changes won every attempt
    └── UnknownVersion    rollback to a version that was never recorded (also LookupError)

:class:`~kit.liveconfig.schema.ConfigInvalid` comes from the ``validate`` callback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import aetcd
import grpc
from aetcd import rpc

from kit.liveconfig.schema import (
    DELETE,
    decode_value,
    encode_value,
    history_key_prefix,
    service_key_prefix,
)
from kit.registry.etcd import EtcdLogin, EtcdRegistryConfig, etcd_client

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS: Final = 5

Validator = Callable[[dict[str, Any]], None]
"""Checks a service's whole remote map before it is written; raises ``ConfigInvalid``."""


class ConfigStoreError(RuntimeError):
    """etcd refused a configuration read or write, or could not be reached."""


class ConflictError(ConfigStoreError):
    """Other changes of the same settings kept getting in first."""


class UnknownVersion(ConfigStoreError, LookupError):
    """No change of that version was recorded."""


@dataclass(frozen=True)
class ChangeRecord:
    """One recorded change of a service's settings in one environment.

    ``before`` and ``after`` are the service's whole remote map (key → JSON value) around
    the change; ``revision`` is the etcd revision of the change's transaction (a process
    whose ``webook_config_version`` is at least this has seen it; 0 when not known).
    """

    version: int
    environment: str
    service: str
    who: str
    why: str
    at_ms: int
    before: dict[str, Any]
    after: dict[str, Any]
    revision: int = field(default=0, compare=False)

    def encode(self) -> bytes:
        """The JSON of the history key (the revision is the key's own)."""
        payload = asdict(self)
        del payload["revision"]
        return json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()

    @classmethod
    def decode(cls, raw: bytes, revision: int) -> ChangeRecord:
        """A record from its history key's value and ``mod_revision``."""
        payload = json.loads(raw)
        return cls(
            version=int(payload["version"]),
            environment=str(payload["environment"]),
            service=str(payload["service"]),
            who=str(payload["who"]),
            why=str(payload["why"]),
            at_ms=int(payload["at_ms"]),
            before=dict(payload["before"]),
            after=dict(payload["after"]),
            revision=revision,
        )


def _range_end(prefix: bytes) -> bytes:
    return bytes(aetcd.utils.prefix_range_end(prefix))


@dataclass(frozen=True)
class _Snapshot:
    """A service's remote map and latest version, read at one etcd revision."""

    values: dict[str, Any]
    version: int
    revision: int


class ConfigStore:
    """Reads and changes the remote settings in etcd; open it with :meth:`connect`."""

    def __init__(
        self,
        client: aetcd.Client,
        login: EtcdLogin,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._client = client
        self._login = login
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        endpoints: Sequence[str],
        *,
        username: str = "",
        password: str = "",
        timeout_s: float = 5.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> AsyncIterator[ConfigStore]:
        """A store on the first of ``endpoints`` (``host:port``), closed on exit."""
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        config = EtcdRegistryConfig(
            endpoint=endpoints[0],
            username=username,
            password=password,
            rpc_timeout=timeout_s,
        )
        client = etcd_client(config)
        try:
            yield cls(
                client, EtcdLogin(client, config), timeout_s=timeout_s, max_attempts=max_attempts
            )
        finally:
            try:
                await client.close()
            except Exception as exc:
                logger.warning("closing the etcd client failed", extra={"error": repr(exc)})

    async def get(self, environment: str, service: str) -> tuple[dict[str, Any], int]:
        """The service's remote values and the version of its latest change (0: none)."""
        snapshot = await self._snapshot(environment, service)
        return snapshot.values, snapshot.version

    async def set(
        self,
        environment: str,
        service: str,
        changes: Mapping[str, Any],
        *,
        who: str,
        why: str,
        validate: Validator | None = None,
    ) -> ChangeRecord:
        """Set keys (a JSON-able value) or remove them (:data:`DELETE`), as one change."""

        def after(current: dict[str, Any]) -> dict[str, Any]:
            result = dict(current)
            for key, value in changes.items():
                if value is DELETE:
                    result.pop(key, None)
                else:
                    result[key] = value
            return result

        return await self._change(environment, service, after, who=who, why=why, validate=validate)

    async def history(self, environment: str, service: str, limit: int = 20) -> list[ChangeRecord]:
        """The service's latest ``limit`` changes, newest first."""
        prefix = history_key_prefix(environment, service).encode()
        request = rpc.RangeRequest(
            key=prefix,
            range_end=_range_end(prefix),
            limit=max(limit, 0),
            sort_order=rpc.RangeRequest.DESCEND,
            sort_target=rpc.RangeRequest.KEY,
        )
        response = await self._call("Range", request)
        return [ChangeRecord.decode(kv.value, int(kv.mod_revision)) for kv in response.kvs]

    async def record(self, environment: str, service: str, version: int) -> ChangeRecord:
        """The change of ``version``; :class:`UnknownVersion` if none was recorded."""
        key = _history_key(environment, service, version)
        request = rpc.RangeRequest(key=key)
        response = await self._call("Range", request)
        if not response.kvs:
            raise UnknownVersion(f"{environment}/{service} has no change {version}")
        kv = response.kvs[0]
        return ChangeRecord.decode(kv.value, int(kv.mod_revision))

    async def rollback(
        self,
        environment: str,
        service: str,
        to_version: int,
        *,
        who: str,
        why: str,
        validate: Validator | None = None,
    ) -> ChangeRecord:
        """Restore exactly the remote map as it was after ``to_version``, as a new change."""
        target = (await self.record(environment, service, to_version)).after
        return await self._change(
            environment, service, lambda _: dict(target), who=who, why=why, validate=validate
        )

    async def diff(
        self, src_env: str, dst_env: str, service: str
    ) -> dict[str, tuple[Any | None, Any | None]]:
        """The keys whose values differ: ``key -> (value in src_env, value in dst_env)``,
        ``None`` where a key is absent."""
        src, _ = await self.get(src_env, service)
        dst, _ = await self.get(dst_env, service)
        return {
            key: (src.get(key), dst.get(key))
            for key in sorted(src.keys() | dst.keys())
            if src.get(key) != dst.get(key) or (key in src) != (key in dst)
        }

    async def copy(
        self,
        src_env: str,
        dst_env: str,
        service: str,
        *,
        who: str,
        why: str,
        validate: Validator | None = None,
    ) -> ChangeRecord:
        """Make ``dst_env``'s remote map of ``service`` exactly ``src_env``'s, as one change
        of ``dst_env`` (its record names the source in ``why`` as given)."""
        source, _ = await self.get(src_env, service)
        return await self._change(
            dst_env, service, lambda _: dict(source), who=who, why=why, validate=validate
        )

    # --- internals -----------------------------------------------------------------------

    async def _call(self, method: str, request: Any) -> Any:
        """One call of etcd's KV service (connecting first), logging in again once if the
        token was refused; etcd's errors become :class:`ConfigStoreError`.

        The raw stub, not aetcd's helpers: those offer no read limit, no range comparison
        and no reads inside a transaction.
        """
        for attempt in (1, 2):
            generation = self._login.generation
            try:
                await self._client.connect()
                stub = self._client.kvstub
                return await getattr(stub, method)(
                    request, timeout=self._timeout_s, metadata=self._client.metadata
                )
            except (grpc.aio.AioRpcError, aetcd.ClientError) as exc:
                if attempt == 1 and self._login.enabled:
                    await self._login.renew_if_refused(exc, generation)
                    if self._login.generation != generation:
                        continue
                raise ConfigStoreError(f"etcd refused the request: {_describe(exc)}") from exc
        raise AssertionError("unreachable")

    async def _snapshot(self, environment: str, service: str) -> _Snapshot:
        prefix = service_key_prefix(environment, service).encode()
        history = history_key_prefix(environment, service).encode()
        request = rpc.TxnRequest(
            success=[
                rpc.RequestOp(
                    request_range=rpc.RangeRequest(key=prefix, range_end=_range_end(prefix))
                ),
                rpc.RequestOp(
                    request_range=rpc.RangeRequest(
                        key=history,
                        range_end=_range_end(history),
                        limit=1,
                        sort_order=rpc.RangeRequest.DESCEND,
                        sort_target=rpc.RangeRequest.KEY,
                        keys_only=True,
                    )
                ),
            ]
        )
        response = await self._call("Txn", request)
        values_range, latest_range = (op.response_range for op in response.responses)
        values = {
            bytes(kv.key)[len(prefix) :].decode(errors="replace"): decode_value(kv.value)
            for kv in values_range.kvs
        }
        version = 0
        if latest_range.kvs:
            version = int(bytes(latest_range.kvs[0].key)[len(history) :].decode())
        return _Snapshot(values, version, int(response.header.revision))

    async def _change(
        self,
        environment: str,
        service: str,
        compute: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        who: str,
        why: str,
        validate: Validator | None,
    ) -> ChangeRecord:
        prefix = service_key_prefix(environment, service).encode()
        for attempt in range(1, self._max_attempts + 1):
            snapshot = await self._snapshot(environment, service)
            after = compute(dict(snapshot.values))
            if validate is not None:
                validate(dict(after))
            record = ChangeRecord(
                version=snapshot.version + 1,
                environment=environment,
                service=service,
                who=who,
                why=why,
                at_ms=int(time.time() * 1000),
                before=snapshot.values,
                after=after,
            )
            request = self._write_request(prefix, snapshot, record)
            response = await self._call("Txn", request)
            if response.succeeded:
                written = ChangeRecord(**{**asdict(record), "revision": response.header.revision})
                logger.info(
                    "configuration changed",
                    extra={
                        "environment": environment,
                        "config_service": service,
                        "version": written.version,
                        "revision": written.revision,
                        "who": who,
                        "why": why,
                        "keys": sorted(_changed_keys(snapshot.values, after)),
                    },
                )
                return written
            logger.info(
                "configuration changed meanwhile; trying again",
                extra={"environment": environment, "config_service": service, "attempt": attempt},
            )
        raise ConflictError(
            f"{environment}/{service}: other changes got in first {self._max_attempts} times; "
            "read the settings again and retry"
        )

    @staticmethod
    def _write_request(prefix: bytes, snapshot: _Snapshot, record: ChangeRecord) -> Any:
        history_key = _history_key(record.environment, record.service, record.version)
        compare = [
            # Nobody recorded this version meanwhile...
            rpc.Compare(
                key=history_key,
                result=rpc.Compare.EQUAL,
                target=rpc.Compare.CREATE,
                create_revision=0,
            ),
            # ...and no key of the map was written since the read (writes that bypass the
            # store included).
            rpc.Compare(
                key=prefix,
                range_end=_range_end(prefix),
                result=rpc.Compare.LESS,
                target=rpc.Compare.MOD,
                mod_revision=snapshot.revision + 1,
            ),
        ]
        ops = [
            rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=prefix + key.encode()))
            for key in sorted(snapshot.values.keys() - record.after.keys())
        ]
        ops += [
            rpc.RequestOp(
                request_put=rpc.PutRequest(key=prefix + key.encode(), value=encode_value(value))
            )
            for key, value in sorted(record.after.items())
            if key not in snapshot.values or snapshot.values[key] != value
        ]
        history = rpc.PutRequest(key=history_key, value=record.encode())
        ops.append(rpc.RequestOp(request_put=history))
        return rpc.TxnRequest(compare=compare, success=ops)


def _history_key(environment: str, service: str, version: int) -> bytes:
    return f"{history_key_prefix(environment, service)}{version:020d}".encode()


def _changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    return {
        key
        for key in before.keys() | after.keys()
        if key not in before or key not in after or before[key] != after[key]
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
