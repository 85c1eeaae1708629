"""Staff users and their tokens: add, list, disable; issue, revoke and resolve bearer tokens.

A token is 32 random bytes (``secrets.token_urlsafe``) shown once at creation; only its SHA-256
is stored. Because it is random rather than chosen by a person, a single SHA-256 keeps the stored
hash useless to a thief, and a request is checked with one indexed lookup.

A token belongs to a user, and acts with that user's roles for as long as the user is active, or
to an integration (a billing system), which holds no staff role and may only post intake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from config.roles import Permission, RoleCatalogue, load_catalogue
from models.orm import ApiToken, AuditEvent, User
from services.identity import Actor, ActorKind, permissions

TOKEN_PREFIX = "dun_"
NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
NAME_RULE = "letters, digits and . _ @ - only, at most 64"


class IdentityError(ValueError):
    """A refused user or token operation; the message starts with the field it is about."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def actor_of(user: User) -> Actor:
    """The identity services act for: the user's id (what four eyes compares) and roles."""
    return Actor(id=str(user.id), name=user.name, kind=ActorKind.USER, roles=frozenset(user.roles))


def _audit(session: Session, by: Actor, action: str, **detail: object) -> None:
    session.add(AuditEvent(actor=by.name, action=action, detail={"actor_id": by.id, **detail}))


def _check_name(field: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise IdentityError(f"{field}: {name!r}: {NAME_RULE}")


def find_user(session: Session, name: str) -> User | None:
    return session.scalars(select(User).where(User.name == name)).first()


def add_user(
    session: Session,
    name: str,
    roles: Iterable[str],
    by: Actor,
    catalogue: RoleCatalogue | None = None,
) -> User:
    """Create an active user holding ``roles`` (each from the catalogue).

    Raises:
        IdentityError: a bad or taken name, no role, or a role the catalogue does not have.
    """
    _check_name("name", name)
    wanted = list(dict.fromkeys(roles))
    if not wanted:
        raise IdentityError("role: give at least one role")
    known = catalogue or load_catalogue()
    for role in wanted:
        if role not in known:
            raise IdentityError(
                f"role: unknown role {role!r}; the roles catalogue has "
                + ", ".join(sorted(known.roles))
            )
    if find_user(session, name) is not None:
        raise IdentityError(f"name: a user named {name!r} already exists")
    user = User(name=name, roles=wanted, active=True)
    session.add(user)
    session.flush()
    _audit(session, by, "user_added", user_id=str(user.id), name=name, roles=wanted)
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.created_at, User.name)))


def disable_user(session: Session, name: str, by: Actor) -> User:
    """Disable a user at once: none of its tokens works any more. The user is kept (its id stays
    in the audit trail and in workflows' histories) and its name is never reused.

    Raises:
        IdentityError: no such active user, or disabling yourself.
    """
    user = find_user(session, name)
    if user is None or not user.active:
        raise IdentityError(f"name: no active user named {name!r}")
    if by.id == str(user.id):
        raise IdentityError("name: you cannot disable yourself")
    now = dt.datetime.now(dt.UTC)
    user.active, user.disabled_at = False, now
    for token in session.scalars(
        select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    ):
        token.revoked_at = now
    _audit(session, by, "user_disabled", user_id=str(user.id), name=name)
    return user


def issue_token(
    session: Session, by: Actor, *, user: str | None = None, name: str | None = None
) -> tuple[str, ApiToken]:
    """A new token for ``user`` (by name), or for an integration named ``name`` when ``user`` is
    None. Returns the token (never stored) and its row; the token's name defaults to the user's
    name and a random suffix.

    Raises:
        IdentityError: unknown or disabled user, a bad or taken token name.
    """
    owner = None
    if user is not None:
        owner = find_user(session, user)
        if owner is None or not owner.active:
            raise IdentityError(f"user: no active user named {user!r}")
    if name is None:
        if owner is None:
            raise IdentityError("name: an integration's token needs a name")
        name = f"{owner.name[:50]}-{secrets.token_hex(4)}"
    _check_name("name", name)
    if session.scalars(select(ApiToken).where(ApiToken.name == name)).first() is not None:
        raise IdentityError(f"name: a token named {name!r} already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, user_id=owner.id if owner else None, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    _audit(
        session,
        by,
        "token_created",
        name=name,
        user=owner.name if owner else None,
        integration=owner is None,
    )
    return token, row


def revoke_token(session: Session, name: str, by: Actor) -> bool:
    """Revoke the token named ``name``; False if there is none that is active."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return False
    row.revoked_at = dt.datetime.now(dt.UTC)
    _audit(session, by, "token_revoked", name=name)
    return True


def resolve_token(session: Session, token: str) -> tuple[ApiToken, Actor] | None:
    """The active token and who it acts for; None for an unknown or revoked token or a token of
    a disabled user."""
    if not token.isascii():
        return None
    row = session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    if row.user_id is None:
        return row, Actor(id=f"integration:{row.id}", name=row.name, kind=ActorKind.INTEGRATION)
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return row, actor_of(user)


def admins_exist(session: Session, catalogue: RoleCatalogue | None = None) -> bool:
    """Whether any active user may administer users (before the first, anyone at the machine may
    add one: the database is theirs)."""
    known = catalogue or load_catalogue()
    return any(
        Permission.ADMIN in permissions(actor_of(user), known)
        for user in session.scalars(select(User).where(User.active.is_(True)))
    )
