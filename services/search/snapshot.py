"""A new replica starts from a peer's index instead of rebuilding it from the sources.

A replica on an empty volume used to rebuild its index from the article and user services,
which takes as long as reading the whole corpus. With this module it copies the committed
index of a running replica (a *snapshot*) together with the Kafka offsets that index had
consumed up to, and resumes the sync from there.

**Serving** (``SnapshotService`` RPCs, :class:`SnapshotService` behind them):

1. ``PrepareSnapshot`` first reads the committed offsets of this replica's sync consumer
   group (:class:`KafkaGroupOffsets`, without joining the group), **then** copies the
   committed index. The index commits a batch before the consumer commits its offsets, so
   everything before the offsets read is in any index committed after they were read: the
   copy holds at least every event before them (maybe a few after: applying those again
   is harmless, every change is versioned).
2. The copy (:class:`SnapshotStore`) needs no pause of the writers: tantivy never changes a
   segment file once written, and ``meta.json``, replaced atomically at each commit, names
   the segments (and deletion files) of the committed index. So the copy reads
   ``meta.json`` once, hard-links every file it names into ``snapshots/<id>/`` and writes
   the bytes it read as the copy's ``meta.json``. A background merge may delete files of
   the segments it replaced between the two steps; a missing file is noticed (every
   segment must have all its components) and the copy starts again from a fresh
   ``meta.json``. Hard links cost no space until the index moves on, and keep the files
   alive after tantivy deleted its own names for them. Holding the index writer's lock
   meanwhile would stop commits without making the copy any more consistent.
3. ``ReadSnapshot`` serves a file of the snapshot in chunks of at most
   ``snapshot_chunk_bytes``; only names listed in that snapshot's manifest are served
   (and only names of the shape of an index file: no directory part, no dot file).
4. A snapshot expires ``snapshot_ttl_seconds`` after it was prepared or last read; expired
   snapshots are deleted when one is prepared and every ``snapshot_cleanup_interval_seconds``
   (:class:`SnapshotJanitor`).

**Bootstrapping** (:func:`bootstrap_from_peer`, run before the index is opened): when the
data directory holds no index, the process finds the other search instances (static
``peers["search"]``, else the etcd registry), chooses one at random and calls it directly on
its address (over mutual TLS when the process has certificates, not through the balancer:
every call must reach the replica that holds the snapshot). It downloads the snapshot into
``incoming/``, checks every file's size and the index schema (this code's, or an older one
it can read: :data:`~services.search.index.READABLE_SCHEMA_VERSIONS`; such a copy is
migrated when the index is opened, like an old index on the replica's own volume),
commits the peer's offsets for the sync group of a **new** index id
(``search-indexer-<new id>``), then moves the copy into place under that id
(:meth:`~services.search.storage.DataDir.install_index`), so the consumer resumes where
the copy ends. The offsets cover every topic the peer consumes; a topic it did not consume
yet (a peer of an older version: the tag topic) has no offset in the new group, which then
reads it from its beginning (``auto_offset_reset``), so a copy without tags gains them back
from the topic. Any failure (no peer, a peer error, a short file, the broker) leaves the
data directory empty: the service then rebuilds from the source services as before, and
the log says why.

Errors of the RPCs (:mod:`services.search.errors`): a malformed snapshot id or file name
→ INVALID_ARGUMENT ``SEARCH_INVALID_DOCUMENT``; a negative position or size →
INVALID_ARGUMENT ``SEARCH_INVALID_PAGE``; an unknown or expired snapshot, or a file not in
it → NOT_FOUND ``SEARCH_INDEX_UNAVAILABLE``; offsets or index that cannot be read, or an
index still being rebuilt → UNAVAILABLE ``SEARCH_INDEX_UNAVAILABLE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol

import grpc
import tantivy
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from pydantic import BaseModel, Field, SecretStr

from kit.events import KafkaSecurity
from kit.grpcx.process import KafkaSettings
from kit.registry import EtcdRegistry, EtcdRegistryConfig, Registry
from kit.security.tls import ClientTls, TlsFiles, TlsSettings, mtls_channel_factory
from services.search import metrics
from services.search.errors import (
    Reason,
    SearchInvalidArgument,
    SearchNotFound,
    SearchUnavailable,
)
from services.search.events import DECODERS, sync_group
from services.search.index import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, build_schema
from services.search.storage import DataDir, new_index_id
from webook.search.v1 import search_pb2, search_pb2_grpc

logger = logging.getLogger(__name__)
TRACER_NAME = __name__

SERVICE: Final = "search"
META_FILE: Final = "meta.json"
MANIFEST_FILE: Final = "manifest.json"
# tantivy's ManagedDirectory lists here the files it may delete once unused; an installed
# copy gets one naming its files, or merges would never delete them.
MANAGED_FILE: Final = ".managed.json"
# The files tantivy writes for every segment (<segment id>.<component>), besides the
# deletion file of a segment with deleted documents (<segment id>.<opstamp>.del).
SEGMENT_COMPONENTS: Final = ("idx", "pos", "term", "store", "fast", "fieldnorm")
SYNC_TOPICS: Final = tuple(DECODERS)
_SNAPSHOT_ID: Final = re.compile(r"[0-9a-f]{32}")
# An index file name: letters, digits, dots, dashes, underscores; no directory part, no
# dot file (lock files, .managed.json), never "." or "..".
_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_STAGING_SUFFIX: Final = ".tmp"
_COPY_ATTEMPTS: Final = 5
_WRITE_BUFFER: Final = 1 << 20


class SnapshotSettings(BaseModel):
    """Settings of the replica bootstrap (a mixin of the search settings:
    ``WEBOOK_SEARCH_SNAPSHOT_BOOTSTRAP_ENABLED``, ...)."""

    # A replica starting on an empty data directory copies a peer's index when one answers
    # (else it rebuilds from the source services).
    snapshot_bootstrap_enabled: bool = True
    # Bytes per ReadSnapshot answer: the most a replica serves, and what a new one asks for
    # (below gRPC's 4 MiB message limit).
    snapshot_chunk_bytes: int = Field(default=1 << 20, ge=4096, le=3 << 20)
    # A snapshot is deleted this long after it was prepared or last read.
    snapshot_ttl_seconds: float = Field(default=600.0, ge=10)
    # How often expired snapshots are looked for (besides at each PrepareSnapshot).
    snapshot_cleanup_interval_seconds: float = Field(default=60.0, gt=0)
    # Deadline of each call to the peer and of each read or commit of Kafka offsets.
    snapshot_call_timeout_seconds: float = Field(default=30.0, gt=0)
    # The whole copy (discovery, download, offsets) must end within this long.
    snapshot_bootstrap_timeout_seconds: float = Field(default=1800.0, gt=0)


class SnapshotProcessSettings(KafkaSettings, TlsSettings, Protocol):
    """What serving and bootstrapping read from the process settings (the search settings
    with :class:`SnapshotSettings` among their bases)."""

    @property
    def snapshot_bootstrap_enabled(self) -> bool: ...
    @property
    def snapshot_chunk_bytes(self) -> int: ...
    @property
    def snapshot_ttl_seconds(self) -> float: ...
    @property
    def snapshot_call_timeout_seconds(self) -> float: ...
    @property
    def snapshot_bootstrap_timeout_seconds(self) -> float: ...
    @property
    def sync_group_prefix(self) -> str: ...
    @property
    def peers(self) -> Mapping[str, str]: ...
    @property
    def etcd_endpoints(self) -> Sequence[str]: ...
    @property
    def registry_prefix(self) -> str: ...
    @property
    def etcd_username(self) -> str: ...
    @property
    def etcd_password(self) -> SecretStr: ...
    @property
    def tls_reload_seconds(self) -> float: ...
    @property
    def grpc_host(self) -> str: ...
    @property
    def grpc_port(self) -> int: ...
    @property
    def advertise_host(self) -> str: ...


# -- the manifest ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartitionOffset:
    """The next offset a consumer group reads in one partition."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """A file of a snapshot (a name inside the index directory) and its size."""

    name: str
    size: int


@dataclass(frozen=True, slots=True)
class SnapshotManifest:
    """What a snapshot holds: its files and the offsets its index had consumed up to."""

    snapshot_id: str
    files: tuple[SnapshotFile, ...]
    offsets: tuple[PartitionOffset, ...]
    created_ms: int = 0

    def file(self, name: str) -> SnapshotFile | None:
        """The file ``name`` of the snapshot, if it has one."""
        return next((f for f in self.files if f.name == name), None)

    @property
    def total_bytes(self) -> int:
        """The size of every file together."""
        return sum(f.size for f in self.files)

    def check(self) -> None:
        """Raise :class:`SearchInvalidArgument` unless every id, name, size and offset is
        well formed, names are unique and ``meta.json`` is among the files (a manifest
        from a peer is checked before any file is written)."""
        check_snapshot_id(self.snapshot_id)
        names = [f.name for f in self.files]
        for file in self.files:
            check_file_name(file.name)
            if file.size < 0:
                raise _invalid_page(f"file {file.name} has a negative size", "size")
        if len(set(names)) != len(names):
            raise _invalid_document("a snapshot lists a file twice", "name")
        if META_FILE not in names:
            raise _invalid_document(f"a snapshot without {META_FILE}", "name")
        for offset in self.offsets:
            if not offset.topic or offset.partition < 0 or offset.offset < 0:
                raise _invalid_page(f"bad partition offset {offset}", "offsets")

    def to_json(self) -> str:
        """The manifest as stored beside the snapshot's files."""
        return json.dumps(
            {
                "snapshot_id": self.snapshot_id,
                "created_ms": self.created_ms,
                "files": [{"name": f.name, "size": f.size} for f in self.files],
                "offsets": [
                    {"topic": o.topic, "partition": o.partition, "offset": o.offset}
                    for o in self.offsets
                ],
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SnapshotManifest:
        """Parse :meth:`to_json`'s output; ``ValueError`` if it is not one."""
        try:
            raw = json.loads(text)
            return cls(
                snapshot_id=str(raw["snapshot_id"]),
                created_ms=int(raw["created_ms"]),
                files=tuple(SnapshotFile(str(f["name"]), int(f["size"])) for f in raw["files"]),
                offsets=tuple(
                    PartitionOffset(str(o["topic"]), int(o["partition"]), int(o["offset"]))
                    for o in raw["offsets"]
                ),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a snapshot manifest: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class PreparedSnapshot:
    """A snapshot ready to be read, until ``expires_at_ms`` unless read again."""

    manifest: SnapshotManifest
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """Bytes of a snapshot file; ``eof`` when they end it."""

    data: bytes
    eof: bool


def _invalid_document(message: str, field: str) -> SearchInvalidArgument:
    return SearchInvalidArgument(Reason.INVALID_DOCUMENT, message, metadata={"field": field})


def _invalid_page(message: str, field: str) -> SearchInvalidArgument:
    return SearchInvalidArgument(Reason.INVALID_PAGE, message, metadata={"field": field})


def _not_found(message: str) -> SearchNotFound:
    return SearchNotFound(Reason.INDEX_UNAVAILABLE, message)


def check_snapshot_id(snapshot_id: str) -> None:
    """Raise :class:`SearchInvalidArgument` unless ``snapshot_id`` has the shape of one."""
    if not _SNAPSHOT_ID.fullmatch(snapshot_id):
        raise _invalid_document(f"not a snapshot id: {snapshot_id[:64]!r}", "snapshot_id")


def check_file_name(name: str) -> None:
    """Raise :class:`SearchInvalidArgument` unless ``name`` is a plain index file name: no
    directory part, no dot file, nothing a path could climb out with."""
    if not _FILE_NAME.fullmatch(name) or ".." in name:
        raise _invalid_document(f"not a snapshot file name: {name[:64]!r}", "name")


def committed_files(meta: bytes, present: set[str]) -> list[str]:
    """The files of the committed index that ``meta`` (a ``meta.json``) describes, besides
    ``meta.json`` itself.

    Raises ``FileNotFoundError`` when one of them is not in ``present`` (the directory's
    names): a merge deleted the segments of an older ``meta.json``.
    """
    described = json.loads(meta)
    names: list[str] = []
    for segment in described["segments"]:
        prefix = uuid.UUID(segment["segment_id"]).hex
        names += [f"{prefix}.{component}" for component in SEGMENT_COMPONENTS]
        deletes = segment.get("deletes")
        if deletes:
            names.append(f"{prefix}.{int(deletes['opstamp'])}.del")
    missing = [name for name in names if name not in present]
    if missing:
        raise FileNotFoundError(f"index files gone: {missing[:3]}")
    return names


def index_schema(meta: bytes) -> Any:
    """The schema part of a ``meta.json``."""
    return json.loads(meta)["schema"]


def expected_schema(version: int = SCHEMA_VERSION) -> Any:
    """The schema a ``meta.json`` of an index of schema ``version`` (by default this code's)
    holds (an empty index is made in a temporary directory to learn it)."""
    with tempfile.TemporaryDirectory(prefix="search-schema-") as scratch:
        tantivy.Index(build_schema(version), path=scratch)
        return index_schema((Path(scratch) / META_FILE).read_bytes())


def readable_schemas() -> list[Any]:
    """The schemas of a peer's copy this code installs: its own and the older ones the
    index migrates when it opens them."""
    return [expected_schema(version) for version in READABLE_SCHEMA_VERSIONS]


# -- serving ---------------------------------------------------------------------------


class SnapshotStore:
    """The snapshots of one index, each in ``<root>/<snapshot id>/`` with its manifest.

    A snapshot expires ``ttl_s`` after its directory's modification time, which preparing
    it and every read set to now. All methods block (file system): call them in a thread.
    """

    def __init__(self, root: Path, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._ttl = ttl_s
        self._clock = clock

    def take(self, index_path: Path, offsets: Sequence[PartitionOffset]) -> PreparedSnapshot:
        """A consistent copy of the committed index in ``index_path`` (see the module
        docstring), recorded with ``offsets``.

        Raises :class:`SearchUnavailable` when the index cannot be read, or kept changing
        under every attempt.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        snapshot_id = uuid.uuid4().hex
        staging = self.root / f".{snapshot_id}{_STAGING_SUFFIX}"
        try:
            for _ in range(_COPY_ATTEMPTS):
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir()
                try:
                    files = self._link_committed(index_path, staging)
                except FileNotFoundError:
                    logger.info("index files changed while copying; copying again")
                    continue
                manifest = SnapshotManifest(
                    snapshot_id=snapshot_id,
                    files=tuple(files),
                    offsets=tuple(offsets),
                    created_ms=int(self._clock() * 1000),
                )
                (staging / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
                final = self.root / snapshot_id
                staging.rename(final)
                now = self._clock()
                os.utime(final, (now, now))
                return PreparedSnapshot(manifest, int((now + self._ttl) * 1000))
        except OSError as exc:
            raise SearchUnavailable(
                Reason.INDEX_UNAVAILABLE, f"the index could not be copied: {exc}"
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        raise SearchUnavailable(
            Reason.INDEX_UNAVAILABLE,
            f"the index changed under {_COPY_ATTEMPTS} copies in a row; try again",
        )

    @staticmethod
    def _link_committed(index_path: Path, into: Path) -> list[SnapshotFile]:
        meta = (index_path / META_FILE).read_bytes()
        names = committed_files(meta, set(os.listdir(index_path)))
        files: list[SnapshotFile] = []
        for name in names:
            target = into / name
            try:
                os.link(index_path / name, target)
            except FileNotFoundError:
                raise  # a merge deleted it since meta.json was read: the caller starts over
            except OSError:
                # No hard links here (another file system, a volume that refuses them): a
                # copy of an immutable file is as good, only slower.
                shutil.copyfile(index_path / name, target)
            files.append(SnapshotFile(name, target.stat().st_size))
        # The bytes read, not a link: meta.json is replaced by the next commit.
        (into / META_FILE).write_bytes(meta)
        files.append(SnapshotFile(META_FILE, len(meta)))
        return files

    def manifest(self, snapshot_id: str) -> SnapshotManifest:
        """The manifest of a live snapshot; :class:`SearchNotFound` if it is unknown or
        expired."""
        check_snapshot_id(snapshot_id)
        directory = self.root / snapshot_id
        try:
            if directory.stat().st_mtime + self._ttl < self._clock():
                raise _not_found(f"snapshot {snapshot_id} expired")
            return SnapshotManifest.from_json(
                (directory / MANIFEST_FILE).read_text(encoding="utf-8")
            )
        except (FileNotFoundError, ValueError) as exc:
            raise _not_found(f"no snapshot {snapshot_id} here") from exc

    def read(self, snapshot_id: str, name: str, offset: int, max_bytes: int) -> SnapshotChunk:
        """Up to ``max_bytes`` of file ``name`` of the snapshot from ``offset``; reading
        extends the snapshot's life by the TTL."""
        check_file_name(name)
        if offset < 0:
            raise _invalid_page(f"offset must not be negative, got {offset}", "offset")
        if max_bytes <= 0:
            raise _invalid_page(f"max_bytes must be positive, got {max_bytes}", "max_bytes")
        manifest = self.manifest(snapshot_id)
        listed = manifest.file(name)
        if listed is None:
            raise _not_found(f"snapshot {snapshot_id} has no file {name}")
        if offset > listed.size:
            raise _invalid_page(f"offset {offset} is past the end ({listed.size})", "offset")
        directory = self.root / snapshot_id
        try:
            with (directory / name).open("rb") as file:
                file.seek(offset)
                data = file.read(min(max_bytes, listed.size - offset))
            now = self._clock()
            os.utime(directory, (now, now))
        except FileNotFoundError as exc:
            raise _not_found(f"snapshot {snapshot_id} expired") from exc
        except OSError as exc:
            raise SearchUnavailable(
                Reason.INDEX_UNAVAILABLE, f"snapshot file {name} could not be read: {exc}"
            ) from exc
        return SnapshotChunk(data, offset + len(data) >= listed.size)

    def expire(self) -> int:
        """Delete expired snapshots and abandoned copies; returns how many."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return 0
        now = self._clock()
        removed = 0
        for entry in entries:
            is_snapshot = bool(_SNAPSHOT_ID.fullmatch(entry.name))
            is_staging = entry.name.startswith(".") and entry.name.endswith(_STAGING_SUFFIX)
            if not (is_snapshot or is_staging):
                continue
            try:
                expired = entry.stat().st_mtime + self._ttl < now
            except FileNotFoundError:
                continue
            if expired:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            logger.info("expired snapshots deleted", extra={"count": removed})
        return removed


class GroupOffsets(Protocol):
    """A consumer group's committed offsets, read and set from outside the group."""

    async def committed(self, group: str, topics: Sequence[str]) -> list[PartitionOffset]:
        """The committed offset of every partition of ``topics`` the group committed."""
        ...

    async def commit(self, group: str, offsets: Sequence[PartitionOffset]) -> None:
        """Commit ``offsets`` for ``group`` (a group no consumer has joined yet)."""
        ...


class KafkaGroupOffsets:
    """:class:`GroupOffsets` over Kafka: a consumer of the group that never subscribes,
    so it neither joins the group nor disturbs its members. A failure raises
    :class:`SearchUnavailable` (``SEARCH_INDEX_UNAVAILABLE``)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        security: KafkaSecurity | None = None,
        timeout_s: float = 30.0,
        client_id: str = "webook-search-snapshot",
    ) -> None:
        self._bootstrap = bootstrap
        self._security = security or KafkaSecurity()
        self._timeout = timeout_s
        self._client_id = client_id

    @classmethod
    def from_settings(cls, settings: SnapshotProcessSettings) -> KafkaGroupOffsets:
        """Offsets through the process's brokers, with its Kafka security."""
        return cls(
            settings.kafka_bootstrap,
            security=settings.kafka_security,
            timeout_s=settings.snapshot_call_timeout_seconds,
        )

    def _consumer(self, group: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=group,
            client_id=self._client_id,
            enable_auto_commit=False,
            request_timeout_ms=int(self._timeout * 1000),
            **self._security.client_options(),
        )

    async def committed(self, group: str, topics: Sequence[str]) -> list[PartitionOffset]:
        """The group's committed offsets in ``topics`` (partitions without one are left
        out: a consumer starts those from the beginning)."""
        consumer = self._consumer(group)
        try:
            async with asyncio.timeout(self._timeout):
                await consumer.start()
                # One metadata request names every topic's partitions.
                await consumer.topics()
                found: list[PartitionOffset] = []
                for topic in topics:
                    for partition in sorted(consumer.partitions_for_topic(topic) or ()):
                        offset = await consumer.committed(TopicPartition(topic, partition))
                        if offset is not None and offset >= 0:
                            found.append(PartitionOffset(topic, partition, offset))
                return found
        except (KafkaError, OSError, TimeoutError) as exc:
            raise _offsets_unavailable(group, exc) from exc
        finally:
            await _stop_quietly(consumer)

    async def commit(self, group: str, offsets: Sequence[PartitionOffset]) -> None:
        """Commit ``offsets`` for ``group``."""
        if not offsets:
            return
        consumer = self._consumer(group)
        try:
            async with asyncio.timeout(self._timeout):
                await consumer.start()
                wanted = {TopicPartition(o.topic, o.partition): o.offset for o in offsets}
                consumer.assign(list(wanted))
                await consumer.commit(wanted)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise _offsets_unavailable(group, exc) from exc
        finally:
            await _stop_quietly(consumer)


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    # The answer (or the error being raised) is what matters; a failing close is only noted.
    try:
        await consumer.stop()
    except Exception:
        logger.debug("closing a kafka offsets client failed", exc_info=True)


def _offsets_unavailable(group: str, exc: BaseException) -> SearchUnavailable:
    return SearchUnavailable(
        Reason.INDEX_UNAVAILABLE,
        f"the offsets of consumer group {group} could not be read or written: {exc!r}",
        metadata={"group": group},
    )


def _always_ready() -> bool:
    return True


class SnapshotService:
    """Prepares snapshots of this replica's index and serves their files.

    Args:
        store: where snapshots are kept.
        index_path: the committed index to copy.
        offsets: reads the sync group's committed offsets.
        group: this index's sync consumer group (``None``: no consumer, no offsets).
        topics: the topics the group consumes.
        chunk_bytes: the most one read returns.
        ready: whether the index is complete enough to be copied (``False`` while it is
            being rebuilt from the sources: a copy would miss what the rebuild has not
            reached yet).
    """

    def __init__(
        self,
        store: SnapshotStore,
        index_path: Path,
        offsets: GroupOffsets,
        *,
        group: str | None,
        topics: Sequence[str] = SYNC_TOPICS,
        chunk_bytes: int = 1 << 20,
        ready: Callable[[], bool] = _always_ready,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.store = store
        self._index_path = index_path
        self._offsets = offsets
        self._group = group
        self._topics = tuple(topics)
        self._chunk_bytes = chunk_bytes
        self._ready = ready
        self._tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)

    @classmethod
    def from_settings(
        cls,
        settings: SnapshotProcessSettings,
        data_dir: DataDir,
        *,
        group: str | None,
        ready: Callable[[], bool] = _always_ready,
    ) -> SnapshotService:
        """The service of the process's data directory and brokers."""
        return cls(
            SnapshotStore(data_dir.snapshots_path, ttl_s=settings.snapshot_ttl_seconds),
            data_dir.index_path,
            KafkaGroupOffsets.from_settings(settings),
            group=group,
            chunk_bytes=settings.snapshot_chunk_bytes,
            ready=ready,
        )

    async def prepare(self) -> PreparedSnapshot:
        """Read the group's offsets, then copy the committed index (in that order: see the
        module docstring). Raises :class:`SearchUnavailable` when either fails or the index
        is not ready to be copied."""
        with self._tracer.start_as_current_span("search.snapshot.prepare") as span:
            try:
                if not self._ready():
                    raise SearchUnavailable(
                        Reason.INDEX_UNAVAILABLE,
                        "this replica's index is being rebuilt; ask another replica",
                    )
                await asyncio.to_thread(self.store.expire)
                offsets = (
                    await self._offsets.committed(self._group, self._topics)
                    if self._group is not None
                    else []
                )
                prepared = await asyncio.to_thread(self.store.take, self._index_path, offsets)
            except Exception:
                metrics.SNAPSHOTS_SERVED.labels("error").inc()
                raise
            manifest = prepared.manifest
            span.set_attribute("search.snapshot.files", len(manifest.files))
            span.set_attribute("search.snapshot.bytes", manifest.total_bytes)
        metrics.SNAPSHOTS_SERVED.labels("ok").inc()
        logger.info(
            "snapshot prepared",
            extra={
                "snapshot_id": manifest.snapshot_id,
                "files": len(manifest.files),
                "bytes": manifest.total_bytes,
                "partitions": len(manifest.offsets),
                "group": self._group,
            },
        )
        return prepared

    async def read(self, snapshot_id: str, name: str, offset: int, max_bytes: int) -> SnapshotChunk:
        """Up to ``max_bytes`` (0: the chunk size; never more) of a snapshot's file."""
        if max_bytes == 0 or max_bytes > self._chunk_bytes:
            max_bytes = self._chunk_bytes
        chunk = await asyncio.to_thread(self.store.read, snapshot_id, name, offset, max_bytes)
        metrics.SNAPSHOT_BYTES.labels("sent").inc(len(chunk.data))
        return chunk


class SnapshotJanitor:
    """Deletes expired snapshots every ``interval_s`` (a runner component)."""

    def __init__(self, store: SnapshotStore, interval_s: float) -> None:
        self._store = store
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start looking in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="search-snapshot-janitor")

    async def stop(self) -> None:
        """Stop looking."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await asyncio.to_thread(self._store.expire)
            except Exception:
                logger.warning("deleting expired snapshots failed", exc_info=True)


# -- bootstrapping ---------------------------------------------------------------------


class PeerFinder(Protocol):
    """Where the other search instances are."""

    async def addresses(self) -> list[str]:
        """``host:port`` of every other instance known now."""
        ...


class RegistryPeers:
    """The search instances of the static ``peers["search"]`` list, else of the registry;
    ``exclude`` (this process's own address, when known in advance) is left out."""

    def __init__(
        self,
        *,
        static: str | None = None,
        registry: Callable[[], Registry] | None = None,
        exclude: str = "",
    ) -> None:
        self._static = static
        self._registry = registry
        self._exclude = exclude

    @classmethod
    def from_settings(cls, settings: SnapshotProcessSettings) -> RegistryPeers:
        """The peers the process's settings describe."""
        registry = None
        if settings.etcd_endpoints:
            config = EtcdRegistryConfig(
                endpoint=settings.etcd_endpoints[0],
                prefix=settings.registry_prefix,
                username=settings.etcd_username,
                password=settings.etcd_password.get_secret_value(),
            )

            def registry() -> Registry:
                return EtcdRegistry(config)

        own = ""
        if settings.grpc_port:
            own = f"{settings.advertise_host or settings.grpc_host}:{settings.grpc_port}"
        return cls(static=settings.peers.get(SERVICE), registry=registry, exclude=own)

    async def addresses(self) -> list[str]:
        """The instances known now (the registry's first listing)."""
        if self._static is not None:
            found = [a.strip() for a in self._static.split(",") if a.strip()]
        elif self._registry is not None:
            registry = self._registry()
            try:
                discovery = await registry.discover(SERVICE)
                found = [instance.addr for instance in discovery.instances()]
            finally:
                await registry.close()
        else:
            found = []
        return sorted({a for a in found if a != self._exclude})


class BootstrapOutcome(StrEnum):
    """How a start on an empty data directory went (the ``result`` label of the metric)."""

    PEER = "peer"
    """The index was copied from a peer."""
    REBUILD = "rebuild"
    """Nothing to copy from (disabled, no peer, an empty peer): rebuild from the sources."""
    FAILED = "failed"
    """A peer's copy failed: rebuild from the sources."""
    SKIPPED = "skipped"
    """The data directory already holds an index: nothing to do (not counted)."""


@dataclass(frozen=True, slots=True)
class BootstrapResult:
    """What :func:`bootstrap_from_peer` did, and why."""

    outcome: BootstrapOutcome
    reason: str
    peer: str = ""
    index_id: str = ""
    bytes_copied: int = 0

    @property
    def rebuild_needed(self) -> bool:
        """Whether the index must be rebuilt from the source services."""
        return self.outcome in (BootstrapOutcome.REBUILD, BootstrapOutcome.FAILED)


class _CopyFailed(Exception):
    """A peer's snapshot could not be copied (the message says why)."""


class SnapshotPeer:
    """One peer's ``SnapshotService``, called on its own channel."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float, chunk_bytes: int) -> None:
        self._stub = search_pb2_grpc.SnapshotServiceStub(channel)
        self._timeout = timeout_s
        self._chunk_bytes = chunk_bytes

    async def prepare(self) -> PreparedSnapshot:
        """Ask the peer for a snapshot; ``_CopyFailed`` if its manifest is malformed."""
        answer = await self._stub.PrepareSnapshot(
            search_pb2.PrepareSnapshotRequest(), timeout=self._timeout
        )
        prepared = prepared_from_proto(answer)
        try:
            prepared.manifest.check()
        except SearchInvalidArgument as exc:
            raise _CopyFailed(f"the peer's manifest is malformed: {exc.message}") from exc
        return prepared

    async def download(self, manifest: SnapshotManifest, into: Path) -> int:
        """Write every file of the snapshot into ``into`` (synced to disk) and check its
        size; returns the bytes copied."""
        copied = 0
        for listed in manifest.files:
            copied += await self._download_file(manifest.snapshot_id, listed, into / listed.name)
        return copied

    async def _download_file(self, snapshot_id: str, listed: SnapshotFile, target: Path) -> int:
        offset = 0
        with target.open("wb", buffering=_WRITE_BUFFER) as out:
            while True:
                answer = await self._stub.ReadSnapshot(
                    search_pb2.ReadSnapshotRequest(
                        snapshot_id=snapshot_id,
                        name=listed.name,
                        offset=offset,
                        max_bytes=self._chunk_bytes,
                    ),
                    timeout=self._timeout,
                )
                data = answer.data
                if offset + len(data) > listed.size:
                    raise _CopyFailed(f"{listed.name} is longer than the {listed.size} listed")
                await asyncio.to_thread(out.write, data)
                offset += len(data)
                metrics.SNAPSHOT_BYTES.labels("received").inc(len(data))
                if answer.eof:
                    break
                if not data:
                    raise _CopyFailed(f"{listed.name}: the peer sent nothing at {offset}")
            out.flush()
            await asyncio.to_thread(os.fsync, out.fileno())
        if offset != listed.size:
            raise _CopyFailed(f"{listed.name} ended at {offset} of the {listed.size} listed")
        return offset


def prepared_from_proto(answer: search_pb2.PrepareSnapshotResponse) -> PreparedSnapshot:
    """A ``PrepareSnapshot`` answer as a :class:`PreparedSnapshot` (not checked)."""
    return PreparedSnapshot(
        SnapshotManifest(
            snapshot_id=answer.snapshot_id,
            files=tuple(SnapshotFile(f.name, f.size) for f in answer.files),
            offsets=tuple(PartitionOffset(o.topic, o.partition, o.offset) for o in answer.offsets),
        ),
        answer.expires_at_ms,
    )


def _channel_factory(settings: SnapshotProcessSettings) -> Callable[[str], grpc.aio.Channel]:
    """Direct channels to one peer: mutual TLS with the process's client certificate
    (the peer must present a search certificate), else plaintext."""
    files = TlsFiles.from_settings(settings)
    if files is None:
        return grpc.aio.insecure_channel
    return mtls_channel_factory(SERVICE, ClientTls(files, settings.tls_reload_seconds))


async def bootstrap_from_peer(
    settings: SnapshotProcessSettings,
    data_dir: DataDir,
    *,
    peers: PeerFinder | None = None,
    offsets: GroupOffsets | None = None,
    channel_factory: Callable[[str], grpc.aio.Channel] | None = None,
    choose: Callable[[Sequence[str]], str] = random.choice,
    tracer_provider: trace.TracerProvider | None = None,
) -> BootstrapResult:
    """Copy a peer's index into an empty ``data_dir`` (run before the index is opened).

    Never raises for a failed copy: the result says whether the index must be rebuilt
    from the source services instead (:attr:`BootstrapResult.rebuild_needed`) and why.
    ``peers``, ``offsets`` and ``channel_factory`` default to the process's registry (or
    static peers), brokers and client TLS; ``choose`` picks the peer.
    """
    data_dir.discard_incoming()
    if data_dir.has_index():
        return BootstrapResult(BootstrapOutcome.SKIPPED, "the data directory holds an index")
    if not settings.snapshot_bootstrap_enabled:
        return _rebuild("copying a peer's index is disabled")
    tracer = trace.get_tracer(TRACER_NAME, tracer_provider=tracer_provider)
    with tracer.start_as_current_span("search.snapshot.bootstrap") as span:
        finder = peers or RegistryPeers.from_settings(settings)
        address = ""
        try:
            async with asyncio.timeout(settings.snapshot_bootstrap_timeout_seconds):
                found = await finder.addresses()
                if not found:
                    return _rebuild("no other search instance to copy the index from")
                address = choose(found)
                span.set_attribute("search.snapshot.peer", address)
                return await _copy_from(
                    address,
                    settings,
                    data_dir,
                    offsets or KafkaGroupOffsets.from_settings(settings),
                    (channel_factory or _channel_factory(settings)),
                )
        except Exception as exc:
            # Whatever went wrong (the peer, the network, the broker, the disk, a bug),
            # the rebuild from the sources is always correct: never fail the start for it.
            data_dir.discard_incoming()
            metrics.BOOTSTRAPS.labels(BootstrapOutcome.FAILED.value).inc()
            reason = _describe(exc)
            logger.warning(
                "copying a peer's index failed; rebuilding from the source services",
                extra={"peer": address, "reason": reason},
                exc_info=not isinstance(exc, _EXPECTED_FAILURES),
            )
            return BootstrapResult(BootstrapOutcome.FAILED, reason, peer=address)


_EXPECTED_FAILURES = (
    _CopyFailed,
    grpc.aio.AioRpcError,
    SearchUnavailable,
    TimeoutError,
    OSError,
)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"the peer answered {exc.code().name}: {exc.details()}"
    if isinstance(exc, SearchUnavailable):
        return exc.message
    if isinstance(exc, TimeoutError):
        return "the copy did not finish in time"
    return str(exc) or repr(exc)


def _rebuild(reason: str) -> BootstrapResult:
    metrics.BOOTSTRAPS.labels(BootstrapOutcome.REBUILD.value).inc()
    logger.info(
        "no peer index to copy; rebuilding from the source services", extra={"reason": reason}
    )
    return BootstrapResult(BootstrapOutcome.REBUILD, reason)


async def _copy_from(
    address: str,
    settings: SnapshotProcessSettings,
    data_dir: DataDir,
    offsets: GroupOffsets,
    channel_factory: Callable[[str], grpc.aio.Channel],
) -> BootstrapResult:
    incoming = data_dir.incoming_path
    channel = channel_factory(address)
    try:
        peer = SnapshotPeer(
            channel,
            timeout_s=settings.snapshot_call_timeout_seconds,
            chunk_bytes=settings.snapshot_chunk_bytes,
        )
        prepared = await peer.prepare()
        manifest = prepared.manifest
        if len(manifest.files) == 1:
            # meta.json alone: the peer's index holds nothing, a rebuild costs nothing.
            return _rebuild(f"the index of {address} is empty")
        free = await asyncio.to_thread(_free_bytes, data_dir.path)
        if free < manifest.total_bytes:
            raise _CopyFailed(f"{manifest.total_bytes} bytes to copy, {free} free")
        logger.info(
            "copying a peer's index",
            extra={
                "peer": address,
                "snapshot_id": manifest.snapshot_id,
                "files": len(manifest.files),
                "bytes": manifest.total_bytes,
            },
        )
        incoming.mkdir(parents=True)
        copied = await peer.download(manifest, incoming)
    finally:
        await channel.close(None)
    meta = await asyncio.to_thread((incoming / META_FILE).read_bytes)
    if index_schema(meta) not in await asyncio.to_thread(readable_schemas):
        raise _CopyFailed(f"the index of {address} has another schema (a newer version?)")
    await asyncio.to_thread(_write_managed_list, incoming, [f.name for f in manifest.files])
    index_id = new_index_id()
    # Before the index is installed: an installed index always has its group's offsets.
    await offsets.commit(sync_group(settings.sync_group_prefix, index_id), manifest.offsets)
    await asyncio.to_thread(data_dir.install_index, incoming, index_id)
    metrics.BOOTSTRAPS.labels(BootstrapOutcome.PEER.value).inc()
    logger.info(
        "index copied from a peer",
        extra={
            "peer": address,
            "index_id": index_id,
            "bytes": copied,
            "partitions": len(manifest.offsets),
        },
    )
    return BootstrapResult(
        BootstrapOutcome.PEER,
        f"copied from {address}",
        peer=address,
        index_id=index_id,
        bytes_copied=copied,
    )


def _free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def _write_managed_list(index_dir: Path, names: Sequence[str]) -> None:
    (index_dir / MANAGED_FILE).write_text(json.dumps(sorted(names)), encoding="utf-8")
