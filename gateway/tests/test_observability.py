"""Health, metrics by route template, and the OpenAPI schema."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


async def test_healthz(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz", headers={"Authorization": "Bearer null"})

    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_metrics_are_labelled_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/users/profile")
    await client.get("/no/such/route/12345")

    resp = await client.get("/metrics")

    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert 'webook_http_requests_total{method="GET",route="/users/profile",status="401"}' in text
    assert 'webook_http_requests_total{method="GET",route="unmatched",status="401"}' in text
    assert "/no/such/route" not in text
    assert 'webook_http_request_duration_seconds_count{method="GET",route="/users/profile"}' in (
        text
    )


async def test_openapi_documents_the_user_routes(client: httpx.AsyncClient) -> None:
    resp = await client.get("/openapi.json", headers={"Authorization": "Bearer null"})

    schema = resp.json()
    paths = schema["paths"]
    for path in ("/users/signup", "/users/login", "/users/edit", "/users/refresh_token"):
        assert "post" in paths[path]
    profile = paths["/users/profile"]["get"]
    ok_schema = profile["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok_schema["$ref"].endswith("/ProfileView")
    assert set(schema["components"]["schemas"]["ProfileView"]["properties"]) == {
        "Email",
        "Phone",
        "Nickname",
        "Birthday",
        "AboutMe",
    }
    assert "confirmPassword" in schema["components"]["schemas"]["SignupRequest"]["properties"]
    assert profile["security"] == [{"accessToken": []}]
    assert (await client.get("/docs")).status_code == 200


async def test_openapi_documents_edge_refusals_but_no_422(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    login = paths["/users/login"]["post"]["responses"]
    assert {"200", "413", "429", "503"} <= set(login)
    assert "Retry-After" in login["429"]["headers"]
    assert "422" not in login
    assert set(paths["/healthz"]["get"]["responses"]) == {"200"}
