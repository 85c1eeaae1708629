"""Retention of delivered bookkeeping rows: the signal outbox and the webhook claims.

Both tables only grow otherwise: every ledger fact leaves a delivered ``signal_outbox`` row, every
provider event a ``webhook_events`` claim. Once delivered (applied) and older than
``ledger.retention_days`` they prove nothing more and are deleted, a bounded chunk per statement
so that no long lock is held. Pending outbox messages and claims still being applied are never
pruned. The daily reconciliation (the ``dunning-reconcile`` schedule) and ``dunning reconcile``
prune; the ledger's own facts (payments, adjustments, drift records) are kept.

A webhook event older than the retention is no replay risk: SendGrid signatures older than
``api.webhooks.sendgrid.MAX_AGE`` are refused, and applying a Twilio status or reply again is
idempotent.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Delete, delete, select
from sqlalchemy.orm import Session, sessionmaker

from models.orm import SignalOutbox, WebhookEvent

CHUNK = 5_000


@dataclass(frozen=True)
class Pruned:
    signal_outbox: int = 0
    webhook_events: int = 0

    @property
    def total(self) -> int:
        return self.signal_outbox + self.webhook_events


def prune(
    session_factory: sessionmaker[Session], retention_days: int, now: dt.datetime | None = None
) -> Pruned:
    """Delete delivered outbox rows and applied webhook claims older than ``retention_days``."""
    if retention_days < 1:
        raise ValueError("retention_days: at least 1 day")
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=retention_days)
    outbox = _chunked(
        session_factory,
        lambda: delete(SignalOutbox).where(
            SignalOutbox.id.in_(
                select(SignalOutbox.id)
                .where(SignalOutbox.delivered_at.is_not(None), SignalOutbox.delivered_at < cutoff)
                .limit(CHUNK)
            )
        ),
    )
    webhooks = _chunked(
        session_factory,
        lambda: delete(WebhookEvent).where(
            WebhookEvent.applied_at.is_not(None),
            WebhookEvent.applied_at < cutoff,
            # A bounded chunk: the key of the oldest applied events.
            WebhookEvent.event_id.in_(
                select(WebhookEvent.event_id)
                .where(WebhookEvent.applied_at.is_not(None), WebhookEvent.applied_at < cutoff)
                .order_by(WebhookEvent.applied_at)
                .limit(CHUNK)
            ),
        ),
    )
    return Pruned(outbox, webhooks)


def _chunked(session_factory: sessionmaker[Session], statement: Callable[[], Delete]) -> int:
    total = 0
    while True:
        with session_factory.begin() as session:
            result = cast(CursorResult[Any], session.execute(statement()))
            deleted = result.rowcount
        total += deleted
        if deleted < CHUNK:
            return total
