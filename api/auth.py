"""Bearer tokens: stored as SHA-256 hashes, each with one role; a route names the permission.

A token is 32 random bytes (``secrets.token_urlsafe``) shown once at creation. Because it is
random rather than chosen by a person, a single SHA-256 is enough to keep the stored hash useless
to a thief, and a request is checked with one indexed lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.orm import ApiRole, ApiToken, AuditEvent
from services.identity import Actor, ActorKind

TOKEN_PREFIX = "dun_"
NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
"""Token names act as staff ids in the workflow (``requested_by``), so they follow that pattern."""


class Permission(StrEnum):
    INTAKE = "intake"  # balances, payments, adjustments
    READ = "read"  # status, account, worklist, aging
    ACT = "act"  # hold, resume, hardship, plan, settle, request write-off or referral, calls
    DECIDE = "decide"  # approve or deny a task (the workflow still checks the policy's approvers)


PERMISSIONS: dict[ApiRole, frozenset[Permission]] = {
    ApiRole.INTEGRATION: frozenset({Permission.INTAKE}),
    ApiRole.STAFF: frozenset({Permission.READ, Permission.ACT}),
    ApiRole.SUPERVISOR: frozenset({Permission.READ, Permission.ACT, Permission.DECIDE}),
    ApiRole.BILLING_LEAD: frozenset(Permission),
}


@dataclass(frozen=True)
class Principal:
    """Who calls: the token's name (the actor in the audit trail) and its role."""

    name: str
    role: ApiRole

    def actor(self) -> Actor:
        """The identity services act for (interim: the token's name and its one role)."""
        kind = ActorKind.INTEGRATION if self.role is ApiRole.INTEGRATION else ActorKind.USER
        return Actor(id=self.name, name=self.name, kind=kind, roles=frozenset({self.role.value}))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, role: ApiRole) -> str:
    """Store a new token's hash under ``name``; return the token (it is never stored).

    Raises:
        ValueError: the name is not a valid staff id, or is already taken.
    """
    if not NAME_RE.match(name):
        raise ValueError("name: letters, digits and . _ @ - only, at most 64")
    if session.scalars(select(ApiToken).where(ApiToken.name == name)).first() is not None:
        raise ValueError(f"name: a token named {name!r} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, token_hash=hash_token(token)))
    session.add(
        AuditEvent(actor="cli", action="token_created", detail={"name": name, "role": role.value})
    )
    return token


def revoke_token(session: Session, name: str) -> bool:
    """Revoke the token named ``name``; False if there is none that is active."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return False
    row.revoked_at = dt.datetime.now(dt.UTC)
    session.add(AuditEvent(actor="cli", action="token_revoked", detail={"name": name}))
    return True


def find_principal(session: Session, token: str) -> Principal | None:
    row = session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    ).first()
    return Principal(row.name, row.role) if row is not None else None


bearer = HTTPBearer(auto_error=False, description="an API token from `dunning token create`")


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency: the caller's principal, if its role grants ``permission``.

    401 without a valid token; 403 (written to the audit trail) when the role does not allow it.
    """

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        unauthorized = HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
        if credentials is None or not credentials.credentials.isascii():
            raise unauthorized
        session_factory = request.app.state.dunning.session_factory
        with session_factory.begin() as session:
            principal = find_principal(session, credentials.credentials)
            if principal is None:
                raise unauthorized
            if permission not in PERMISSIONS[principal.role]:
                session.add(
                    AuditEvent(
                        actor=principal.name,
                        action="forbidden",
                        detail={
                            "permission": permission.value,
                            "role": principal.role.value,
                            "route": request.scope.get("route").path  # type: ignore[union-attr]
                            if request.scope.get("route")
                            else "",
                        },
                    )
                )
        if permission not in PERMISSIONS[principal.role]:
            raise HTTPException(
                403, f"role {principal.role.value!r} may not do this ({permission.value})"
            )
        return principal

    return dependency
