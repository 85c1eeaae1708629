"""Reports from the live ledger, shared by the console and ``dunning report``.

Each report is a list of rows (a header, then values); :func:`to_csv` writes any of them as CSV
safe to open in a spreadsheet (a cell starting with = + - @, a tab or a carriage return is
prefixed with ``'`` so that it is never run as a formula).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.orm import Account, AccountStatus
from models.orm.repositories import AGING_BUCKETS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
REPORTS = ("aging",)


@dataclass(frozen=True)
class AgingBucket:
    bucket: str
    accounts: int
    cents: int


def aging(session: Session, as_of: dt.datetime) -> list[AgingBucket]:
    """Open balances owed (above zero) by days since the account opened: how many, how much."""
    age = func.date_part("day", as_of - Account.opened_at)
    counts = {name: [0, 0] for name, _, _ in AGING_BUCKETS}
    rows = session.execute(
        select(age, Account.balance_cents).where(
            Account.status == AccountStatus.OPEN, Account.balance_cents > 0
        )
    ).all()
    for days, cents in rows:
        name = bucket_of(int(days))
        counts[name][0] += 1
        counts[name][1] += cents
    return [AgingBucket(name, n, cents) for name, (n, cents) in counts.items()]


def bucket_of(days: int) -> str:
    """The aging bucket of a balance opened ``days`` ago (the same for one account and for all)."""
    for name, low, high in AGING_BUCKETS:
        if days >= low and (high is None or days <= high):
            return name
    return AGING_BUCKETS[0][0]  # opened in the future (a clock set wrong): the youngest


def aging_rows(buckets: list[AgingBucket]) -> list[list[str]]:
    """The aging report as table rows: a header, a row per bucket and a total."""
    rows = [["days", "accounts", "amount"]]
    rows += [[b.bucket, str(b.accounts), dollars(b.cents)] for b in buckets]
    rows.append(
        ["total", str(sum(b.accounts for b in buckets)), dollars(sum(b.cents for b in buckets))]
    )
    return rows


def dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: a leading formula character gets a ``'`` before it."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def to_csv(rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()
