"""The article service as its peers' tests see it: fakes, a stand-in and the real one.

- :class:`FakeTargets`: the :class:`~clients.article.Targets` port in memory;
- :func:`stand_in_articles`: a gRPC server answering ``ArticleService.PublishedExists`` from
  a predicate, on a real port (any other method answers UNIMPLEMENTED);
- :func:`article_process`: the real article service (``python -m services.article``) as a
  child process, plaintext, on its own SQLite file and Redis database. Services do not
  import each other, so the real one runs as a process; :class:`ArticleAuthor` writes to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from clients.article import TargetsUnavailable
from devstack.infra import free_port
from devstack.suite import Infra, migrate, service_process
from webook.article.v1 import article_pb2
from webook.article.v1.article_pb2_grpc import ArticleServiceStub

if TYPE_CHECKING:
    from webook.article.v1.article_pb2_grpc import ArticleServiceAsyncStub

ARTICLE_SERVICE = "article"
AUTHOR = 7


@dataclass
class FakeTargets:
    """Objects that exist: every one (``published is None``) or those listed; ``down``
    makes every question fail."""

    published: set[int] | None = None
    down: bool = False
    asked: list[tuple[str, int]] = field(default_factory=list)

    async def exists(self, biz: str, biz_id: int) -> bool:
        """Whether ``biz_id`` is published here."""
        self.asked.append((biz, biz_id))
        if self.down:
            raise TargetsUnavailable("article service down (fake)")
        return self.published is None or biz_id in self.published


@asynccontextmanager
async def stand_in_articles(published: Callable[[int], bool]) -> AsyncIterator[str]:
    """The address of a server whose ``PublishedExists`` answers with ``published``."""

    async def published_exists(
        request: article_pb2.PublishedExistsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> article_pb2.PublishedExistsResponse:
        return article_pb2.PublishedExistsResponse(
            published_ids=[i for i in request.ids if published(i)]
        )

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "webook.article.v1.ArticleService",
                {
                    "PublishedExists": grpc.unary_unary_rpc_method_handler(
                        published_exists,
                        request_deserializer=article_pb2.PublishedExistsRequest.FromString,
                        response_serializer=article_pb2.PublishedExistsResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@contextmanager
def article_process(
    data_dir: Path, log_dir: Path, redis_url: str, kafka_bootstrap: str
) -> Iterator[str]:
    """The real article service, migrated and serving; yields its address.

    It uses Redis database 3 (tests flush database 0) and no registry; it finds no user
    service, so it serves articles without author names, which these tests do not need.
    """
    infra = Infra(
        redis_url=redis_url.rsplit("/", 1)[0] + "/3",
        etcd_endpoints=[],
        kafka_bootstrap=kafka_bootstrap,
        database_url=f"sqlite+aiosqlite:///{data_dir}",
        mode="test",
        pki=None,
    )
    migrate(ARTICLE_SERVICE, infra, log_dir)
    port = free_port()
    process = service_process(ARTICLE_SERVICE, infra, port, log_dir)
    process.start(timeout=120)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        process.stop()


class ArticleAuthor:
    """Publishes, drafts and withdraws articles on a running article service."""

    def __init__(self, stub: ArticleServiceAsyncStub) -> None:
        self._stub = stub

    @classmethod
    @asynccontextmanager
    async def at(cls, address: str) -> AsyncIterator[ArticleAuthor]:
        """An author writing to the article service at ``address``."""
        async with grpc.aio.insecure_channel(address) as channel:
            yield cls(ArticleServiceStub(channel))

    async def publish(self, article_id: int = 0) -> int:
        """Publish a new article (or ``article_id`` again); its id."""
        answer = await self._stub.Publish(
            article_pb2.PublishRequest(
                id=article_id, author_id=AUTHOR, title="t", content="<p>c</p>"
            )
        )
        return int(answer.id)

    async def draft(self) -> int:
        """Save a draft that was never published; its id."""
        answer = await self._stub.Save(
            article_pb2.SaveRequest(author_id=AUTHOR, title="d", content="<p>c</p>")
        )
        return int(answer.id)

    async def withdraw(self, article_id: int) -> None:
        """Withdraw a published article."""
        await self._stub.Withdraw(article_pb2.WithdrawRequest(id=article_id, author_id=AUTHOR))
