"""Console sign-in: one-time passwords, Argon2 verification, lock-out after repeated failures.

An administrator's ``dunning user add`` (or ``dunning user password NAME``) sets a random password
and prints it once; only its Argon2id hash is stored (``argon2-cffi``). Each failed sign-in counts;
after :data:`MAX_FAILURES` in a row the user is locked out for :data:`LOCK_MINUTES`, whatever the
password. Every sign-in, done or refused, is an audit row (never the password).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from models.orm import ConsoleLogin, User
from services import audit
from services.audit import Outcome
from services.identity import Actor, ActorKind
from services.users import IdentityError, actor_of, find_user

MAX_FAILURES = 5
LOCK_MINUTES = 15
_hasher = PasswordHasher()
_UNKNOWN = Actor(id="unknown", name="unknown", kind=ActorKind.USER)
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
"""Verified against when the name is unknown, so that a wrong name takes as long as a wrong
password (no telling which names exist)."""


@dataclass(frozen=True)
class SignInRefused:
    """Wrong name or password, a disabled user, or a lock-out; the message is safe to show.

    Returned, not raised: the failure count and the audit row must commit with the refusal."""

    message: str


def set_password(session: Session, name: str, by: Actor) -> str:
    """A new random one-time password for ``name``'s console sign-in, returned once; unlocks.

    Raises:
        IdentityError: no active user of that name.
    """
    user = find_user(session, name)
    if user is None or not user.active:
        raise IdentityError(f"name: no active user named {name!r}")
    password = secrets.token_urlsafe(12)
    row = session.get(ConsoleLogin, user.id)
    if row is None:
        row = ConsoleLogin(user_id=user.id, password_hash="")
        session.add(row)
    row.password_hash = _hasher.hash(password)
    row.failed_attempts, row.locked_until = 0, None
    row.password_set_at = dt.datetime.now(dt.UTC)
    audit.record(session, by, "console_password_set", None, Outcome.DONE, {"user_id": str(user.id)})
    return password


def sign_in(session: Session, name: str, password: str, now: dt.datetime) -> Actor | SignInRefused:
    """The user ``name`` if ``password`` is theirs and they are neither disabled nor locked out;
    else why not: "wrong name or password" (never which), or locked out and until when."""
    user = find_user(session, name) if name else None
    row = session.get(ConsoleLogin, user.id) if user is not None else None
    if user is None or row is None or not user.active:
        _verify(_DUMMY_HASH, password)
        _refused(session, _UNKNOWN, None, "unknown_user")
        return SignInRefused("wrong name or password")
    who = actor_of(user)
    if row.locked_until is not None and row.locked_until > now:
        _refused(session, who, user, "locked_out")
        return SignInRefused(
            f"too many failed sign-ins: locked until {row.locked_until:%H:%M} UTC; "
            "an administrator can set a new password (`dunning user password NAME`)"
        )
    if not _verify(row.password_hash, password):
        row.failed_attempts += 1
        if row.failed_attempts >= MAX_FAILURES:
            row.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
            row.failed_attempts = 0
            _refused(session, who, user, "locked_out")
            return SignInRefused(
                f"too many failed sign-ins: locked for {LOCK_MINUTES} minutes; "
                "an administrator can set a new password (`dunning user password NAME`)"
            )
        _refused(session, who, user, "wrong_password")
        return SignInRefused("wrong name or password")
    row.failed_attempts, row.locked_until = 0, None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = _hasher.hash(password)
    audit.record(session, who, "console_sign_in", None, Outcome.DONE)
    return who


def active_actor(session: Session, user_id: str) -> Actor | None:
    """The signed-in user as they are now (roles may have changed); None once disabled."""
    try:
        key = uuid.UUID(user_id)
    except ValueError:
        return None
    user = session.get(User, key)
    return actor_of(user) if user is not None and user.active else None


def sign_out(session: Session, who: Actor) -> None:
    audit.record(session, who, "console_sign_out", None, Outcome.DONE)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _refused(session: Session, who: Actor, user: User | None, why: str) -> None:
    detail = {"why": why} if user is None else {"why": why, "user_id": str(user.id)}
    audit.record(session, who, "console_sign_in", None, Outcome.REFUSED, detail)
