"""No-op article and interactive services for the floor of :mod:`bench.read_path`.

Run ``python -m bench._noop_services --article-port P --interactive-port Q``. One process,
one ``grpc.aio`` server listening on both ports, hosting trivial servicers of
``webook.article.v1.ArticleService/GetPublishedById`` and
``webook.interactive.v1.InteractiveService/Get`` that answer a fixed article and fixed
counts (with the requested ids), registered through the generated (de)serialisers. They do
no I/O: whatever the floor app measures is the HTTP + gRPC plumbing alone.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc

from webook.article.v1 import article_pb2
from webook.interactive.v1 import interactive_pb2

# The article the benchmark publishes on the real stack, so both answers are the same size.
TITLE = "限流算法 and the read path"
CONTENT = "<p>Token <b>bucket</b>, leaky bucket, sliding window.</p>" * 20
AUTHOR_NAME = "author"
CTIME_MS = 1_700_000_000_000


async def get_published_by_id(
    request: article_pb2.GetPublishedByIdRequest,
    context: grpc.aio.ServicerContext[
        article_pb2.GetPublishedByIdRequest, article_pb2.GetPublishedByIdResponse
    ],
) -> article_pb2.GetPublishedByIdResponse:
    """A fixed published article with the requested id."""
    return article_pb2.GetPublishedByIdResponse(
        article=article_pb2.Article(
            id=request.id,
            title=TITLE,
            content=CONTENT,
            author=article_pb2.Author(id=1, name=AUTHOR_NAME),
            status=article_pb2.ARTICLE_STATUS_PUBLISHED,
            ctime_ms=CTIME_MS,
            utime_ms=CTIME_MS,
        )
    )


async def get_interactive(
    request: interactive_pb2.GetRequest,
    context: grpc.aio.ServicerContext[interactive_pb2.GetRequest, interactive_pb2.GetResponse],
) -> interactive_pb2.GetResponse:
    """Fixed counts for the requested article."""
    return interactive_pb2.GetResponse(
        intr=interactive_pb2.Interactive(
            biz=request.biz, biz_id=request.biz_id, read_cnt=42, like_cnt=7, collect_cnt=3
        )
    )


async def serve(article_port: int, interactive_port: int) -> None:
    """Serve both no-op services until terminated."""
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "webook.article.v1.ArticleService",
                {
                    "GetPublishedById": grpc.unary_unary_rpc_method_handler(
                        get_published_by_id,
                        request_deserializer=article_pb2.GetPublishedByIdRequest.FromString,
                        response_serializer=article_pb2.GetPublishedByIdResponse.SerializeToString,
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                "webook.interactive.v1.InteractiveService",
                {
                    "Get": grpc.unary_unary_rpc_method_handler(
                        get_interactive,
                        request_deserializer=interactive_pb2.GetRequest.FromString,
                        response_serializer=interactive_pb2.GetResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{article_port}")
    server.add_insecure_port(f"127.0.0.1:{interactive_port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    """Parse the ports and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--article-port", type=int, required=True)
    parser.add_argument("--interactive-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.article_port, args.interactive_port))


if __name__ == "__main__":
    main()
