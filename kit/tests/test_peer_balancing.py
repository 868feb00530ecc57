"""Per-peer balancing settings: parsing, refusal of bad values, and hash routing end to end.

``ServiceClients`` built from ``peer_balancing`` sends ``GetPublishedById`` to three real
grpc.aio servers by consistent hash of the article id (a key always reaches the same
server, the keys spread over all three) while the peer's other methods keep round robin.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from pydantic import ValidationError

from gateway.settings import ARTICLE_READ, SEARCH, GatewaySettings
from kit.balancer import BalancedChannel, Policy
from kit.config import ClientSettings, PeerBalancing
from kit.grpcx.client import ServiceClients, check_hash_field
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.comment.v1 import comment_pb2
from webook.search.v1 import search_pb2  # noqa: F401  (check_hash_field looks methods up in loaded protos)
from webook.user.v1 import user_pb2

ARTICLE_SERVICE = "webook.article.v1.ArticleService"
CREATE_COMMENT = "/webook.comment.v1.CommentService/CreateComment"
# The protos of the methods the checks name are loaded by importing their modules.
LOADED = (comment_pb2, user_pb2)
HASHED = PeerBalancing(policy="consistent_hash", hash_methods={ARTICLE_READ: "id"})


def test_settings_parse_per_peer_policy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ClientSettings().peer_balancing == {}
    value = {"article": {"policy": "consistent_hash", "hash_methods": {ARTICLE_READ: "id"}}}
    monkeypatch.setenv("WEBOOK_PEER_BALANCING", json.dumps(value))
    assert ClientSettings().peer_balancing == {"article": HASHED}
    wrr = PeerBalancing()
    assert (wrr.policy, wrr.hash_methods) == ("weighted_round_robin", {})


def test_the_gateway_routes_article_reads_by_hash_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    search = PeerBalancing(policy="consistent_hash", hash_methods={SEARCH: "affinity_key"})
    assert GatewaySettings().peer_balancing == {"article": HASHED, "search": search}
    # The defaults name real fields.
    check_hash_field("article", ARTICLE_READ, "id")
    check_hash_field("search", SEARCH, "affinity_key")
    monkeypatch.setenv("WEBOOK_GATEWAY_PEER_BALANCING", "{}")
    assert GatewaySettings().peer_balancing == {}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"policy": "consistent_hash"}, "needs hash_methods"),
        ({"hash_methods": {ARTICLE_READ: "id"}}, "only used with policy consistent_hash"),
        ({"policy": "random"}, "weighted_round_robin"),
        ({"policy": "consistent_hash", "hash_methods": {"GetPublishedById": "id"}}, "full method"),
        ({"policy": "consistent_hash", "hash_methods": {ARTICLE_READ: "article id"}}, "dotted"),
        ({"policy": "consistent_hash", "hash_method": {ARTICLE_READ: "id"}}, "hash_method"),
    ],
)
def test_bad_peer_balancing_is_refused_with_a_clear_error(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ClientSettings(peer_balancing={"article": entry})


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("/webook.article.v1.ArticleService/Nope", "id", "not a method of any loaded proto"),
        (ARTICLE_READ, "article_id", "has no field 'article_id'"),
        (CREATE_COMMENT, "comment", "not a single scalar"),
        (CREATE_COMMENT, "comment.biz_id.x", "is not a message"),
        ("/webook.user.v1.UserService/GetByIds", "ids", "not a single scalar"),
    ],
)
def test_hash_fields_are_checked_against_the_protos(method: str, path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_hash_field("article", method, path)
    check_hash_field("comment", CREATE_COMMENT, "comment.biz_id")


class NamedArticleServer:
    """Answers ``GetPublishedById`` and ``GetById`` with its own name as the title."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: Counter[str] = Counter()

    async def published(
        self, request: article_pb2.GetPublishedByIdRequest, context: Any
    ) -> article_pb2.GetPublishedByIdResponse:
        self.calls["GetPublishedById"] += 1
        return article_pb2.GetPublishedByIdResponse(
            article=article_pb2.Article(id=request.id, title=self.name)
        )

    async def by_id(
        self, request: article_pb2.GetByIdRequest, context: Any
    ) -> article_pb2.GetByIdResponse:
        self.calls["GetById"] += 1
        return article_pb2.GetByIdResponse(
            article=article_pb2.Article(id=request.id, title=self.name)
        )

    async def start(self) -> tuple[grpc.aio.Server, str]:
        server = grpc.aio.server()
        handlers = {
            "GetPublishedById": grpc.unary_unary_rpc_method_handler(
                self.published,
                request_deserializer=article_pb2.GetPublishedByIdRequest.FromString,
                response_serializer=article_pb2.GetPublishedByIdResponse.SerializeToString,
            ),
            "GetById": grpc.unary_unary_rpc_method_handler(
                self.by_id,
                request_deserializer=article_pb2.GetByIdRequest.FromString,
                response_serializer=article_pb2.GetByIdResponse.SerializeToString,
            ),
        }
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(ARTICLE_SERVICE, handlers),)
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, f"127.0.0.1:{port}"


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[dict[str, NamedArticleServer], str]]:
    """Three article servers and their addresses as a ``peers`` value."""
    servers = {name: NamedArticleServer(name) for name in ("r1", "r2", "r3")}
    started = [await server.start() for server in servers.values()]
    yield servers, ",".join(addr for _, addr in started)
    for server, _ in started:
        await server.stop(None)


async def test_service_clients_route_the_named_method_by_hash(
    replicas: tuple[dict[str, NamedArticleServer], str],
) -> None:
    servers, addresses = replicas
    clients = ServiceClients(
        registry=None, peers={"article": addresses}, balancing={"article": HASHED}
    )
    try:
        channel = await clients.channel("article")
        assert isinstance(channel, BalancedChannel)
        assert channel.config.policy is Policy.CONSISTENT_HASH
        stub = article_pb2_grpc.ArticleServiceStub(channel)

        async def owners() -> dict[int, str]:
            return {
                article_id: (
                    await stub.GetPublishedById(
                        article_pb2.GetPublishedByIdRequest(id=article_id, uid=article_id % 7),
                        timeout=5,
                    )
                ).article.title
                for article_id in range(1, 301)
            }

        first = await owners()
        assert await owners() == first  # the uid differs per call; the article id decides
        shares = Counter(first.values())
        assert set(shares) == {"r1", "r2", "r3"}
        assert all(50 < count < 160 for count in shares.values()), shares

        # GetById is not named: round robin over the three, whatever the id.
        for _ in range(30):
            await stub.GetById(article_pb2.GetByIdRequest(id=1), timeout=5)
        assert [s.calls["GetById"] for s in servers.values()] == [10, 10, 10]
    finally:
        await clients.close()


async def test_service_clients_refuse_a_field_the_request_does_not_have(
    replicas: tuple[dict[str, NamedArticleServer], str],
) -> None:
    _, addresses = replicas
    wrong = PeerBalancing(policy="consistent_hash", hash_methods={ARTICLE_READ: "article_id"})
    clients = ServiceClients(
        registry=None, peers={"article": addresses}, balancing={"article": wrong}
    )
    try:
        with pytest.raises(ValueError, match="has no field 'article_id'"):
            await clients.channel("article")
        # Peers without a balancing entry keep the shared round-robin configuration.
        user = await clients.channel("user")
        assert isinstance(user, BalancedChannel)
        assert user.config.policy is Policy.WEIGHTED_ROUND_ROBIN
    finally:
        await clients.close()
