"""Retention: delivered outbox rows and applied webhook claims past the retention are pruned;
pending messages, fresh rows and claims still being applied are kept."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from config.loader import load_policy
from models.orm import SignalOutbox, WebhookEvent
from services import retention
from tests.fakes.accounts import make_account

NOW = dt.datetime.now(dt.UTC)


def _outbox(session: Session, account_id: str, delivered_days_ago: int | None) -> int:
    row = SignalOutbox(
        account_id=uuid.UUID(account_id),
        name="record_payment",
        payload={"reference": uuid.uuid4().hex},
        delivered_at=None
        if delivered_days_ago is None
        else NOW - dt.timedelta(days=delivered_days_ago),
        outcome=None if delivered_days_ago is None else "delivered",
    )
    session.add(row)
    session.flush()
    return row.id


def _webhook(session: Session, provider: str, applied_days_ago: int | None) -> str:
    event_id = uuid.uuid4().hex
    session.add(WebhookEvent(provider=provider, event_id=event_id, kind="delivered"))
    session.flush()
    if applied_days_ago is not None:
        at = NOW - dt.timedelta(days=applied_days_ago)
        session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.event_id == event_id)
            .values(applied_at=at, received_at=at)
        )
    return event_id


def test_delivered_rows_past_the_retention_are_pruned_and_the_rest_kept(
    session_factory: sessionmaker[Session],
) -> None:
    account_id = make_account(session_factory, load_policy("physician"))
    provider = f"t{uuid.uuid4().hex[:8]}"
    with session_factory.begin() as session:
        old = [_outbox(session, account_id, 45) for _ in range(3)]
        kept = [
            _outbox(session, account_id, 10),  # delivered, but recent
            _outbox(session, account_id, None),  # still pending: never pruned
        ]
        old_events = [_webhook(session, provider, 31) for _ in range(2)]
        kept_events = [
            _webhook(session, provider, 2),  # applied recently
            _webhook(session, provider, None),  # claimed, being applied
        ]

    pruned = retention.prune(session_factory, retention_days=30, now=NOW)

    assert pruned.signal_outbox >= 3 and pruned.webhook_events >= 2
    with session_factory() as session:
        left = set(
            session.scalars(
                select(SignalOutbox.id).where(SignalOutbox.account_id == uuid.UUID(account_id))
            )
        )
        events = set(
            session.scalars(select(WebhookEvent.event_id).where(WebhookEvent.provider == provider))
        )
    assert left == set(kept)
    assert not left & set(old)
    assert events == set(kept_events) and not events & set(old_events)
    # A second pass finds nothing more of this test's rows.
    assert retention.prune(session_factory, retention_days=30, now=NOW).total == 0


def test_prune_chunks_large_backlogs(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    account_id = make_account(session_factory, load_policy("physician"))
    with session_factory.begin() as session:
        for _ in range(7):
            _outbox(session, account_id, 60)
    monkeypatch.setattr(retention, "CHUNK", 3)  # several statements of at most 3 rows
    assert retention.prune(session_factory, retention_days=30, now=NOW).signal_outbox == 7
    with session_factory() as session:
        assert not session.scalars(
            select(SignalOutbox.id).where(SignalOutbox.account_id == uuid.UUID(account_id))
        ).all()


def test_retention_of_zero_days_is_refused(session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(ValueError, match="retention_days"):
        retention.prune(session_factory, retention_days=0)
