"""Recall a placed account from the collection agency (issue 17 item 4, issue 18).

One use case for the CLI (``dunning recall``), the API (``POST /accounts/{n}/recall``) and the
approval of financial assistance (which recalls through :func:`services.agency.recall_in_ledger`
in its own transaction). Ledger first: the update row, the status ``recalled`` and the audit row
commit together; then the day's agency update file is written.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.orm import Account, AccountStatus
from services import agency
from services.audit import Outcome, record
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from services.staff import refuse
from workflows.contract import Rejection

RECALL_REASONS = frozenset({"staff", "financial_assistance", "dispute", "patient_request"})


async def recall(
    svc: Services, actor: Actor, account_number: str, reason: str = "staff"
) -> agency.Recalled:
    """Take a placed account back from the agency; the agency hears of it in the update file.

    Raises:
        Refused: no such account (``AccountUnknown``), a reason outside the list
            (``InvalidRequest``), or the account is not with the agency (``NotPlaced``).
    """
    try:
        account = await svc.account(account_number)
    except Refused as exc:
        raise await refuse(svc, actor, "agency_recall", None, exc) from None
    if reason not in RECALL_REASONS:
        problem = Refused(
            Rejection.INVALID_REQUEST, f"reason: one of {', '.join(sorted(RECALL_REASONS))}"
        )
        raise await refuse(svc, actor, "agency_recall", account.id, problem)

    def work(session: Session) -> agency.Recalled | None:
        row = session.get(Account, account.id, with_for_update=True)
        assert row is not None
        if row.status is not AccountStatus.PLACED:
            return None
        agency.recall_in_ledger(session, row, actor.id, reason)
        record(session, actor, "agency_recall", row.id, Outcome.DONE, {"reason": reason})
        return agency.Recalled(
            account_number=row.account_number, balance_cents=row.balance_cents, update_file=""
        )

    done = await svc.db(work)
    if done is None:
        problem = Refused(
            Rejection.NOT_PLACED, f"account: {account_number} is not with a collection agency"
        )
        raise await refuse(svc, actor, "agency_recall", account.id, problem)
    path = agency.write_update_file(svc.session_factory, agency.export_dir(svc.settings))
    done.update_file = str(path)
    return done
