"""Topic creation through the Kafka admin API.

:class:`TopicAdmin` creates the topics a producer or consumer relies on and reports which
ones it had to create. Besides first deployment this matters for brokers that lose their
data on restart (the local ``tansu`` broker keeps everything in memory): a topic that comes
back "created" means the broker restarted, so clients drop cached metadata and offsets.
Creating a topic that exists is a cheap no-op answered ``TOPIC_ALREADY_EXISTS``.

A :class:`TopicSpec` carries the topic's replication: how many copies of each partition
the brokers keep and, as the topic's ``min.insync.replicas``, how many must have an event
before a producer with ``acks=all`` gets its acknowledgement (production: 3 and 2, so one
broker may be down without losing an acknowledged event or refusing writes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from kit.events.security import KafkaSecurity

logger = logging.getLogger(__name__)

_NO_ERROR = 0


class TopicCreationError(KafkaError):  # type: ignore[misc]
    """The broker refused to create a topic for a reason other than "already exists"."""


def check_replication(replication_factor: int, min_insync_replicas: int) -> None:
    """Raise ``ValueError`` unless ``1 <= min_insync_replicas <= replication_factor``.

    More in-sync replicas than copies would make every ``acks=all`` write fail with
    ``NOT_ENOUGH_REPLICAS``: refused when the configuration is built, not at the first send.
    """
    if replication_factor < 1:
        raise ValueError(f"replication factor must be at least 1, got {replication_factor}")
    if not 1 <= min_insync_replicas <= replication_factor:
        raise ValueError(
            f"min in-sync replicas must be between 1 and the replication factor "
            f"({replication_factor}), got {min_insync_replicas}"
        )


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic to create if missing.

    Attributes:
        name: the topic.
        partitions: its partition count.
        replication_factor: copies of each partition the brokers keep.
        min_insync_replicas: the topic's ``min.insync.replicas``; ``None`` leaves the
            broker's default.
    """

    name: str
    partitions: int = 3
    replication_factor: int = 1
    min_insync_replicas: int | None = None

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r} needs at least one partition")
        min_insync = 1 if self.min_insync_replicas is None else self.min_insync_replicas
        check_replication(self.replication_factor, min_insync)

    def new_topic(self) -> NewTopic:
        """The admin API's request for this topic."""
        configs: dict[str, str] = {}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return NewTopic(self.name, self.partitions, self.replication_factor, topic_configs=configs)


class TopicAdmin:
    """A lazily connected admin client that creates missing topics.

    Any failure closes the connection, so the next call starts from a fresh bootstrap (the
    broker may have restarted in between).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        request_timeout_ms: int = 5_000,
        client_id: str = "webook-admin",
        security: KafkaSecurity | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._security = security or KafkaSecurity()
        self._request_timeout_ms = request_timeout_ms
        self._client_id = client_id
        self._client: AIOKafkaAdminClient | None = None

    async def ensure(self, specs: Iterable[TopicSpec]) -> set[str]:
        """Create the topics of ``specs`` that do not exist; returns the names created.

        Raises :class:`aiokafka.errors.KafkaError` (or ``OSError``) when the broker cannot
        be reached, and :class:`TopicCreationError` when it refuses a topic.
        """
        wanted = {spec.name: spec for spec in specs}
        if not wanted:
            return set()
        try:
            client = await self._connected()
            response = await client.create_topics(
                [spec.new_topic() for spec in wanted.values()],
                timeout_ms=self._request_timeout_ms,
            )
        except BaseException:
            await self.close()
            raise
        created: set[str] = set()
        for topic_error in response.topic_errors:
            name, code = topic_error[0], topic_error[1]
            if code == _NO_ERROR:
                created.add(name)
            elif code != TopicAlreadyExistsError.errno:
                raise TopicCreationError(f"cannot create topic {name!r}: error code {code}")
        if created:
            logger.info(
                "kafka topics created",
                extra={
                    "topics": sorted(created),
                    "replication_factors": sorted({wanted[n].replication_factor for n in created}),
                },
            )
        return created

    async def _connected(self) -> AIOKafkaAdminClient:
        if self._client is None:
            client = AIOKafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._request_timeout_ms,
                client_id=self._client_id,
                **self._security.client_options(),
            )
            try:
                await client.start()
            except BaseException:
                await client.close()
                raise
            self._client = client
        return self._client

    async def close(self) -> None:
        """Close the connection (a later :meth:`ensure` reconnects)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except Exception:
                logger.debug("closing the kafka admin client failed", exc_info=True)


async def ensure_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec],
    *,
    request_timeout_ms: int = 5_000,
    security: KafkaSecurity | None = None,
) -> set[str]:
    """One-shot :meth:`TopicAdmin.ensure` (deploy scripts, tests, benchmarks)."""
    admin = TopicAdmin(bootstrap, request_timeout_ms=request_timeout_ms, security=security)
    try:
        return await admin.ensure(specs)
    finally:
        await admin.close()
