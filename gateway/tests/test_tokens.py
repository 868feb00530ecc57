"""Access/refresh tokens: every way a token can be wrong answers 401 with an empty body."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest

from gateway.auth.tokens import InvalidToken, TokenService, TokenType, user_agent_fingerprint
from gateway.settings import GatewaySettings
from gateway.tests.conftest import USER_AGENT, LoginTokens, bearer, login

pytestmark = pytest.mark.integration


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def _keys(settings: GatewaySettings) -> tuple[str, str]:
    return (
        settings.jwt_access_key.get_secret_value(),
        settings.jwt_refresh_key.get_secret_value(),
    )


async def _assert_unauthorized(resp: httpx.Response) -> None:
    assert resp.status_code == 401
    assert resp.content == b""


async def test_missing_token(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(await client.get("/users/profile"))


async def test_bearer_null_on_logged_in_route(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(await client.get("/users/profile", headers=bearer("null")))


async def test_token_claims(tokens: LoginTokens) -> None:
    access, refresh = _claims(tokens.access), _claims(tokens.refresh)

    assert access["typ"] == "access"
    assert refresh["typ"] == "refresh"
    assert access["uid"] == refresh["uid"] == 1
    assert access["ssid"] == refresh["ssid"]
    assert access["ua"] == user_agent_fingerprint(USER_AGENT)
    assert len(access["ua"]) == 32
    assert access["exp"] - access["iat"] == 30 * 60
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600


async def test_expired_access_token(
    client: httpx.AsyncClient, settings: GatewaySettings, tokens: LoginTokens
) -> None:
    access_key, refresh_key = _keys(settings)
    two_hours_ago = TokenService(
        access_key=access_key,
        refresh_key=refresh_key,
        access_ttl=settings.access_ttl,
        refresh_ttl=settings.refresh_ttl,
        clock=lambda: time.time() - 7200,
    )
    stale = two_hours_ago.issue(1, USER_AGENT)

    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(stale.access)))


async def test_forged_signature(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    forged = jwt.encode(_claims(tokens.access), "x" * 32, algorithm="HS256")

    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(forged)))


async def test_tampered_payload(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    header, _, signature = tokens.access.split(".")
    claims = _claims(tokens.access) | {"uid": 2}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    tampered = f"{header}.{payload}.{signature}"

    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(tampered)))


async def test_alg_none_token(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    unsigned = jwt.encode(_claims(tokens.access), "", algorithm="none")

    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(unsigned)))


async def test_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(tokens.refresh)))


async def test_access_token_is_not_a_refresh_token(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    await _assert_unauthorized(
        await client.post("/users/refresh_token", headers=bearer(tokens.access))
    )


@pytest.mark.parametrize(
    ("key_index", "typ", "path"),
    [
        pytest.param(1, TokenType.ACCESS, "/users/profile", id="access-claims-refresh-key"),
        pytest.param(0, TokenType.REFRESH, "/users/refresh_token", id="refresh-claims-access-key"),
    ],
)
async def test_right_type_signed_with_the_other_key(
    client: httpx.AsyncClient,
    settings: GatewaySettings,
    tokens: LoginTokens,
    key_index: int,
    typ: TokenType,
    path: str,
) -> None:
    claims = _claims(tokens.access) | {"typ": typ.value}
    token = jwt.encode(claims, _keys(settings)[key_index], algorithm="HS256")
    method = "GET" if path == "/users/profile" else "POST"

    await _assert_unauthorized(await client.request(method, path, headers=bearer(token)))


async def test_token_replayed_from_another_user_agent(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    other = {"User-Agent": "curl/8.5.0"}

    await _assert_unauthorized(
        await client.get("/users/profile", headers=bearer(tokens.access) | other)
    )
    await _assert_unauthorized(
        await client.post("/users/refresh_token", headers=bearer(tokens.refresh) | other)
    )


async def test_logout_kills_both_tokens(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    resp = await client.post("/users/logout", headers=bearer(tokens.access))
    assert resp.json() == {"code": 0, "msg": "OK", "data": None}

    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(tokens.access)))
    await _assert_unauthorized(await client.post("/users/logout", headers=bearer(tokens.access)))
    await _assert_unauthorized(
        await client.post("/users/refresh_token", headers=bearer(tokens.refresh))
    )


async def test_logout_leaves_other_sessions_alone(
    client: httpx.AsyncClient, tokens: LoginTokens
) -> None:
    other = await login(client, "alice@example.com")

    await client.post("/users/logout", headers=bearer(tokens.access))

    resp = await client.get("/users/profile", headers=bearer(other.access))
    assert resp.status_code == 200


async def test_refresh_rotates_the_session(client: httpx.AsyncClient, tokens: LoginTokens) -> None:
    resp = await client.post("/users/refresh_token", headers=bearer(tokens.refresh))

    assert resp.json() == {"code": 0, "msg": "OK", "data": None}
    new = LoginTokens(resp.headers["x-jwt-token"], resp.headers["x-refresh-token"])
    assert _claims(new.access)["ssid"] == _claims(new.refresh)["ssid"]
    assert _claims(new.access)["ssid"] != _claims(tokens.access)["ssid"]
    assert (await client.get("/users/profile", headers=bearer(new.access))).status_code == 200
    # The used refresh token and its session's access token are dead.
    await _assert_unauthorized(
        await client.post("/users/refresh_token", headers=bearer(tokens.refresh))
    )
    await _assert_unauthorized(await client.get("/users/profile", headers=bearer(tokens.access)))
    # The rotated refresh token works, once.
    again = await client.post("/users/refresh_token", headers=bearer(new.refresh))
    assert again.json()["code"] == 0


async def test_refresh_without_token(client: httpx.AsyncClient) -> None:
    await _assert_unauthorized(await client.post("/users/refresh_token"))
    await _assert_unauthorized(
        await client.post("/users/refresh_token", headers={"Authorization": "Bearer null"})
    )


class _WallClock:
    """A settable clock in seconds since the epoch, starting now."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _service(clock: _WallClock, cache_size: int = 100) -> TokenService:
    return TokenService(
        access_key="a" * 32,
        refresh_key="r" * 32,
        access_ttl=timedelta(minutes=30),
        refresh_ttl=timedelta(days=7),
        clock=clock,
        verified_cache_size=cache_size,
    )


def test_a_remembered_token_is_accepted_only_from_its_user_agent_and_until_it_expires() -> None:
    clock = _WallClock()
    service = _service(clock)
    pair = service.issue(7, USER_AGENT)

    first = service.verify(pair.access, TokenType.ACCESS, USER_AGENT)
    assert service.verify(pair.access, TokenType.ACCESS, USER_AGENT) == first
    with pytest.raises(InvalidToken):
        service.verify(pair.access, TokenType.ACCESS, "another browser")
    with pytest.raises(InvalidToken):
        service.verify(pair.access, TokenType.REFRESH, USER_AGENT)

    clock.now = first.exp  # expired from its exp on
    with pytest.raises(InvalidToken):
        service.verify(pair.access, TokenType.ACCESS, USER_AGENT)


def test_altered_tokens_are_verified_in_full_even_when_the_original_is_remembered() -> None:
    service = _service(_WallClock())
    pair = service.issue(7, USER_AGENT)
    service.verify(pair.access, TokenType.ACCESS, USER_AGENT)
    header, payload, signature = pair.access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["uid"] = 8
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidToken):
        service.verify(f"{header}.{forged_payload}.{signature}", TokenType.ACCESS, USER_AGENT)
    with pytest.raises(InvalidToken):
        service.verify(pair.access + "x", TokenType.ACCESS, USER_AGENT)


def test_the_remembered_tokens_are_bounded() -> None:
    service = _service(_WallClock(), cache_size=2)
    pairs = [service.issue(uid, USER_AGENT) for uid in (1, 2, 3)]
    claims = [service.verify(p.access, TokenType.ACCESS, USER_AGENT) for p in pairs]

    assert [c.uid for c in claims] == [1, 2, 3]
    assert len(service._verified) == 2
    # The oldest was dropped; it still verifies, in full.
    assert service.verify(pairs[0].access, TokenType.ACCESS, USER_AGENT).uid == 1


def test_a_negative_cache_size_is_refused() -> None:
    with pytest.raises(ValueError, match="verified_cache_size"):
        _service(_WallClock(), cache_size=-1)
