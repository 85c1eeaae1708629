"""Liveness and readiness, for a load balancer: no authentication, no patient data."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.state import State
from services import readiness

router = APIRouter(tags=["health"])


@router.get("/health/ready", summary="PostgreSQL, Temporal and a polling worker")
async def ready(state: State) -> JSONResponse:
    """200 when the engine can do its work now; 503 with the failing checks otherwise."""
    result = await readiness.check(
        state.session_factory, state.client, state.settings.temporal.task_queue
    )
    return JSONResponse(
        {"status": "ready" if result.ready else "not ready", "checks": result.checks},
        status_code=200 if result.ready else 503,
    )
