"""No-op article and interactive services for the floor of :mod:`bench.read_path`.

Run ``python -m bench._noop_services [--article-port P] [--interactive-port Q] [--pki DIR]``.
One process, one ``grpc.aio`` server listening on the ports given (both, for the floor of
:mod:`bench.read_path`; one each, for its ``--split-floor``), hosting trivial servicers of
``webook.article.v1.ArticleService/GetPublishedById`` and
``webook.interactive.v1.InteractiveService/Get`` that answer a fixed article and fixed
counts (with the requested ids), registered through the generated (de)serialisers. They do
no I/O: whatever the floor app measures is the HTTP + gRPC plumbing alone. With ``--pki``
(a directory made by :func:`kit.security.pki.ensure_local_pki`) each port serves mutual TLS
with its service's certificate and requires a client certificate, through the same server
credentials (`kit.security.tls.ServerTls`) as the real services.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

import grpc

from kit.security.pki import Pki
from kit.security.tls import ServerTls, TlsFiles
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


def _bind(server: grpc.aio.Server, port: int, service: str, pki: Path | None) -> None:
    """Listen on ``port``: plaintext, or with ``pki`` mutual TLS as ``service``."""
    if pki is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
        return
    cert, key = Pki(pki).files(service)
    tls = ServerTls(TlsFiles(cert, key, Pki(pki).ca_file))
    server.add_secure_port(f"127.0.0.1:{port}", tls.credentials)


async def serve(
    article_port: int | None, interactive_port: int | None, pki: Path | None = None
) -> None:
    """Serve the no-op services given a port until terminated."""
    server = grpc.aio.server()
    handlers: list[grpc.GenericRpcHandler[Any, Any]] = []
    if article_port is not None:
        handlers.append(
            grpc.method_handlers_generic_handler(
                "webook.article.v1.ArticleService",
                {
                    "GetPublishedById": grpc.unary_unary_rpc_method_handler(
                        get_published_by_id,
                        request_deserializer=article_pb2.GetPublishedByIdRequest.FromString,
                        response_serializer=article_pb2.GetPublishedByIdResponse.SerializeToString,
                    )
                },
            )
        )
        _bind(server, article_port, "article", pki)
    if interactive_port is not None:
        handlers.append(
            grpc.method_handlers_generic_handler(
                "webook.interactive.v1.InteractiveService",
                {
                    "Get": grpc.unary_unary_rpc_method_handler(
                        get_interactive,
                        request_deserializer=interactive_pb2.GetRequest.FromString,
                        response_serializer=interactive_pb2.GetResponse.SerializeToString,
                    )
                },
            )
        )
        _bind(server, interactive_port, "interactive", pki)
    server.add_generic_rpc_handlers(tuple(handlers))
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    """Parse the ports and serve."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--article-port", type=int, default=None)
    parser.add_argument("--interactive-port", type=int, default=None)
    parser.add_argument("--pki", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    if args.article_port is None and args.interactive_port is None:
        parser.error("give --article-port, --interactive-port or both")
    asyncio.run(serve(args.article_port, args.interactive_port, args.pki))


if __name__ == "__main__":
    main()
