"""One due date per statement cycle; no "past due" before the due date has passed."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from activities.messaging import MessagingActivities, PolicyStore
from activities.statement_cycle import statement_due
from config.loader import load_policy
from config.settings import Settings
from models.orm import Communication
from models.policy import Channel
from tests.fakes.accounts import make_account, step_input
from worker import build_senders

DAY0 = dt.datetime(2031, 6, 3, 15, 0, tzinfo=dt.UTC)  # a Tuesday, 11:00 in New York


def test_statement_due_is_pure_and_consistent() -> None:
    today = dt.date(2031, 6, 3)
    assert statement_due(None, today, True) == (dt.date(2031, 7, 3), False)
    # A notice quotes the cycle's date, not one of its own.
    assert statement_due(dt.date(2031, 7, 3), dt.date(2031, 6, 6), False) == (
        dt.date(2031, 7, 3),
        False,
    )
    # The next statement on the due date itself is not past due; the day after, it is.
    assert statement_due(dt.date(2031, 7, 3), dt.date(2031, 7, 3), True)[1] is False
    assert statement_due(dt.date(2031, 7, 3), dt.date(2031, 7, 4), True)[1] is True


def _body(session_factory: sessionmaker[Session], communication_id: str | None) -> str:
    assert communication_id
    with session_factory() as session:
        row = session.get(Communication, uuid.UUID(communication_id))
        assert row is not None and row.body
        return row.body


def test_a_cycles_messages_quote_one_due_date(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    bundle = load_policy("physician")
    now = [DAY0]
    messaging = MessagingActivities(
        session_factory, build_senders(settings), PolicyStore(session_factory), clock=lambda: now[0]
    )

    def send(account_id: str, step_id: str, at: dt.datetime, channel: Channel) -> str:
        now[0] = at
        result = messaging.send_step(step_input(bundle, account_id, step_id, channels=[channel]))
        return _body(session_factory, result.communication_id)

    on_time = make_account(session_factory, bundle)
    first = send(on_time, "statement-1", DAY0, Channel.LETTER)
    assert "Please pay by: 2031-07-03" in first
    notice = send(on_time, "notice-1", DAY0 + dt.timedelta(days=3), Channel.EMAIL)
    assert "due 2031-07-03" in notice
    reminder = send(on_time, "reminder-1", DAY0 + dt.timedelta(days=21), Channel.EMAIL)
    assert "by 2031-07-03" in reminder
    # Statement 2 on the first one's due date: a new cycle, and not yet past due.
    second = send(on_time, "statement-2", DAY0 + dt.timedelta(days=30), Channel.LETTER)
    assert "past-due" not in second and "past due" not in second
    assert "Please pay by: 2031-08-02" in second

    late = make_account(session_factory, bundle)
    send(late, "statement-1", DAY0, Channel.LETTER)
    overdue = send(late, "statement-2", DAY0 + dt.timedelta(days=34), Channel.LETTER)
    assert "past-due balance" in overdue
    with session_factory() as session:
        letters = session.scalars(
            select(Communication.letter).where(
                Communication.account_id == uuid.UUID(on_time),
                Communication.channel == Channel.LETTER,
            )
        ).all()
    assert sorted(str(letter["due_date"]) for letter in letters if letter) == [
        "2031-07-03",
        "2031-08-02",
    ]
