"""The ledger's record of what a workflow wrote off itself: financial assistance (hardship) and
approved write-off requests.

The workflow applies these (``grant_hardship``, an approved ``WRITE_OFF`` task); the ledger then
records the same amount as an adjustment, once per reference, and lowers the account's balance.
Without it the ledger kept the gross balance until the balance closed, and the daily
reconciliation, which trusts the ledger, told the workflow to bill the discount again.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from models.actions import WORKFLOW_WRITE_OFFS, AdjustmentKind
from models.orm import Account
from models.orm.repositories import record_adjustment


def record(
    session: Session,
    account_id: uuid.UUID,
    kind: AdjustmentKind,
    cents: int,
    reference: str,
    by: str,
) -> bool:
    """Record ``cents`` written off (positive) on the account's ledger, its row locked and read
    afresh for the balance. True if new; the same reference again changes nothing."""
    if kind not in WORKFLOW_WRITE_OFFS:
        raise ValueError(f"kind: {kind.value} is not a write-off")
    if cents <= 0:
        return False
    account = session.get(Account, account_id, with_for_update=True, populate_existing=True)
    if account is None:
        raise LookupError(f"account: {account_id} is not in the ledger")
    return record_adjustment(session, account, reference, kind.value, -cents, by[:64])
