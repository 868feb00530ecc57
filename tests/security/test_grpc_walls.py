"""The attacks of an intruder inside the network, driven against the real stack.

Whoever reaches a service port must prove a workload identity (a client certificate from
the stack's CA) and then may call only what that identity is declared for: no certificate
or a foreign CA fails the handshake before any request is read; another workload's
certificate gets PERMISSION_DENIED, counted and logged; the declared caller is served.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import grpc
import pytest

from kit.security.identity import dns_name
from kit.security.pki import cert_pem, create_ca, issue_workload, key_pem
from tests.security.conftest import SecureStack
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.comment.v1 import comment_pb2, comment_pb2_grpc
from webook.search.v1 import search_pb2, search_pb2_grpc
from webook.tag.v1 import tag_pb2, tag_pb2_grpc
from webook.user.v1 import user_pb2, user_pb2_grpc

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0


def _list_users(channel: grpc.aio.Channel) -> Any:
    return user_pb2_grpc.UserServiceStub(channel).ListUsers(
        user_pb2.ListUsersRequest(after_id=0, limit=10), timeout=TIMEOUT_S
    )


async def _code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _denied_count(stack: SecureStack, service: str, method: str, caller: str) -> float:
    """``webook_grpc_denied_total`` of one method and caller, 0 before the first denial."""
    total = 0.0
    for line in stack.metrics(service).splitlines():
        if (
            line.startswith("webook_grpc_denied_total{")
            and f'method="{method}"' in line
            and f'caller="{caller}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_no_certificate_no_call(secure_stack: SecureStack) -> None:
    # Plaintext: the server speaks TLS only.
    async with grpc.aio.insecure_channel(secure_stack.address("user")) as channel:
        assert await _code_of(_list_users(channel)) is grpc.StatusCode.UNAVAILABLE
    # TLS that checks the server but presents no client certificate.
    credentials = grpc.ssl_channel_credentials(secure_stack.pki.ca_file.read_bytes())
    options = [("grpc.ssl_target_name_override", dns_name("user"))]
    async with grpc.aio.secure_channel(
        secure_stack.address("user"), credentials, options=options
    ) as channel:
        assert await _code_of(_list_users(channel)) is grpc.StatusCode.UNAVAILABLE


async def test_a_foreign_ca_cannot_pose_as_the_gateway(
    secure_stack: SecureStack, tmp_path: Path
) -> None:
    ca_cert, ca_key = create_ca(valid_for=dt.timedelta(days=2))
    cert, key = issue_workload("gateway", ca_cert, ca_key)
    credentials = grpc.ssl_channel_credentials(
        secure_stack.pki.ca_file.read_bytes(), key_pem(key), cert_pem(cert)
    )
    options = [("grpc.ssl_target_name_override", dns_name("user"))]
    async with grpc.aio.secure_channel(
        secure_stack.address("user"), credentials, options=options
    ) as channel:
        profile = user_pb2_grpc.UserServiceStub(channel).Profile(
            user_pb2.ProfileRequest(id=1), timeout=TIMEOUT_S
        )
        assert await _code_of(profile) is grpc.StatusCode.UNAVAILABLE


async def test_only_search_lists_every_user(secure_stack: SecureStack) -> None:
    before = _denied_count(secure_stack, "user", "ListUsers", "comment")
    for intruder in ("comment", "gateway", "article"):
        async with secure_stack.infra.channel(
            secure_stack.address("user"), "user", as_identity=intruder
        ) as channel:
            code = await _code_of(_list_users(channel))
        assert code is grpc.StatusCode.PERMISSION_DENIED, intruder
    assert _denied_count(secure_stack, "user", "ListUsers", "comment") == before + 1

    async with secure_stack.infra.channel(
        secure_stack.address("user"), "user", as_identity="search"
    ) as channel:
        answer = await _list_users(channel)
    assert isinstance(answer, user_pb2.ListUsersResponse)


async def test_only_search_lists_every_tag_set(secure_stack: SecureStack) -> None:
    """Every article's tags, for the search rebuild alone: the gateway, which asks for one
    resource's tags on a user's behalf, is refused the listing like any other workload."""

    def list_sets(channel: grpc.aio.Channel) -> Any:
        return tag_pb2_grpc.TagServiceStub(channel).ListTagSets(
            tag_pb2.ListTagSetsRequest(biz="article"), timeout=TIMEOUT_S
        )

    for intruder in ("gateway", "article", "user"):
        async with secure_stack.infra.channel(
            secure_stack.address("tag"), "tag", as_identity=intruder
        ) as channel:
            code = await _code_of(list_sets(channel))
        assert code is grpc.StatusCode.PERMISSION_DENIED, intruder
    async with secure_stack.infra.channel(
        secure_stack.address("tag"), "tag", as_identity="search"
    ) as channel:
        answer = await list_sets(channel)
    assert isinstance(answer, tag_pb2.ListTagSetsResponse)


async def test_writes_for_a_user_come_only_from_the_gateway(secure_stack: SecureStack) -> None:
    """Publishing as anyone, deleting others' comments, rewriting the index: all refused to
    any identity but the one declared for them."""
    attacks: list[tuple[str, str, Any]] = [
        (
            "article",
            "search",
            lambda ch: article_pb2_grpc.ArticleServiceStub(ch).Publish(
                article_pb2.PublishRequest(title="forged", content="<p>x</p>", author_id=1),
                timeout=TIMEOUT_S,
            ),
        ),
        (
            "comment",
            "article",
            lambda ch: comment_pb2_grpc.CommentServiceStub(ch).DeleteComment(
                comment_pb2.DeleteCommentRequest(id=1, uid=1), timeout=TIMEOUT_S
            ),
        ),
        (
            "search",
            "gateway",
            lambda ch: search_pb2_grpc.SyncServiceStub(ch).InputArticle(
                search_pb2.InputArticleRequest(
                    article=search_pb2.ArticleDoc(id=1, title="forged", content="x", status=2)
                ),
                timeout=TIMEOUT_S,
            ),
        ),
        (
            "user",
            "article",
            lambda ch: user_pb2_grpc.UserServiceStub(ch).Login(
                user_pb2.LoginRequest(email="a@example.com", password="hello#world123"),
                timeout=TIMEOUT_S,
            ),
        ),
    ]
    for service, intruder, call in attacks:
        async with secure_stack.infra.channel(
            secure_stack.address(service), service, as_identity=intruder
        ) as channel:
            code = await _code_of(call(channel))
        assert code is grpc.StatusCode.PERMISSION_DENIED, (service, intruder)


async def test_the_gateway_is_served(secure_stack: SecureStack) -> None:
    async with secure_stack.infra.channel(
        secure_stack.address("user"), "user", as_identity="gateway"
    ) as channel:
        code = await _code_of(
            user_pb2_grpc.UserServiceStub(channel).Profile(
                user_pb2.ProfileRequest(id=123456789), timeout=TIMEOUT_S
            )
        )
    # Served (the user does not exist), not refused.
    assert code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE)


async def test_a_server_must_be_the_service_the_client_meant(secure_stack: SecureStack) -> None:
    """A client that means to call ``user`` refuses the comment service's certificate."""
    async with secure_stack.infra.channel(
        secure_stack.address("comment"), "user", as_identity="gateway"
    ) as channel:
        assert await _code_of(_list_users(channel)) is grpc.StatusCode.UNAVAILABLE
