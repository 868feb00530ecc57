"""The floor app of :mod:`bench.read_path`: the least a gateway can do for ``/articles/pub/:id``.

Run ``python -m bench._floor_app --port P --article HOST:PORT --interactive HOST:PORT
[--pki DIR]``.
A minimal FastAPI app served by one uvicorn worker (uvloop and httptools, no access log,
as the gateway runs). Per request it makes the same two concurrent unary
calls as the gateway's route (``ArticleService.GetPublishedById`` and
``InteractiveService.Get``, generated stubs) over two plain ``grpc.aio`` channels, and
returns the same envelope and fields. No authentication, middleware, discovery, balancing,
metrics or tracing: that is what the real gateway adds on top of this floor. With ``--pki``
(a directory made by :func:`kit.security.pki.ensure_local_pki`) both channels are mutual
TLS as the gateway's: its ``gateway`` certificate, each server checked by its DNS name.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import uvicorn
from fastapi import FastAPI

from devstack.tls import CallerTls
from kit.security.pki import Pki
from webook.article.v1 import article_pb2, article_pb2_grpc
from webook.interactive.v1 import interactive_pb2, interactive_pb2_grpc

TIMEOUT_S = 5.0


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _channel(addr: str, service: str, pki: Path | None) -> grpc.aio.Channel:
    """A plain channel, or with ``pki`` a mutual-TLS one presenting the gateway's identity."""
    if pki is None:
        return grpc.aio.insecure_channel(addr)
    return CallerTls(Pki(pki), "gateway", service).aio_channel(addr)


def create_app(article_addr: str, interactive_addr: str, pki: Path | None = None) -> FastAPI:
    """The app, with its two channels opened and closed by the lifespan."""
    # Stubs made once, when the lifespan opens the channels (inside uvicorn's loop).
    articles: article_pb2_grpc.ArticleServiceAsyncStub | None = None
    interactive: interactive_pb2_grpc.InteractiveServiceAsyncStub | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal articles, interactive
        article_channel = _channel(article_addr, "article", pki)
        interactive_channel = _channel(interactive_addr, "interactive", pki)
        articles = article_pb2_grpc.ArticleServiceStub(article_channel)
        interactive = interactive_pb2_grpc.InteractiveServiceStub(interactive_channel)
        try:
            yield
        finally:
            await article_channel.close(None)
            await interactive_channel.close(None)

    app = FastAPI(lifespan=lifespan)

    @app.get("/articles/pub/{id}")
    async def read_published(id: int) -> dict[str, Any]:
        if articles is None or interactive is None:
            raise RuntimeError("the lifespan has not opened the channels")
        article_reply, counts_reply = await asyncio.gather(
            articles.GetPublishedById(
                article_pb2.GetPublishedByIdRequest(id=id, uid=1), timeout=TIMEOUT_S
            ),
            interactive.Get(
                interactive_pb2.GetRequest(biz="article", biz_id=id, uid=1), timeout=TIMEOUT_S
            ),
        )
        a, counts = article_reply.article, counts_reply.intr
        return {
            "code": 0,
            "msg": "",
            "data": {
                "id": a.id,
                "title": a.title,
                "content": a.content,
                "author": a.author.name,
                "ctime": _time(a.ctime_ms),
                "utime": _time(a.utime_ms),
                "readCnt": counts.read_cnt,
                "likeCnt": counts.like_cnt,
                "collectCnt": counts.collect_cnt,
                "liked": counts.liked,
                "collected": counts.collected,
            },
        }

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    """Parse the addresses and serve with one uvicorn worker until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--article", required=True, metavar="HOST:PORT")
    parser.add_argument("--interactive", required=True, metavar="HOST:PORT")
    parser.add_argument("--pki", type=Path, default=None, metavar="DIR")
    args = parser.parse_args()
    config = uvicorn.Config(
        create_app(args.article, args.interactive, args.pki),
        host="127.0.0.1",
        port=args.port,
        lifespan="on",
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
