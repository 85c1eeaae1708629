"""Repositories on a real PostgreSQL, schema built by the migrations, each test rolled back."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.orm import Account, ChargeLine, Communication
from models.orm import repositories as repo
from models.policy import Channel

NOW = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)


def _account(session: Session, number: str, days_old: int, cents: int) -> Account:
    guarantor = repo.upsert_guarantor(
        session, f"G-{number}", {"first_name": "Testy", "last_name": "Synthetic"}
    )
    account = Account(
        account_number=number,
        guarantor=guarantor,
        policy_name="physician",
        opened_at=NOW - dt.timedelta(days=days_old),
    )
    session.add(account)
    session.flush()
    repo.add_charge_line(
        session,
        account,
        ChargeLine(
            external_ref=f"C-{number}",
            service_date=(NOW - dt.timedelta(days=days_old)).date(),
            description="Office visit",
            charges_cents=cents,
        ),
    )
    return account


def test_schema_comes_from_the_migrations(db_session: Session) -> None:
    tables = set(inspect(db_session.connection()).get_table_names())
    assert {
        "alembic_version",
        "guarantors",
        "accounts",
        "charge_lines",
        "payments",
        "communications",
        "staff_tasks",
        "audit_events",
        "policy_versions",
        "channel_preferences",
    } <= tables


def test_aging_buckets(db_session: Session) -> None:
    """Exactly this test's amounts land in each bucket, edges included (30 | 31, 120 | 121).

    The report covers the whole (shared) database, so the test compares it before and after
    adding its own accounts, inside its own transaction, and asks for exact differences.
    """
    before = repo.aging(db_session, NOW)
    for number, days, cents in [
        ("AG-1", 5, 1000),
        ("AG-2", 30, 2000),
        ("AG-3", 31, 4000),
        ("AG-4", 75, 8000),
        ("AG-5", 120, 16000),
        ("AG-6", 121, 32000),
        ("AG-7", 400, 64000),
    ]:
        _account(db_session, number, days, cents)
    after = repo.aging(db_session, NOW)
    assert {name: after[name] - before[name] for name in after} == {
        "0-30": 3000,
        "31-60": 4000,
        "61-90": 8000,
        "91-120": 16000,
        "120+": 96000,
    }


def test_payment_once_per_reference(db_session: Session) -> None:
    account = _account(db_session, "PAY-1", 10, 5000)
    _, new = repo.record_payment(db_session, account, "REF-1", 1500, NOW)
    _, again = repo.record_payment(db_session, account, "REF-1", 1500, NOW)
    assert (new, again) == (True, False) and account.balance_cents == 3500
    other = _account(db_session, "PAY-2", 10, 5000)
    with pytest.raises(ValueError, match="reference"):
        repo.record_payment(db_session, other, "REF-1", 100, NOW)
    assert other.balance_cents == 5000


def test_charge_line_once_per_reference(db_session: Session) -> None:
    account = _account(db_session, "CH-1", 10, 5000)
    assert not repo.add_charge_line(
        db_session,
        account,
        ChargeLine(
            external_ref="C-CH-1",
            service_date=NOW.date(),
            description="Office visit",
            charges_cents=5000,
        ),
    )
    assert account.balance_cents == 5000


def test_outbox_key_is_unique(db_session: Session) -> None:
    account = _account(db_session, "OB-1", 1, 5000)
    for _ in range(2):
        db_session.add(
            Communication(
                idempotency_key="k/1/statement-1",
                account_id=account.id,
                step_id="statement-1",
                policy_hash="0" * 64,
                channel=Channel.LETTER,
                template="statement",
            )
        )
    with pytest.raises(IntegrityError):
        db_session.flush()


def test_contact_profile_carries_flags_not_addresses(db_session: Session) -> None:
    guarantor = repo.upsert_guarantor(
        db_session,
        "G-FLAGS",
        {
            "first_name": "Testy",
            "last_name": "Synthetic",
            "email": "t@example.test",
            "phone": "+12125550111",
            "address_line1": None,
            "postal_code": None,
        },
    )
    repo.set_channel_consent(db_session, guarantor, Channel.SMS, False)
    profile = repo.contact_profile(guarantor)
    assert profile.status(Channel.EMAIL).reachable
    assert not profile.status(Channel.LETTER).reachable
    assert not profile.status(Channel.SMS).consent
    assert "example.test" not in profile.model_dump_json()
