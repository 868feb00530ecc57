"""The gRPC stubs of every service the gateway calls, as one object.

:func:`gateway.app.create_app` takes a :class:`ServiceStubs` (tests: fakes implementing the
stub interfaces, never service code) or, in production, builds one in its lifespan with
:meth:`ServiceStubs.discover` from the channels of :class:`kit.grpcx.client.ServiceClients`
(discovery, balancing, governance). Routes reach the stubs through
:class:`gateway.deps.Runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from webook.account.v1 import account_pb2_grpc
from webook.article.v1 import article_pb2_grpc
from webook.code.v1 import code_pb2_grpc
from webook.comment.v1 import comment_pb2_grpc
from webook.feed.v1 import feed_pb2_grpc
from webook.follow.v1 import follow_pb2_grpc
from webook.interactive.v1 import interactive_pb2_grpc
from webook.payment.v1 import payment_pb2_grpc
from webook.ranking.v1 import ranking_pb2_grpc
from webook.reward.v1 import reward_pb2_grpc
from webook.search.v1 import search_pb2_grpc
from webook.tag.v1 import tag_pb2_grpc
from webook.user.v1 import user_pb2_grpc

if TYPE_CHECKING:
    from kit.grpcx.client import ServiceClients
    from webook.account.v1.account_pb2_grpc import AccountServiceAsyncStub
    from webook.article.v1.article_pb2_grpc import ArticleServiceAsyncStub
    from webook.code.v1.code_pb2_grpc import CodeServiceAsyncStub
    from webook.comment.v1.comment_pb2_grpc import CommentServiceAsyncStub
    from webook.feed.v1.feed_pb2_grpc import FeedServiceAsyncStub
    from webook.follow.v1.follow_pb2_grpc import FollowServiceAsyncStub
    from webook.interactive.v1.interactive_pb2_grpc import InteractiveServiceAsyncStub
    from webook.payment.v1.payment_pb2_grpc import PaymentServiceAsyncStub
    from webook.ranking.v1.ranking_pb2_grpc import RankingServiceAsyncStub
    from webook.reward.v1.reward_pb2_grpc import RewardServiceAsyncStub
    from webook.search.v1.search_pb2_grpc import SearchServiceAsyncStub
    from webook.tag.v1.tag_pb2_grpc import TagServiceAsyncStub
    from webook.user.v1.user_pb2_grpc import UserServiceAsyncStub


@dataclass(frozen=True, slots=True)
class ServiceStubs:
    """One stub per service; whoever builds it owns the channels behind them."""

    user: UserServiceAsyncStub
    code: CodeServiceAsyncStub
    """The verification code service, hosted by the sms service's processes."""
    article: ArticleServiceAsyncStub
    interactive: InteractiveServiceAsyncStub
    comment: CommentServiceAsyncStub
    follow: FollowServiceAsyncStub
    search: SearchServiceAsyncStub
    ranking: RankingServiceAsyncStub
    reward: RewardServiceAsyncStub
    payment: PaymentServiceAsyncStub
    """Only WeChat Pay's notifications (``/pay/callback``) go to it directly."""
    account: AccountServiceAsyncStub
    feed: FeedServiceAsyncStub
    tag: TagServiceAsyncStub

    @classmethod
    async def discover(cls, clients: ServiceClients) -> ServiceStubs:
        """Stubs on the channels ``clients`` opens (closed with ``clients.close()``)."""
        return cls(
            user=user_pb2_grpc.UserServiceStub(await clients.channel("user")),
            code=code_pb2_grpc.CodeServiceStub(await clients.channel("sms")),
            article=article_pb2_grpc.ArticleServiceStub(await clients.channel("article")),
            interactive=interactive_pb2_grpc.InteractiveServiceStub(
                await clients.channel("interactive")
            ),
            comment=comment_pb2_grpc.CommentServiceStub(await clients.channel("comment")),
            follow=follow_pb2_grpc.FollowServiceStub(await clients.channel("follow")),
            search=search_pb2_grpc.SearchServiceStub(await clients.channel("search")),
            ranking=ranking_pb2_grpc.RankingServiceStub(await clients.channel("ranking")),
            reward=reward_pb2_grpc.RewardServiceStub(await clients.channel("reward")),
            payment=payment_pb2_grpc.PaymentServiceStub(await clients.channel("payment")),
            account=account_pb2_grpc.AccountServiceStub(await clients.channel("account")),
            feed=feed_pb2_grpc.FeedServiceStub(await clients.channel("feed")),
            tag=tag_pb2_grpc.TagServiceStub(await clients.channel("tag")),
        )
