"""Letters that cover several accounts of one guarantor, composed at print time from the ledger.

A letter covers several accounts when steps of several accounts of one person came due together
(``scope`` "merged": the accounts it was sent for) or when the policy asks for family statements
(``statements.family``; ``scope`` "family": every open account of the guarantor on the day the
batch is printed). Either way the print batch lays out each account's visits, the payments posted
to it and its balance, then one total, from the ledger as it stands when the batch is composed; an
account paid, closed or put on hold since is left out, and the letter is dropped only when no
account of it is still owed.

Payments made against a family statement are spread over its accounts by the policy's
``statements.payment_allocation`` (``workflows.family``), oldest visit first by default: the
letter says so, so that a patient knows where a partial payment goes.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from xml.sax.saxutils import escape

from reportlab.platypus import Flowable, KeepTogether, Paragraph, Spacer
from sqlalchemy import Uuid, any_, func, select
from sqlalchemy.orm import Session, selectinload

from activities.channels import AccountSection, LetterContent
from activities.messaging import claims
from activities.messaging.merging import FAMILY, covering_letter, sections
from activities.statement import Wording
from models.money import format_cents
from models.orm import Account, AccountStatus, Payment

ALLOCATION_NOTES = frozenset({"oldest_first", "largest_first"})
"""The allocation rules a family statement explains (``family.<rule>`` of the wording files)."""


def letter_now_covering(
    session: Session, row: Any, stored: LetterContent, held: Any
) -> tuple[LetterContent | None, str]:
    """The covering letter as the ledger stands now, or None and why nothing is printed.

    ``held(session, account_id, since)`` tells an account put on hold since the letter was queued.
    """
    own = session.get(Account, row.account_id)
    assert own is not None
    query = select(Account).options(selectinload(Account.charges))
    if stored.scope == FAMILY:
        query = query.where(Account.guarantor_id == own.guarantor_id)
    else:
        ids = [uuid.UUID(part.account_id) for part in stored.accounts] or [own.id]
        query = query.where(Account.id == any_(claims.array(ids, Uuid)))
    owed = [
        a
        for a in session.scalars(query.order_by(Account.opened_at, Account.account_number)).all()
        if a.status is AccountStatus.OPEN
        and a.balance_cents > 0
        and not held(session, a.id, row.created_at)
    ]
    if not owed:
        return None, "no account of the letter is still owed (paid, closed or held since queued)"
    paid = dict(
        session.execute(
            select(Payment.account_id, func.sum(Payment.amount_cents))
            .where(Payment.account_id == any_(claims.array([a.id for a in owed], Uuid)))
            .group_by(Payment.account_id)
        ).all()
    )
    parts = tuple(
        dataclasses.replace(part, payments_cents=int(paid.get(uuid.UUID(part.account_id), 0)))
        for part in sections(owed, [a.balance_cents for a in owed])
    )
    return covering_letter(stored, parts, stored.scope), ""


def account_sections(
    letter: LetterContent, width: float, table: Any, words: Wording
) -> list[Flowable]:
    """Each account's statement (``table`` lays out one account's visits), then the total, in
    the letter's language (``config/statement/<language>.yaml``, ``family.*``)."""
    from activities.letters import BODY, HEADING

    def money(cents: int) -> str:
        return format_cents(cents, letter.currency)

    story: list[Flowable] = [
        Paragraph(escape(words("family.heading", count=len(letter.accounts))), HEADING)
    ]
    for part in letter.accounts:
        story.append(
            KeepTogether(
                [
                    Paragraph(
                        "<b>"
                        + escape(
                            words(
                                "family.account",
                                number=part.account_number,
                                balance=money(part.balance_cents),
                                payments=money(part.payments_cents),
                            )
                        )
                        + "</b>",
                        BODY,
                    ),
                    table(_one_account(letter, part), width),
                    Spacer(1, 4),
                ]
            )
        )
    total = words("family.total", total=money(letter.amount_due_cents))
    story.append(Paragraph(f"<b>{escape(total)}</b>", BODY))
    allocation = letter.allocation if letter.allocation in ALLOCATION_NOTES else "oldest_first"
    story.append(Paragraph(escape(words(f"family.{allocation}")), BODY))
    return story


def _one_account(letter: LetterContent, part: AccountSection) -> LetterContent:
    return dataclasses.replace(
        letter,
        account_number=part.account_number,
        amount_due_cents=part.balance_cents,
        lines=part.lines,
        accounts=(),
    )
