"""``/search``: full-text search over published articles and users (public).

``GET /search/query`` needs no login (readers search before they sign in; the results are
public data: published articles, nicknames and about-me texts): an ``Authorization`` header
that does not verify is ignored, never refused. It reaches the search service through
:attr:`gateway.deps.Runtime.stubs`; :func:`gateway.presenters.search_hit` shows the hits.

**Reader affinity.** Each search replica keeps its own index, and two indexes may differ
for a moment (one has applied an event the other has not yet), so a reader paging through
results, or repeating a search, should stay on one replica. Every request therefore carries
an ``affinity_key`` (:class:`ReaderAffinity`): an opaque key of the reader, the signed-in
user's id when the request carries a valid access token, else the client's address as the
edge determines it (:mod:`gateway.middleware.client_ip`: ``X-Forwarded-For`` believed from
trusted proxies only; an IPv6 client by its ``/64``). The key is an HMAC of that, so no
address or user id leaves the gateway; the HMAC key derives from the access-token key, which
every gateway process shares, so every gateway gives one reader the same key. The gateway's
balancer routes ``Search`` by consistent hash of that key (``peer_balancing`` in
:mod:`gateway.settings`): equal keys reach the same replica while it lives, and move to
another when it leaves.

Only the token is verified for this (signature, expiry, User-Agent), not its session's
revocation: the key grants nothing, and a public route must not wait on the session store.

**Gray release.** The affinity is behind the rollout ``search_affinity``
(:mod:`kit.gray`, hash mode on the reader, ``user:<id>`` or ``ip:<address>``): a reader on
the new side gets its key, a reader on the other side gets none, so its searches go round
robin as before affinity existed. The default is 100 %, what the gateway shipped with:
every known reader gets a key until ``gray_rollouts`` says otherwise
(``webookctl config set gateway gray_rollouts='{"search_affinity": {"percent": 0}}'``
turns the affinity off at once; docs/configuration.md, "Gray release"). The percent is
read from the gateway's settings in force at every search (:func:`current_settings`).

A query holding a control character is refused here (code 4, before the service); a query
the service refuses (empty, too long, too many terms, a page past the first 1000 results)
answers code 4 with the service's message; an unavailable index answers code 5 "system
error". The text is never query syntax: field names, wildcards, ranges, boosts and
operators are searched as the words they contain. The edge limits the route per client IP
(rule ``search_ip``, :mod:`gateway.middleware.edge_settings`).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from pydantic import AfterValidator
from starlette.applications import Starlette
from starlette.types import Scope

from gateway import presenters
from gateway.auth.principal import bearer_token
from gateway.auth.tokens import InvalidToken, TokenService, TokenType
from gateway.deps import Runtime, RuntimeDep
from gateway.envelope import Result
from gateway.middleware.client_ip import UNKNOWN_CLIENT, TrustedProxies
from gateway.schemas import DecimalInt
from gateway.schemas.search import (
    MAX_LIMIT,
    MAX_OFFSET,
    MAX_RAW_QUERY_CHARS,
    SearchPageView,
    SearchType,
    check_query_text,
)
from gateway.settings import GatewaySettings
from kit.gray import Gray, Rollout
from webook.search.v1 import search_pb2

router = APIRouter(prefix="/search", tags=["search"])

_DOC_TYPES: Final[dict[str, search_pb2.DocType.ValueType]] = {
    "all": search_pb2.DOC_TYPE_UNSPECIFIED,
    "article": search_pb2.DOC_TYPE_ARTICLE,
    "user": search_pb2.DOC_TYPE_USER,
}

QUERY_HELP: Final = (
    "Free text, Chinese or English, 1..200 characters, at most 64 terms, no control "
    'characters. Words must all match; "quoted words" match as a phrase; anything else '
    "(title:, *, OR, -, brackets) is searched as plain text. English words match their "
    "other forms (bucket, buckets)."
)

# Domain separation: the affinity HMAC key is derived from the access-token key, never
# the same bytes.
_AFFINITY_LABEL: Final = b"webook search reader affinity v1"
# 128 bits of the HMAC, as hex: plenty to spread readers over a ring.
_AFFINITY_HEX_CHARS: Final = 32

SEARCH_AFFINITY_ROLLOUT: Final = "search_affinity"
"""The rollout of reader affinity (see the module docstring)."""
SEARCH_AFFINITY_DEFAULT: Final = Rollout(mode="hash", percent=100)
"""Every known reader has affinity until the rollout is configured."""


class ReaderAffinity:
    """The ``affinity_key`` of a request's reader (see the module docstring).

    Args:
        secret: the HMAC key.
        tokens: verifies a signed-in reader's access token.
        proxies: the edge's trusted proxies, to find the client's address.
    """

    def __init__(self, secret: bytes, tokens: TokenService, proxies: TrustedProxies) -> None:
        self._secret = secret
        self._tokens = tokens
        self._proxies = proxies

    @classmethod
    def from_settings(cls, settings: GatewaySettings, tokens: TokenService) -> ReaderAffinity:
        """The affinity of a gateway with ``settings`` (the same in every gateway process)."""
        access_key = settings.jwt_access_key.get_secret_value().encode()
        secret = hmac.new(access_key, _AFFINITY_LABEL, hashlib.sha256).digest()
        edge = settings.edge
        proxies = TrustedProxies(
            (str(network) for network in edge.trusted_proxies),
            ipv6_prefix_length=edge.ipv6_prefix_length,
        )
        return cls(secret, tokens, proxies)

    def reader(self, scope: Scope, authorization: str | None, user_agent: str) -> str:
        """Who the reader is, in clear (``user:<id>``, ``ip:<address>``, or empty when
        neither is known); never sent anywhere, see :meth:`key`."""
        uid = self._signed_in(authorization, user_agent)
        if uid is not None:
            return f"user:{uid}"
        address = self._proxies.rate_limit_key(scope)
        return "" if address == UNKNOWN_CLIENT else f"ip:{address}"

    def _signed_in(self, authorization: str | None, user_agent: str) -> int | None:
        """The user id of a valid access token, else None (on a public route a bad token
        is no token)."""
        token = bearer_token(authorization)
        if token is None:
            return None
        try:
            return self._tokens.verify(token, TokenType.ACCESS, user_agent).uid
        except InvalidToken:
            return None

    def key(self, scope: Scope, authorization: str | None, user_agent: str) -> str:
        """The reader's opaque key (empty when the reader is unknown: round robin)."""
        return self.key_of(self.reader(scope, authorization, user_agent))

    def key_of(self, reader: str) -> str:
        """The opaque key of ``reader`` (as :meth:`reader` says it; empty: empty)."""
        if not reader:
            return ""
        digest = hmac.new(self._secret, reader.encode(), hashlib.sha256).hexdigest()
        return digest[:_AFFINITY_HEX_CHARS]


def current_settings(app: Starlette, runtime: Runtime) -> GatewaySettings:
    """The gateway's settings in force: ``app.state.live.current`` (what the lifespan keeps
    following the gateway's :class:`~kit.liveconfig.LiveSettings`) when the app has it,
    else the settings read at start (a gateway without live settings)."""
    current = getattr(getattr(app.state, "live", None), "current", None)
    return current if isinstance(current, GatewaySettings) else runtime.settings


class _SettingsInForce:
    """The rollouts' source for :class:`~kit.gray.Gray`: :func:`current_settings`, read at
    each decision."""

    def __init__(self, app: Starlette, runtime: Runtime) -> None:
        self._app = app
        self._runtime = runtime

    @property
    def current(self) -> GatewaySettings:
        """The settings in force now."""
        return current_settings(self._app, self._runtime)


def _affinity_of(request: Request, runtime: Runtime) -> ReaderAffinity:
    # Built on the first search and kept with the app: the keys and proxies it holds are
    # restart-only settings.
    affinity = getattr(request.app.state, "search_affinity", None)
    if not isinstance(affinity, ReaderAffinity):
        affinity = ReaderAffinity.from_settings(runtime.settings, runtime.tokens)
        request.app.state.search_affinity = affinity
    return affinity


def _gray_of(request: Request, runtime: Runtime) -> Gray:
    # Kept with the app too; it reads the rollouts in force at each decision, not here.
    gray = getattr(request.app.state, "search_gray", None)
    if not isinstance(gray, Gray):
        gray = Gray(
            _SettingsInForce(request.app, runtime),
            defaults={SEARCH_AFFINITY_ROLLOUT: SEARCH_AFFINITY_DEFAULT},
        )
        request.app.state.search_gray = gray
    return gray


async def affinity_key(request: Request, runtime: RuntimeDep) -> str:
    """The request's reader affinity key, empty for a reader the ``search_affinity``
    rollout leaves out (``async``: see :func:`gateway.deps.get_runtime`)."""
    affinity = _affinity_of(request, runtime)
    reader = affinity.reader(
        request.scope,
        request.headers.get("authorization"),
        request.headers.get("user-agent", ""),
    )
    if not reader or not _gray_of(request, runtime).is_new(SEARCH_AFFINITY_ROLLOUT, reader):
        return ""
    return affinity.key_of(reader)


AffinityKeyDep = Annotated[str, Depends(affinity_key)]


@router.get(
    "/query",
    summary="Search articles and people",
    description=(
        "Published articles (title, text, author) and users (nickname, about-me), best match "
        "first; among similar matches, recently updated ones rank higher. Public: no login "
        "needed, limited per client IP. A query the service refuses answers code 4 with "
        "the reason."
    ),
)
async def search(
    runtime: RuntimeDep,
    affinity: AffinityKeyDep,
    q: Annotated[
        str,
        Query(max_length=MAX_RAW_QUERY_CHARS, description=QUERY_HELP, examples=["微服务"]),
        AfterValidator(check_query_text),
    ],
    type: Annotated[
        SearchType, Query(description="What to search: articles, users, or both.")
    ] = "all",
    offset: Annotated[DecimalInt, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[DecimalInt, Query(ge=1, le=MAX_LIMIT)] = 10,
) -> Result[SearchPageView]:
    """One page of results; the next page starts at ``offset + limit`` (up to 1000)."""
    reply = await runtime.stubs.search.Search(
        search_pb2.SearchRequest(
            query=q, type=_DOC_TYPES[type], offset=offset, limit=limit, affinity_key=affinity
        ),
        timeout=runtime.grpc_timeout,
    )
    return Result(data=presenters.search_page(reply, runtime.settings.zone))
