"""HTTP API: intake for billing systems, staff actions, provider webhooks.

``create_app`` is served by ``dunning run`` (with the worker) and ``dunning api`` (alone).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.routes import intake, protections, staff, webhooks
from api.state import AppState
from api.webhooks.sendgrid import Verifier
from config.settings import Settings
from starter import Intake

DESCRIPTION = """\
Balances, payments and adjustments from billing systems; staff actions; provider webhooks.

Authenticate with `Authorization: Bearer <token>` (`dunning token create NAME --role ROLE`).
Roles: **integration** (intake), **staff** (status, worklist, hold, resume, hardship, plan,
settle, write-off and referral requests), **supervisor** (staff, and approve or deny),
**billing_lead** (everything). Webhooks authenticate by the provider's signature instead.
"""


def create_app(
    settings: Settings, session_factory: sessionmaker[Session], client: Client
) -> FastAPI:
    app = FastAPI(title="dunning", version="0.2.0", description=DESCRIPTION)
    app.state.dunning = AppState(
        settings, session_factory, client, Intake(session_factory, client, settings)
    )
    app.state.sendgrid_verifier = Verifier(settings.sendgrid.webhook_public_key)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        # A value the schema let through but PostgreSQL cannot hold (out of range).
        return JSONResponse({"detail": "a value is out of range"}, status_code=422)

    app.include_router(intake.router)
    app.include_router(staff.router)
    app.include_router(protections.router)
    app.include_router(webhooks.router)
    return app
