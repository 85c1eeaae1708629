"""Staff users for tests that drive the CLI or the API as a person: a user and their login token."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session, sessionmaker

from services.identity import SYSTEM
from services.users import add_user, issue_token


def signed_in(session_factory: sessionmaker[Session], *roles: str) -> tuple[str, str]:
    """A new user holding ``roles``: (their login token, their user id)."""
    name = f"{roles[0] if roles else 'user'}-{uuid.uuid4().hex[:8]}"
    with session_factory.begin() as session:
        user = add_user(session, name, list(roles), SYSTEM)
        token = issue_token(session, SYSTEM, user=name)[0]
        return token, str(user.id)
