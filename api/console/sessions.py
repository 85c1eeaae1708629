"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie; the rest in memory.

A session holds the signed-in user's id (their roles are read afresh on every request), its CSRF
token, and when it was last used: after ``idle_seconds`` without a request it is gone. Sessions
live in the serving process: restarting ``dunning run`` signs everyone out.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

COOKIE = "dunning_console"
PRE_COOKIE = "dunning_console_pre"
"""The sign-in form's CSRF token (double submit), before there is a session."""
IDLE_SECONDS = 30 * 60


@dataclass
class ConsoleSession:
    id: str
    user_id: str
    csrf: str
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)
    """Messages for the next page: (kind, text), kind "ok" or "refused"."""
    kept: dict[str, dict[str, str]] = field(default_factory=dict)
    """A refused form's fields by "<action> <account number>", shown again once in that account's
    form so that nothing typed is lost."""


class SessionStore:
    def __init__(self, idle_seconds: float = IDLE_SECONDS) -> None:
        self.idle_seconds = idle_seconds
        self._sessions: dict[str, ConsoleSession] = {}

    def create(self, user_id: str) -> ConsoleSession:
        self._expire()
        session = ConsoleSession(
            secrets.token_urlsafe(32), user_id, secrets.token_urlsafe(32), time.monotonic()
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> ConsoleSession | None:
        """The live session of this id, touched; None when unknown or idle too long."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        now = time.monotonic()
        if session is None:
            return None
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[session_id]
            return None
        session.last_seen = now
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]:
            del self._sessions[key]
