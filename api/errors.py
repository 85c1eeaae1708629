"""How the API answers a refusal: one status code per entry of the rejection catalogue."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from services.errors import Refused
from workflows.contract import Rejection

NOT_FOUND = frozenset(
    {
        Rejection.ACCOUNT_UNKNOWN,
        Rejection.TASK_UNKNOWN,
        Rejection.MESSAGE_UNKNOWN,
        Rejection.UNKNOWN_TASK,
        Rejection.NOT_A_CALL_TASK,
        Rejection.EXPERIMENT_UNKNOWN,
    }
)


def status_code(kind: Rejection) -> int:
    if kind is Rejection.INVALID_REQUEST:
        return 422
    if kind in NOT_FOUND:
        return 404
    if kind is Rejection.TEMPORAL_UNREACHABLE:
        return 503
    return 409


async def refused_handler(request: Request, exc: Exception) -> JSONResponse:
    """``{"detail": why, "kind": rejection}`` with the catalogue's status (already audited)."""
    assert isinstance(exc, Refused)
    return JSONResponse(
        {"detail": exc.message, "kind": exc.kind.value}, status_code=status_code(exc.kind)
    )
