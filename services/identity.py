"""Who acts: a verified staff user, an integration, or the engine itself.

Every use case in ``services`` takes an :class:`Actor`. Front doors build it from a verified
credential (an API token, the CLI's login token), never from a name typed by the caller. Four
eyes compares :attr:`Actor.id`; approver checks compare :attr:`Actor.roles`.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ActorKind(StrEnum):
    USER = "user"
    INTEGRATION = "integration"
    SYSTEM = "system"


class Actor(BaseModel):
    """A verified identity and the roles it holds."""

    model_config = ConfigDict(frozen=True)

    id: str
    """Stable identity (a user's or an integration's id): what four eyes compares."""
    name: str
    """Shown in the audit trail and the worklist."""
    kind: ActorKind = ActorKind.USER
    roles: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        return role in self.roles


SYSTEM = Actor(id="system", name="dunning", kind=ActorKind.SYSTEM)
"""The engine itself (reconciliation, schedules, webhooks it verified)."""
