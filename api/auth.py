"""Bearer tokens: each acts for its user (with the user's roles) or for an integration.

A route names the permission it needs; the caller's permissions are those of its user's roles in
the catalogue (``config/roles.yaml``); an integration may only post intake. Tokens are issued by
``dunning user add`` / ``dunning token create`` (see ``services.users``).

Repeated failures from one client are throttled (429 with Retry-After) before any lookup, and
refusals reach the audit trail at most once per client (or actor) and window, with a count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.edge import AuditLimiter, AuthThrottle
from config.roles import Permission
from models.orm import ApiRole, AuditEvent
from services.identity import Actor, permissions
from services.users import NAME_RE, TOKEN_PREFIX, add_user, find_user, hash_token, issue_token
from services.users import resolve_token as _resolve
from services.users import revoke_token as _revoke_token

__all__ = [
    "NAME_RE",
    "TOKEN_PREFIX",
    "Permission",
    "Principal",
    "create_token",
    "find_principal",
    "hash_token",
    "require",
    "revoke_token",
]


@dataclass(frozen=True)
class Principal:
    """Who calls: the token's name, and the identity (user or integration) it acts for."""

    token_name: str
    identity: Actor
    granted: frozenset[Permission]

    @property
    def id(self) -> str:
        """The stable identity: what four eyes compares (``requested_by``, ``decided_by``)."""
        return self.identity.id

    @property
    def name(self) -> str:
        """Shown in the audit trail: the user's name, or the integration token's name."""
        return self.identity.name

    @property
    def roles(self) -> frozenset[str]:
        return self.identity.roles

    def actor(self) -> Actor:
        """The identity services act for."""
        return self.identity


def find_principal(session: Session, token: str) -> Principal | None:
    found = _resolve(session, token)
    if found is None:
        return None
    row, actor = found
    return Principal(row.name, actor, permissions(actor))


def create_token(session: Session, name: str, role: ApiRole) -> str:
    """A token named ``name`` with one of the 0003 roles: an integration's, or a new user of the
    same name holding ``role`` (for scripts and tests; people get theirs from ``dunning user``).

    Raises:
        ValueError: a bad or taken name.
    """
    from services.identity import SYSTEM

    if role is ApiRole.INTEGRATION:
        token, _ = issue_token(session, SYSTEM, name=name)
        return token
    if find_user(session, name) is None:
        add_user(session, name, [role.value], SYSTEM)
    token, _ = issue_token(session, SYSTEM, user=name, name=name)
    return token


def revoke_token(session: Session, name: str) -> bool:
    """Revoke the token named ``name``; False if there is none that is active."""
    from services.identity import SYSTEM

    return _revoke_token(session, name, SYSTEM)


bearer = HTTPBearer(
    auto_error=False, description="a token from `dunning user add` or `token create`"
)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def require(permission: Permission) -> Callable[..., Principal]:
    """A dependency: the caller's principal, if its roles grant ``permission``.

    401 without a valid token; 429 after too many failures from the same client; 403 (audited,
    at most once per window for the same actor and permission) when the roles do not allow it.
    """

    def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        throttle: AuthThrottle = request.app.state.auth_throttle
        limiter: AuditLimiter = request.app.state.audit_limiter
        client = _client(request)
        wait = throttle.retry_after(client)
        if wait:
            raise HTTPException(
                429,
                "too many failed authentications; try again later",
                headers={"Retry-After": str(wait)},
            )
        session_factory = request.app.state.dunning.session_factory
        principal = None
        if credentials is not None:
            with session_factory() as session:
                principal = find_principal(session, credentials.credentials)
        if principal is None:
            failures = throttle.failed(client)
            suppressed = limiter.admit(f"auth_failed:{client}")
            if suppressed is not None:
                with session_factory.begin() as session:
                    session.add(
                        AuditEvent(
                            actor="unknown",
                            action="auth_failed",
                            detail={
                                "client": client,
                                "failures": failures,
                                "suppressed": suppressed,
                            },
                        )
                    )
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if permission not in principal.granted:
            route = request.scope.get("route")
            suppressed = limiter.admit(f"forbidden:{principal.id}:{permission.value}")
            if suppressed is not None:
                with session_factory.begin() as session:
                    session.add(
                        AuditEvent(
                            actor=principal.name,
                            action="forbidden",
                            detail={
                                "actor_id": principal.id,
                                "permission": permission.value,
                                "roles": sorted(principal.roles),
                                "route": getattr(route, "path", ""),
                                "suppressed": suppressed,
                            },
                        )
                    )
            held = ", ".join(sorted(principal.roles)) or principal.identity.kind.value
            raise HTTPException(403, f"{held} may not do this ({permission.value})")
        return principal

    return dependency
