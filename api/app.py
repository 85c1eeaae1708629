"""HTTP API: intake for billing systems, staff actions, provider webhooks.

``create_app`` is served by ``dunning run`` (with the worker) and ``dunning api`` (alone).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api import console
from api.edge import AuditLimiter, AuthThrottle, BodyLimit
from api.errors import refused_handler
from api.routes import (
    agency,
    experiments,
    facts,
    family,
    health,
    intake,
    protections,
    staff,
    unsubscribe,
    webhooks,
)
from api.state import AppState
from api.webhooks.sendgrid import Verifier
from config.settings import Settings
from services.context import Services
from services.errors import Refused
from starter import Intake

DESCRIPTION = """\
Balances, payments and adjustments from billing systems; staff actions; provider webhooks.

Authenticate with `Authorization: Bearer <token>`: a user's token (`dunning user add NAME --role
R`, `dunning token create --user NAME`) acts with that user's roles, whose permissions (read, act,
decide, intake, admin) and approval limits are in the roles catalogue `config/roles.yaml`; an
integration's token (`dunning token create NAME --integration`) may only post balances, payments
and adjustments. Webhooks authenticate by the provider's signature instead.

Amounts are JSON integers of cents and flags JSON booleans (`"100"` or `true` is not an amount);
bodies above the configured size are refused (413); repeated failed authentications from one
client are refused for a while (429 with Retry-After).
"""
DOCS_ASSETS = "/docs-assets"


def create_app(
    settings: Settings, session_factory: sessionmaker[Session], client: Client
) -> FastAPI:
    app = FastAPI(
        title="dunning", version="0.2.0", description=DESCRIPTION, docs_url=None, redoc_url=None
    )
    app.add_middleware(BodyLimit, max_bytes=settings.api.max_body_bytes)
    app.state.auth_throttle = AuthThrottle(
        settings.api.auth_failures, settings.api.auth_window_seconds
    )
    app.state.audit_limiter = AuditLimiter(settings.api.audit_refusal_window_seconds)
    _offline_docs(app)
    ledger = Intake(session_factory, client, settings)
    app.state.dunning = AppState(
        settings,
        session_factory,
        client,
        ledger,
        Services(
            settings,
            session_factory,
            client,
            audit_limiter=app.state.audit_limiter,
            _intake=ledger,
        ),
        audit_limiter=app.state.audit_limiter,
    )
    app.add_exception_handler(Refused, refused_handler)
    app.state.sendgrid_verifier = Verifier(settings.sendgrid.webhook_public_key)

    @app.get("/health", tags=["health"])
    async def live() -> dict[str, str]:
        """Liveness: the process answers. Readiness is ``/health/ready``."""
        return {"status": "ok"}

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        # A value the schema let through but PostgreSQL cannot hold (out of range).
        return JSONResponse({"detail": "a value is out of range"}, status_code=422)

    app.include_router(health.router)
    app.include_router(intake.router)
    app.include_router(staff.router)
    app.include_router(facts.router)
    app.include_router(family.router)
    app.include_router(protections.router)
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)
    app.include_router(agency.router)
    app.include_router(experiments.router)
    console.mount(app, app.state.dunning.services)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI served from the ``swagger-ui-bundle`` wheel: no CDN, no fetch."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="dunning API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
