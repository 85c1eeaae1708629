"""The audit trail: every action from any front door, done or refused, with who, what and why.

The service layer writes it (front doors never do): who is the :class:`~services.identity.Actor`'s
id, what the action, why a note id or the rejection's kind, when the database's clock.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from models.orm import AuditEvent
from services.identity import Actor


class Outcome(StrEnum):
    DONE = "done"
    REFUSED = "refused"


def record(
    session: Session,
    actor: Actor,
    action: str,
    account_id: uuid.UUID | None,
    outcome: Outcome,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add one audit row (the caller's transaction commits it)."""
    session.add(
        AuditEvent(
            actor=actor.id,
            action=action,
            account_id=account_id,
            detail={
                "outcome": outcome.value,
                "actor_kind": actor.kind.value,
                "actor_name": actor.name,
                "roles": sorted(actor.roles),
                **(detail or {}),
            },
        )
    )
