"""Pure protections owed to the patient: No Surprises Act disputes, state rules, time-barred debt.

No I/O, time passed in: the workflow's validators, ``policy check``, the services and the tests
share these functions (like ``workflows.decisions``).
"""

from __future__ import annotations

from models.actions import AccountState, HoldReason


def nsa_dispute_pending(account: AccountState) -> bool:
    """A No Surprises Act patient-provider dispute is open: no collection of the bill meanwhile."""
    return account.hold is not None and account.hold.reason is HoldReason.NO_SURPRISES_DISPUTE
