"""Fake article, user and tag services for reindex tests: ``ListPub``, ``ListUsers`` and
``ListTagSets`` over lists, with the real services' ordering, window and page rules, served on
real gRPC ports.

Only the three methods the reindexer calls are served (generic handlers under the real
service names); any other method of those services answers UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc

from webook.article.v1 import article_pb2
from webook.tag.v1 import tag_pb2
from webook.user.v1 import user_pb2

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class FakeArticles:
    """Published articles; ``ListPub`` newest update first (ties: higher id first).

    ``fail`` makes every call answer UNAVAILABLE, ``fail_from_call`` the calls from that
    one on (1: the first); ``before_answer(call)``, when set, runs before each answer is
    chosen (to change the articles in the middle of a listing).
    """

    articles: dict[int, article_pb2.Article] = field(default_factory=dict)
    calls: int = 0
    fail: bool = False
    fail_from_call: int | None = None
    before_answer: Callable[[int], Awaitable[None]] | None = None

    def publish(self, article_id: int, title: str, content: str, utime_ms: int) -> None:
        """Add or replace a published article."""
        self.articles[article_id] = article_pb2.Article(
            id=article_id,
            title=title,
            content=content,
            author=article_pb2.Author(id=1, name="Ada"),
            status=article_pb2.ARTICLE_STATUS_PUBLISHED,
            utime_ms=utime_ms,
        )

    def withdraw(self, article_id: int) -> None:
        """The article is no longer published."""
        self.articles.pop(article_id, None)

    async def ListPub(
        self, request: article_pb2.ListPubRequest, context: Context
    ) -> article_pb2.ListPubResponse:
        """The window ``[start, end)`` newest first, like the article service's DAO."""
        self.calls += 1
        if self.fail or (self.fail_from_call is not None and self.calls >= self.fail_from_call):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "article store down")
        if self.before_answer is not None:
            await self.before_answer(self.calls)
        if not 0 <= request.start_time_ms < request.end_time_ms or not 1 <= request.limit <= 100:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad window or page")
        chosen = sorted(
            (
                a
                for a in self.articles.values()
                if request.start_time_ms <= a.utime_ms < request.end_time_ms
            ),
            key=lambda a: (a.utime_ms, a.id),
            reverse=True,
        )
        page = chosen[request.offset : request.offset + request.limit]
        return article_pb2.ListPubResponse(articles=page)


@dataclass
class FakeUsers:
    """Users; ``ListUsers`` keyset pages in id order."""

    users: dict[int, user_pb2.User] = field(default_factory=dict)

    def add(self, user_id: int, nickname: str, about_me: str, utime_ms: int) -> None:
        """Add or replace a user."""
        self.users[user_id] = user_pb2.User(
            id=user_id, nickname=nickname, about_me=about_me, utime_ms=utime_ms
        )

    async def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: Context
    ) -> user_pb2.ListUsersResponse:
        """Users with ids above ``after_id``, at most ``limit``."""
        if not 1 <= request.limit <= 1000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad limit")
        chosen = sorted(u for u in self.users if u > request.after_id)[: request.limit]
        return user_pb2.ListUsersResponse(users=[self.users[u] for u in chosen])


@dataclass
class FakeTags:
    """Articles' tag sets; ``ListTagSets`` keyset pages in article id order (``fail``: every
    call answers UNAVAILABLE)."""

    sets: dict[int, tag_pb2.ResourceTags] = field(default_factory=dict)
    fail: bool = False

    def tag(self, article_id: int, version: int, *names: str) -> None:
        """Make ``names`` article ``article_id``'s set at ``version`` (none: emptied)."""
        self.sets[article_id] = tag_pb2.ResourceTags(
            biz="article",
            biz_id=article_id,
            uid=1,
            tags=[tag_pb2.Tag(id=i + 1, uid=1, name=n) for i, n in enumerate(sorted(names))],
            version=version,
        )

    async def ListTagSets(
        self, request: tag_pb2.ListTagSetsRequest, context: Context
    ) -> tag_pb2.ListTagSetsResponse:
        """Sets of articles with ids above ``after_biz_id``, at most ``limit`` (0: 20)."""
        if self.fail:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "tag store down")
        if request.biz != "article" or not 0 <= request.limit <= 100:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad biz or limit")
        chosen = sorted(i for i in self.sets if i > request.after_biz_id)[: request.limit or 20]
        return tag_pb2.ListTagSetsResponse(resources=[self.sets[i] for i in chosen])


@dataclass
class Sources:
    """The fakes and the address they answer on."""

    articles: FakeArticles
    users: FakeUsers
    tags: FakeTags
    addr: str

    @property
    def peers(self) -> dict[str, str]:
        """Static peers naming the three services."""
        return {"article": self.addr, "user": self.addr, "tag": self.addr}


@asynccontextmanager
async def serving_sources() -> AsyncIterator[Sources]:
    """The three fakes on one free loopback port."""
    articles, users, tags = FakeArticles(), FakeUsers(), FakeTags()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                article_pb2.DESCRIPTOR.services_by_name["ArticleService"].full_name,
                {
                    "ListPub": grpc.unary_unary_rpc_method_handler(
                        articles.ListPub,
                        request_deserializer=article_pb2.ListPubRequest.FromString,
                        response_serializer=article_pb2.ListPubResponse.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
                {
                    "ListUsers": grpc.unary_unary_rpc_method_handler(
                        users.ListUsers,
                        request_deserializer=user_pb2.ListUsersRequest.FromString,
                        response_serializer=user_pb2.ListUsersResponse.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                tag_pb2.DESCRIPTOR.services_by_name["TagService"].full_name,
                {
                    "ListTagSets": grpc.unary_unary_rpc_method_handler(
                        tags.ListTagSets,
                        request_deserializer=tag_pb2.ListTagSetsRequest.FromString,
                        response_serializer=tag_pb2.ListTagSetsResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Sources(articles, users, tags, f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
