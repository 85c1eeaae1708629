"""Deduplication of provider events: an event is marked seen after it was applied.

Applying first and marking after means a crash in between applies it again on the provider's
retry, which is harmless: ledger changes are idempotent and workflow signals are deduplicated by
the same reference. Marking first would lose the event instead.
"""

from __future__ import annotations

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from models.orm import WebhookEvent


def already_seen(session_factory: sessionmaker[Session], provider: str, event_id: str) -> bool:
    with session_factory() as session:
        return session.get(WebhookEvent, (provider, event_id)) is not None


def mark_seen(
    session_factory: sessionmaker[Session], provider: str, event_id: str, kind: str
) -> None:
    with session_factory.begin() as session:
        session.execute(
            insert(WebhookEvent)
            .values(provider=provider, event_id=event_id, kind=kind[:32])
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        )
