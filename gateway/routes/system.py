"""Operational routes: liveness, readiness and Prometheus metrics.

``/healthz`` is liveness (the process and its event loop answer); ``/readyz`` is readiness
(:class:`gateway.readiness.Readiness`: started and not draining). Both are public and exempt
from the edge's limits, like ``/metrics``; none of them answers with the envelope.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from gateway.readiness import Readiness, State

router = APIRouter(tags=["system"])


class Health(BaseModel):
    """Liveness: the process answers HTTP."""

    status: str = "ok"


class ReadyView(BaseModel):
    """Readiness: whether the process wants new requests, and if not, why."""

    status: State


@router.get("/healthz", summary="Liveness probe")
async def healthz() -> Health:
    """Always ``{"status": "ok"}`` while the process serves requests."""
    return Health()


@router.get(
    "/readyz",
    summary="Readiness probe",
    response_model=ReadyView,
    responses={503: {"model": ReadyView, "description": "Starting, draining or stopping."}},
)
async def readyz(request: Request) -> ReadyView | JSONResponse:
    """``{"status": "ready"}`` while the process wants new requests; otherwise HTTP 503 with
    ``starting``, ``draining`` (after SIGTERM, still serving) or ``stopped``."""
    readiness: Readiness = request.app.state.readiness
    state = readiness.state
    if state == "ready":
        return ReadyView(status=state)
    return JSONResponse({"status": state}, status_code=503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Text format."}},
)
async def metrics() -> Response:
    """Every metric of the process in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
