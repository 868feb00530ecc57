"""The signed state cookie of the WeChat login, as a unit."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from gateway.auth.oauth_state import InvalidOAuthState, StateCookies, new_state

KEY = "s" * 32


def _cookies(clock: float | None = None) -> StateCookies:
    return StateCookies(
        key=KEY,
        ttl=timedelta(minutes=10),
        secure=False,
        clock=(lambda: clock) if clock is not None else time.time,
    )


def _problem(cookie: str | None, state: str | None) -> str:
    with pytest.raises(InvalidOAuthState) as refused:
        _cookies().check(cookie, state)
    assert refused.value.reason == "WECHAT_STATE_INVALID"
    return refused.value.metadata["problem"]


def test_the_sealed_state_is_accepted() -> None:
    state = new_state()

    _cookies().check(_cookies().seal(state), state)


def test_states_are_random() -> None:
    assert len({new_state() for _ in range(100)}) == 100


def test_refusals_name_their_cause() -> None:
    state = new_state()
    sealed = _cookies().seal(state)
    assert _problem(None, state) == "missing_cookie"
    assert _problem("", state) == "missing_cookie"
    assert _problem(sealed, new_state()) == "mismatch"
    assert _problem(sealed, None) == "missing_state"
    assert _problem(sealed, state + "x" * 200) == "missing_state"
    assert _problem(_cookies(time.time() - 601).seal(state), state) == "expired"
    other_key = StateCookies(key="o" * 32, ttl=timedelta(minutes=10), secure=False)
    assert _problem(other_key.seal(state), state) == "forged"
    assert _problem("not-a-jwt", state) == "forged"


def test_other_tokens_are_not_state_cookies() -> None:
    state = new_state()
    now = int(time.time())
    # Right key, but no audience / another audience / another algorithm.
    no_audience = jwt.encode({"state": state, "exp": now + 60}, KEY, algorithm="HS256")
    other_audience = jwt.encode(
        {"state": state, "exp": now + 60, "aud": "elsewhere"}, KEY, algorithm="HS256"
    )
    unsigned = jwt.encode(
        {"state": state, "exp": now + 60, "aud": "webook-wechat-state"}, "", algorithm="none"
    )
    for token in (no_audience, other_audience, unsigned):
        assert _problem(token, state) == "forged"
