"""The first statement's date, kept on the account when the first statement goes out.

IRS 501(r) counts 120 days (extraordinary collection actions) and 240 days (applications for
financial assistance) from the first post-discharge billing statement; the agency receives the
date in placement rows. A letter opens a statement cycle (``activities.statement_cycle``), so the
first letter sent for an account is its first statement. Written once, never moved later.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from models.orm import Account
from models.policy import Channel


def record_first_statements(
    session: Session, sent: Iterable[tuple[uuid.UUID, Channel | str | None, dt.datetime]]
) -> None:
    """For each (account, channel, sent at) of a send: a letter dates the first statement."""
    first: dict[uuid.UUID, dt.datetime] = {}
    for account_id, channel, at in sent:
        if channel is not None and Channel(channel) is Channel.LETTER:
            first[account_id] = min(at, first.get(account_id, at))
    if not first:
        return
    # One executemany for the batch (psycopg sends it as one pipeline), never a trip per step.
    session.connection().execute(
        update(Account)
        .where(Account.id == bindparam("b_account"), Account.first_statement_at.is_(None))
        .values(first_statement_at=bindparam("b_at")),
        [{"b_account": a, "b_at": at} for a, at in first.items()],
    )
