"""DirectIdRoute answers exactly what FastAPI's own handler answers, with or without it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Path, Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

import gateway.routes.direct as direct
from gateway.envelope import Result
from gateway.errors import install_error_handlers
from gateway.routes.direct import DirectIdRoute, canonical_id
from gateway.schemas import INT64_MAX
from gateway.tests.conftest import client_for
from kit.errors import NotFound


class Item(BaseModel):
    id: int
    name: str
    readCnt: int


def make_app(calls: list[int]) -> FastAPI:
    router = APIRouter(prefix="/items", route_class=DirectIdRoute)

    @router.get("/{id}")
    async def read(request: Request, id: int = Path(ge=1, le=INT64_MAX)) -> Result[Item]:
        calls.append(id)
        if id == 404:
            raise NotFound("ITEM_NOT_FOUND", "item not found")
        return Result[Item](data=Item(id=id, name=f"é{request.url.path}", readCnt=3))

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    return app


async def answers(app: FastAPI, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
    async with client_for(app) as client:
        resp = await client.get(path)
    return resp.status_code, sorted(resp.headers.multi_items()), resp.content


@pytest.mark.parametrize(
    "path",
    [
        "/items/7",
        f"/items/{INT64_MAX}",
        "/items/404",
        "/items/0",
        "/items/-5",
        "/items/007",
        "/items/abc",
        "/items/%207",
        f"/items/{INT64_MAX + 1}",
        "/items/99999999999999999999999",
    ],
)
async def test_direct_and_fastapi_handlers_answer_alike(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    direct_calls: list[int] = []
    fastapi_calls: list[int] = []
    monkeypatch.setattr(direct, "records_spans", lambda: False)
    direct_answer = await answers(make_app(direct_calls), path)
    # While spans are recorded every request takes FastAPI's handler.
    monkeypatch.setattr(direct, "records_spans", lambda: True)
    fastapi_answer = await answers(make_app(fastapi_calls), path)

    assert direct_answer == fastapi_answer
    assert direct_calls == fastapi_calls


async def test_well_formed_ids_skip_fastapi_handler(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(direct, "records_spans", lambda: False)
    solved: list[Any] = []
    real = APIRoute.get_route_handler

    def spy(self: DirectIdRoute) -> Any:
        handler = real(self)

        async def counted(request: Request) -> Any:
            solved.append(request.url.path)
            return await handler(request)

        return counted

    monkeypatch.setattr(APIRoute, "get_route_handler", spy)
    app = make_app([])
    async with client_for(app) as client:
        ok = await client.get("/items/7")
        padded = await client.get("/items/07")  # valid for FastAPI, not canonical
        bad = await client.get("/items/abc")

    data = {"id": 7, "name": "é/items/7", "readCnt": 3}
    assert ok.json() == {"code": 0, "msg": "OK", "data": data}
    assert padded.json()["data"]["id"] == 7
    assert bad.json()["code"] == 4
    assert solved == ["/items/07", "/items/abc"]


def test_canonical_ids() -> None:
    assert canonical_id("1") == 1
    assert canonical_id(str(INT64_MAX)) == INT64_MAX
    malformed = ("", "0", "01", "-1", "+1", " 1", "1 ", "1_0", "\u0661", str(INT64_MAX + 1))
    for raw in (*malformed, None, 7):
        assert canonical_id(raw) is None, raw
