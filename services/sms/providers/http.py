"""One HTTP exchange with a vendor, with its failures mapped onto provider errors.

A total deadline (``asyncio.timeout``) bounds the whole exchange: httpx's own timeouts are
per phase, so a server that trickles its answer could otherwise hold a send for long.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx

from services.sms.providers.port import ProviderTimeout, ProviderUnavailable


async def exchange(
    client: httpx.AsyncClient,
    provider: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
) -> httpx.Response:
    """POST ``content`` to ``url``; raise :class:`ProviderTimeout`/:class:`ProviderUnavailable`."""
    try:
        async with asyncio.timeout(timeout_s):
            response = await client.post(url, content=content, headers=dict(headers))
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderTimeout(provider, f"no answer within {timeout_s:g}s") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(provider, f"transport error {type(exc).__name__}") from exc
    if response.status_code >= 500:
        raise ProviderUnavailable(provider, f"HTTP {response.status_code}")
    return response


def json_body(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response's JSON object, or :class:`ProviderUnavailable` if it is not one."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderUnavailable(
            provider, f"HTTP {response.status_code} with a body that is not JSON"
        ) from exc
    if not isinstance(body, dict):
        raise ProviderUnavailable(provider, f"HTTP {response.status_code} with unexpected JSON")
    return body
