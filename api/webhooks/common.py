"""Deduplication of provider events: one request claims an event atomically, then applies it.

The claim is an ``INSERT ... ON CONFLICT DO NOTHING`` on the event's unique key: of 20 concurrent
copies of one event exactly one inserts the row and applies it; the others are duplicates. The
claim is marked applied afterwards. A request that fails while applying releases its claim, so the
provider's retry applies the event; a claim left by a crashed process is taken over after
:data:`CLAIM_LEASE`. Applying twice after such a crash is harmless: ledger changes are idempotent
and workflow signals are deduplicated by the same reference.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from models.orm import WebhookEvent

CLAIM_LEASE = dt.timedelta(minutes=5)


def claim(session_factory: sessionmaker[Session], provider: str, event_id: str, kind: str) -> bool:
    """Take the event for this request. False when another request has (or had) it."""
    with session_factory.begin() as session:
        inserted = session.execute(
            insert(WebhookEvent)
            .values(provider=provider, event_id=event_id, kind=kind[:32])
            .on_conflict_do_nothing(index_elements=["provider", "event_id"])
            .returning(WebhookEvent.event_id)
        ).scalar()
        if inserted is not None:
            return True
        # A claim never applied and older than the lease: its process died; take it over.
        taken = session.execute(
            update(WebhookEvent)
            .where(
                WebhookEvent.provider == provider,
                WebhookEvent.event_id == event_id,
                WebhookEvent.applied_at.is_(None),
                WebhookEvent.received_at < func.now() - CLAIM_LEASE,
            )
            .values(received_at=func.now())
            .returning(WebhookEvent.event_id)
        ).scalar()
        return taken is not None


def release(session_factory: sessionmaker[Session], provider: str, event_id: str) -> None:
    """Give a claim back after a failure, so that the provider's retry applies the event."""
    with session_factory.begin() as session:
        session.execute(
            delete(WebhookEvent).where(
                WebhookEvent.provider == provider,
                WebhookEvent.event_id == event_id,
                WebhookEvent.applied_at.is_(None),
            )
        )


def already_seen(session_factory: sessionmaker[Session], provider: str, event_id: str) -> bool:
    with session_factory() as session:
        return session.get(WebhookEvent, (provider, event_id)) is not None


def mark_seen(
    session_factory: sessionmaker[Session], provider: str, event_id: str, kind: str
) -> None:
    """Mark the event applied (claiming it too, for a caller that did not)."""
    with session_factory.begin() as session:
        session.execute(
            insert(WebhookEvent)
            .values(provider=provider, event_id=event_id, kind=kind[:32], applied_at=func.now())
            .on_conflict_do_update(
                index_elements=["provider", "event_id"], set_={"applied_at": func.now()}
            )
        )
