"""What every route needs, built once by ``create_app`` and kept on ``app.state.dunning``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.edge import AuditLimiter
from config.settings import Settings
from services.context import Services
from starter import Intake


@dataclass
class AppState:
    settings: Settings
    session_factory: sessionmaker[Session]
    client: Client
    intake: Intake
    services: Services
    audit_limiter: AuditLimiter = field(default_factory=lambda: AuditLimiter(60))
    """Refusals reach the audit trail at most once per actor, action and reason in a window."""


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.dunning
    return state


State = Annotated[AppState, Depends(_state)]
