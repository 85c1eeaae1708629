"""Closed balances stay closed: where an import's charge lines go when an account has ended.

Issue 17 item 3 and issue 11. Placed, written-off, settled, recalled, bankrupt (stopped) and
deceased (estate) balances never reopen through an import:

- a charge line already in the ledger is never posted again; when the export's amounts for it
  disagree with the ledger of a closed account, the row is reported as a warning for a person to
  resolve (the ledger is not changed);
- a new charge dated before a bankruptcy filing is pre-petition: it joins the stayed balance and
  is never collected (automatic stay, 11 U.S.C. 362), with a warning;
- a new charge on a deceased guarantor's account joins the estate account, not collected;
- any other new charge after the account closed starts a balance of its own: a new account
  (``<number>.2``, ``.3``, ...) that names the one it continues, with its own ladder, whose
  statements list only its own lines. Later imports of the same export find its lines there.

Pure routing over the caller's session; ``starter.Intake.post_account`` writes what it decides,
and the dry run reports the same warnings without writing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.imports import BalanceRow, RowError
from models.money import format_cents
from models.orm import Account, AccountStatus, ChargeLine, LegalFact
from models.orm.account import CLOSED_FOR_IMPORT

NUMBER_SEPARATOR = "."


@dataclass
class Target:
    """Where some of an import's new lines go."""

    account: Account | None
    """None: a new balance, continuing ``continues``."""
    continues: Account | None = None
    collect: bool = True
    """False: the lines join the ledger only (a stayed or an estate balance); no ladder."""
    rows: list[BalanceRow] = field(default_factory=list)


@dataclass
class Routing:
    targets: list[Target] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)
    plain: bool = False
    """The account never closed: the import posts to it as always."""


def chain(session: Session, root: Account) -> list[Account]:
    """The account and the balances that continue it, oldest first (each continues the last)."""
    accounts = [root]
    while True:
        successor = session.scalars(
            select(Account).where(Account.continues_account_id == accounts[-1].id).limit(1)
        ).first()
        if successor is None:
            return accounts
        accounts.append(successor)


def filing_date(session: Session, account: Account) -> dt.date | None:
    """The bankruptcy filing date reported for the account (the latest report), if any."""
    detail = session.scalars(
        select(LegalFact.detail)
        .where(LegalFact.account_id == account.id, LegalFact.kind == "bankruptcy")
        .order_by(LegalFact.reported_at.desc())
        .limit(1)
    ).first()
    if not detail or "filed_on" not in detail:
        return None
    return dt.date.fromisoformat(str(detail["filed_on"]))


def _amounts(row: BalanceRow) -> tuple[int, int, int, int]:
    return (row.charges, row.insurance_paid, row.insurance_adjustment, row.patient_paid)


def _stored(line: ChargeLine) -> tuple[int, int, int, int]:
    return (
        line.charges_cents,
        line.insurance_paid_cents,
        line.insurance_adjustment_cents,
        line.patient_paid_cents,
    )


def route(
    session: Session, root: Account, rows: list[BalanceRow], lines: list[int] | None = None
) -> Routing:
    """Decide where each of an account's imported rows goes.

    Args:
        root: the account the rows name.
        rows: the rows of that account, in file order.
        lines: each row's line in the file (for the warnings); 0 when unknown.
    """
    numbers = lines or [0] * len(rows)
    accounts = chain(session, root)
    head = accounts[-1]
    if len(accounts) == 1 and root.status not in CLOSED_FOR_IMPORT:
        return Routing(plain=True)
    by_id = {a.id: a for a in accounts}
    known = {
        line.external_ref: line
        for line in session.scalars(
            select(ChargeLine).where(ChargeLine.account_id.in_(list(by_id)))
        )
    }
    stayed = next((a for a in accounts if a.status is AccountStatus.STOPPED), None)
    filed = filing_date(session, stayed) if stayed is not None else None
    routing = Routing()
    targets: dict[str, Target] = {}

    def send(key: str, target: Target, row: BalanceRow) -> None:
        targets.setdefault(key, target).rows.append(row)

    for number, row in zip(numbers, rows, strict=True):
        line = known.get(row.charge_ref)
        if line is not None:
            holder = by_id[line.account_id]
            if holder.status in CLOSED_FOR_IMPORT and _amounts(row) != _stored(line):
                routing.warnings.append(
                    RowError(
                        number,
                        "charge_ref",
                        f"{row.charge_ref!r} on account {holder.account_number}"
                        f" ({holder.status.value}) differs from the ledger (export owes"
                        f" {format_cents(_line_balance(row))}, ledger"
                        f" {format_cents(line.balance_cents)}); not applied: resolve by hand",
                    )
                )
            continue
        if stayed is not None and filed is not None and row.service_date < filed:
            send(str(stayed.id), Target(stayed, collect=False), row)
            routing.warnings.append(
                RowError(
                    number,
                    "service_date",
                    f"{row.charge_ref!r} is pre-petition (before the bankruptcy filed"
                    f" {filed.isoformat()}): added to the stayed balance of"
                    f" {stayed.account_number}, never collected",
                )
            )
        elif head.status is AccountStatus.ESTATE:
            send(str(head.id), Target(head, collect=False), row)
            routing.warnings.append(
                RowError(
                    number,
                    "account_number",
                    f"the guarantor of {head.account_number} died: {row.charge_ref!r} joins the"
                    " estate account, not collected",
                )
            )
        elif head.status in CLOSED_FOR_IMPORT:
            send("new", Target(None, continues=head), row)
            routing.warnings.append(
                RowError(
                    number,
                    "account_number",
                    f"{head.account_number} is {head.status.value}: {row.charge_ref!r} starts a"
                    f" balance of its own ({successor_number(session, root)})",
                )
            )
        else:
            send(str(head.id), Target(head), row)
    routing.targets = list(targets.values())
    return routing


def _line_balance(row: BalanceRow) -> int:
    return row.charges - row.insurance_paid - row.insurance_adjustment - row.patient_paid


def successor_number(session: Session, root: Account) -> str:
    """The number of the next balance continuing ``root``: ``<number>.2``, ``.3``, ..."""
    base = root.account_number[:60]
    n = len(chain(session, root)) + 1
    while True:
        candidate = f"{base}{NUMBER_SEPARATOR}{n}"
        taken = session.scalar(select(Account.id).where(Account.account_number == candidate))
        if taken is None:
            return candidate
        n += 1


def open_continuation(session: Session, number: str) -> str | None:
    """The open balance that continues the account (its chain's head), if any.

    Only the head of a chain can be open: every earlier balance closed before it began.
    """
    root = session.scalars(select(Account).where(Account.account_number == number)).one_or_none()
    if root is None:
        return None
    head = chain(session, root)[-1]
    return head.account_number if head is not root and head.status is AccountStatus.OPEN else None


def dry_run_warnings(
    session: Session, number: str, rows: list[tuple[int, BalanceRow]]
) -> list[RowError]:
    """What an import of these rows would report for a closed account, without writing."""
    root = session.scalars(select(Account).where(Account.account_number == number)).one_or_none()
    if root is None:
        return []
    return route(session, root, [r for _, r in rows], [line for line, _ in rows]).warnings
