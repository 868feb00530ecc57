"""Real callees for the remote executors' tests, each on a free port of the loopback.

- :class:`HttpCallee`: a small HTTP/1.1 server on ``asyncio.start_server`` (the project has
  no aiohttp) that records every request and answers each with the next scripted
  :class:`Answer` (200 once the script is spent); an answer may be held until the test
  releases it, to make a call time out.
- :class:`FakeRanking`: ``webook.ranking.v1.RankingService`` as a scheduled job's callee
  would be: ``RunRanking`` takes the token from the metadata (:mod:`kit.grpcx.fencing`),
  refuses one below the highest accepted with the ranking's ``STALE_FENCING_TOKEN`` reason,
  and can be told to fail as the real service does when a peer is down. Served by a real
  :class:`~kit.grpcx.server.ServiceRunner` (errors mapped to ``ErrorInfo``; under mutual TLS
  the callers the proto declares are enforced).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import grpc

from kit.errors import FailedPrecondition, InvalidArgument, Unavailable
from kit.grpcx.fencing import MalformedFencingToken, fencing_token, job_name
from webook.ranking.v1 import ranking_pb2, ranking_pb2_grpc

RANKING_DOMAIN = "ranking.webook"


@dataclass(frozen=True)
class Received:
    """One request as the callee read it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Answer:
    """A scripted answer; ``hold`` (if given) is awaited before answering."""

    status: int = 200
    body: bytes = b"ok"
    hold: asyncio.Event | None = None


@dataclass
class HttpCallee:
    """See the module. ``received`` lists the requests in the order they arrived."""

    script: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> HttpCallee:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/jobs/run") -> str:
        """An URL of this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def close(self) -> None:
        """Stop listening and end the connections still open."""
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(method, target, headers, body))
            answer = self.script.pop(0) if self.script else Answer()
            if answer.hold is not None:
                await answer.hold.wait()
            writer.write(
                f"HTTP/1.1 {answer.status} Scripted\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode()
                + answer.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up (a timeout): nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@dataclass(frozen=True)
class RankingCall:
    """One ``RunRanking`` call as :class:`FakeRanking` saw it."""

    token: int | None
    job: str
    request_token: int


class FakeRanking(ranking_pb2_grpc.RankingServiceServicer):
    """See the module. ``calls`` lists the accepted and refused calls."""

    def __init__(self) -> None:
        self.highest = 0
        self.calls: list[RankingCall] = []
        # When set, RunRanking fails as the real job does when a peer or Redis is down.
        self.failing = False

    async def TopArticles(
        self, request: ranking_pb2.TopArticlesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ranking_pb2.TopArticlesResponse:
        """No ranking here: an empty page."""
        return ranking_pb2.TopArticlesResponse()

    async def RunRanking(
        self, request: ranking_pb2.RunRankingRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ranking_pb2.RunRankingResponse:
        """Accept the metadata token unless a higher one was accepted."""
        try:
            token = fencing_token(context)
        except MalformedFencingToken as exc:
            raise InvalidArgument(
                "RANKING_INVALID_FENCING_TOKEN", str(exc), domain=RANKING_DOMAIN
            ) from exc
        self.calls.append(RankingCall(token, job_name(context), request.fencing_token))
        if token is None:
            raise InvalidArgument(
                "RANKING_INVALID_FENCING_TOKEN", "no token", domain=RANKING_DOMAIN
            )
        if token < self.highest:
            raise FailedPrecondition(
                "RANKING_STALE_FENCING_TOKEN",
                f"fencing token {token} is stale",
                metadata={"fencing_token": str(token), "highest_token": str(self.highest)},
                domain=RANKING_DOMAIN,
            )
        if self.failing:
            raise Unavailable("RANKING_JOB_FAILED", "a peer is down", domain=RANKING_DOMAIN)
        self.highest = token
        return ranking_pb2.RunRankingResponse(scored=3, ranked=2, computed_at_ms=1)
