"""GatewayApp hands a request to FastAPI's telemetry only while spans are recorded."""

from __future__ import annotations

from typing import Any

import pytest

import gateway.app as gateway_app
from gateway.app import GatewayApp
from gateway.tests.conftest import client_for


class CountingTelemetry:
    """Stands in for FastAPI's native telemetry: counts the requests it is handed."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def enabled(self) -> bool:
        return True

    async def __call__(self, *, app: Any, scope: Any, receive: Any, send: Any, **_: Any) -> None:
        self.requests.append(scope["path"])
        await app(scope, receive, send)


@pytest.mark.parametrize("recording", [False, True])
async def test_fastapi_telemetry_runs_only_while_spans_are_recorded(
    recording: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = GatewayApp()
    seen: list[Any] = []

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    @app.middleware("http")
    async def look(request: Any, call_next: Any) -> Any:
        seen.append(request.scope.get("fastapi.telemetry", "absent"))
        return await call_next(request)

    telemetry = CountingTelemetry()
    monkeypatch.setattr(app, "_native_telemetry", telemetry)
    monkeypatch.setattr(gateway_app, "records_spans", lambda: recording)
    async with client_for(app) as client:
        resp = await client.get("/ping")

    assert resp.json() == {"pong": "yes"}
    assert telemetry.requests == (["/ping"] if recording else [])
    # Skipped as FastAPI skips an excluded request: the scope says there is no telemetry.
    assert seen == (["absent"] if recording else [None])
