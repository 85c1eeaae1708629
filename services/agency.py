"""The collection agency kept informed (issue 17 item 4, issue 18): placement rows, update files and
the recall.

After a placement the agency works from its placement file; every later change of the account
(a payment, an adjustment, a dispute, a bankruptcy, a death, a recall) is recorded once per
reference in ``agency_updates``, in the same transaction as the ledger change, and the day's
update file ``agency/agency-updates-YYYY-MM-DD.csv`` is written from those rows (the whole day's
file again, so a retry or a crash never loses nor doubles a row). Its columns are the placement
file's, with the live ledger balance, preceded by what changed: see README "The agency update
file".

The CSV cells are written by :func:`write_csv` alone, so that a cell-level guard (formula
neutralising) wraps one function.
"""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, selectinload, sessionmaker

from activities.messaging import contact_point
from config.private_files import private_dir, private_file
from config.settings import Settings
from models.orm import (
    Account,
    AccountStatus,
    AgencyUpdate,
    AuditEvent,
    ChargeLine,
    Communication,
    CommunicationStatus,
)
from models.policy import Channel
from models.safe_csv import SafeDictWriter

PLACEMENT_COLUMNS = [
    "account_number",
    "guarantor_ref",
    "first_name",
    "last_name",
    "address",
    "phone",
    "email",
    "balance",
    "opened_on",
    "first_statement_on",
    "placed_on",
    "approved_by",
    "last_contact_on",
    "balance_0_30",
    "balance_31_60",
    "balance_61_90",
    "balance_91_120",
    "balance_120_plus",
]
UPDATE_COLUMNS = ["update_on", "change", "amount", "reference", *PLACEMENT_COLUMNS]
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("balance_0_30", 0, 30),
    ("balance_31_60", 31, 60),
    ("balance_61_90", 61, 90),
    ("balance_91_120", 91, 120),
    ("balance_120_plus", 121, None),
)


class Change(StrEnum):
    """What the agency is told of a placed account."""

    PAYMENT = "payment"
    ADJUSTMENT = "adjustment"
    DISPUTE = "dispute"
    BANKRUPTCY = "bankruptcy"
    DEATH = "death"
    RECALL = "recall"


class Recalled(BaseModel):
    """A placed account taken back from the agency."""

    account_number: str
    balance_cents: int
    update_file: str


def export_dir(settings: Settings) -> Path:
    """Where placement and update files go (the worker's placements too)."""
    return Path(settings.data_dir) / "agency"


def _dollars(cents: int) -> str:
    return f"{cents / 100:.2f}"


def balance_by_age(
    lines: list[tuple[dt.date, int]], balance_cents: int, today: dt.date
) -> dict[str, int]:
    """The balance spread over age buckets by the visits' service dates.

    Payments and credits are taken from the oldest visits first, so what is still owed sits on
    the newest ones; anything above the visits' balances (a denial, a fee) counts as oldest.
    """
    buckets = {name: 0 for name, _, _ in AGE_BUCKETS}

    def bucket(day: dt.date) -> str:
        age = (today - day).days
        return next(
            n for n, low, high in AGE_BUCKETS if age >= low and (high is None or age <= high)
        )

    left = max(balance_cents, 0)
    ordered = sorted(lines)
    for day, cents in reversed(ordered):
        take = min(max(cents, 0), left)
        buckets[bucket(day)] += take
        left -= take
    if left and ordered:
        buckets[bucket(ordered[0][0])] += left
    elif left:
        buckets["balance_0_30"] += left
    return buckets


def placement_row(
    session: Session, account: Account, balance_cents: int, today: dt.date, approved_by: str
) -> dict[str, str]:
    """An account as the agency loads it: contact, balance, dates (first statement, last
    contact, placement) and the balance by age."""
    guarantor = account.guarantor
    lines = [
        (line.service_date, line.balance_cents)
        for line in session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id))
    ]
    last_contact = session.scalar(
        select(func.max(Communication.sent_at)).where(
            Communication.account_id == account.id,
            Communication.status == CommunicationStatus.SENT,
        )
    )
    placed = account.placed_at.date() if account.placed_at else today
    row = {
        "account_number": account.account_number,
        "guarantor_ref": guarantor.external_ref,
        "first_name": guarantor.first_name,
        "last_name": guarantor.last_name,
        "address": contact_point(guarantor, Channel.LETTER),
        "phone": guarantor.phone or "",
        "email": guarantor.email or "",
        "balance": _dollars(balance_cents),
        "opened_on": account.opened_at.date().isoformat(),
        "first_statement_on": account.first_statement_at.date().isoformat()
        if account.first_statement_at
        else "",
        "placed_on": placed.isoformat(),
        "approved_by": approved_by,
        "last_contact_on": last_contact.date().isoformat() if last_contact else "",
    }
    for name, cents in balance_by_age(lines, balance_cents, today).items():
        row[name] = _dollars(cents)
    return row


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]], *, append: bool) -> None:
    """Write rows of cells to an owner-only CSV file (names and addresses inside)."""
    private_dir(path.parent)
    new_file = not append or not path.exists()
    private_file(path)
    with path.open("a" if append else "w", newline="", encoding="utf-8") as handle:
        writer = SafeDictWriter(handle, fieldnames=columns)  # no formula reaches a spreadsheet
        if new_file:
            writer.writeheader()
        writer.writerows(rows)


def record_update(
    session: Session,
    account: Account,
    change: Change,
    reference: str,
    by: str,
    amount_cents: int = 0,
) -> bool:
    """Record a change the agency must hear of, once per reference. False when the account is
    not with the agency (nothing to tell) or the reference was already recorded."""
    if account.status is not AccountStatus.PLACED:
        return False
    session.flush()  # the ledger balance after the change
    inserted = session.execute(
        insert(AgencyUpdate)
        .values(
            account_id=account.id,
            reference=f"{change.value}:{reference}"[:120],
            change=change.value,
            amount_cents=amount_cents,
            balance_cents=account.balance_cents,
            reported_by=by[:64],
        )
        .on_conflict_do_nothing(index_elements=["reference"])
        .returning(AgencyUpdate.id)
    ).scalar()
    if inserted is not None:
        session.add(
            AuditEvent(
                actor=by,
                action="agency_update",
                account_id=account.id,
                detail={"change": change.value, "amount_cents": amount_cents},
            )
        )
    return inserted is not None


def recall_in_ledger(session: Session, account: Account, by: str, why: str) -> None:
    """Take a placed account back from the agency: the update row, the status, the audit row.

    The caller checked that the account is placed; ``why`` is a short kind, never free text.
    """
    record_update(session, account, Change.RECALL, f"{account.id}:{uuid.uuid4().hex[:12]}", by)
    account.status = AccountStatus.RECALLED
    account.closed_at = dt.datetime.now(dt.UTC)
    session.add(
        AuditEvent(
            actor=by, action="recalled_from_agency", account_id=account.id, detail={"why": why}
        )
    )


def update_file(directory: Path, day: dt.date) -> Path:
    return directory / f"agency-updates-{day.isoformat()}.csv"


def write_update_file(
    session_factory: sessionmaker[Session], directory: Path, day: dt.date | None = None
) -> Path:
    """Write the day's update file from its recorded changes (the whole day again)."""
    day = day or dt.datetime.now(dt.UTC).date()
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    with session_factory() as session:
        updates = session.scalars(
            select(AgencyUpdate)
            .where(
                AgencyUpdate.created_at >= start,
                AgencyUpdate.created_at < start + dt.timedelta(days=1),
            )
            .order_by(AgencyUpdate.id)
        ).all()
        ids = {u.account_id for u in updates}
        accounts = {
            a.id: a
            for a in session.scalars(
                select(Account).where(Account.id.in_(ids)).options(selectinload(Account.guarantor))
            )
        }
        rows = []
        for u in updates:
            account = accounts[u.account_id]
            rows.append(
                {
                    "update_on": u.created_at.date().isoformat(),
                    "change": u.change,
                    "amount": _dollars(u.amount_cents),
                    "reference": u.reference,
                    **placement_row(session, account, u.balance_cents, day, ""),
                }
            )
    path = update_file(directory, day)
    write_csv(path, UPDATE_COLUMNS, rows, append=False)
    return path


def tell_agency(
    session: Session, account_id: uuid.UUID, change: Change, reference: str, by: str
) -> bool:
    """Record a fact (dispute, bankruptcy, death) for the agency if the account is placed."""
    account = session.get(Account, account_id)
    return account is not None and record_update(session, account, change, reference, by)
