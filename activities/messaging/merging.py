"""One message for several accounts of one guarantor: what a merged text or letter says.

When the steps of several accounts of one person come due together on the same channel and
contact point (``workflows.person.MERGEABLE``: a text, a letter), the batch sends one message: the
first step's template, rendered with every account's reference and their total balance. A letter
lays out each account's visits and balance and one total (``LetterContent.accounts``); the print
batch composes it again from the ledger (``activities.family``). A family statement (the policy's
``statements.family``) is the same letter covering every open account of the guarantor.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from temporalio.exceptions import ApplicationError

from activities.channels import AccountSection, LetterContent
from activities.messaging.composition import aging_of, letter_of, statement_line
from activities.rendering import Recipient, RenderError, context, render
from config.loader import PolicyBundle
from models.orm import Account
from models.payloads import SendStepInput
from models.policy import Channel

FAMILY = "family"
MERGED = "merged"


def references(accounts: Sequence[Account]) -> str:
    """The accounts' numbers as one reference: "A-1, A-2 and A-3"."""
    numbers = [a.account_number for a in accounts]
    if len(numbers) == 1:
        return numbers[0]
    return ", ".join(numbers[:-1]) + " and " + numbers[-1]


def render_merged(
    bundle: PolicyBundle,
    step: SendStepInput,
    accounts: Sequence[Account],
    balance_cents: int,
    channel: Channel,
    today: dt.date,
    due: tuple[dt.date, bool] | None = None,
) -> tuple[str | None, str]:
    """The first step's message, covering ``accounts`` (their references and total balance)."""
    guarantor = accounts[0].guarantor
    recipient = Recipient(
        first_name=guarantor.first_name,
        last_name=guarantor.last_name,
        account_number=references(accounts),
        lines=tuple(statement_line(c) for a in accounts for c in a.charges),
    )
    due_date, past_due = due or (None, False)
    variables = context(
        bundle.policy,
        channel,
        recipient,
        balance_cents,
        step.tone,
        today,
        due_date=due_date,
        past_due=past_due,
    )
    try:
        rendered = render(bundle, step.template, guarantor.language, channel, variables)
    except RenderError as exc:
        raise ApplicationError(str(exc), type="TemplateError", non_retryable=True) from exc
    return rendered.subject, rendered.body


def sections(accounts: Sequence[Account], balances: Sequence[int]) -> tuple[AccountSection, ...]:
    """Each account's part of a letter: oldest account first (the order payments are applied)."""
    parts = [
        AccountSection(
            account_id=str(a.id),
            account_number=a.account_number,
            balance_cents=balance,
            lines=tuple(statement_line(c) for c in a.charges),
        )
        for a, balance in zip(accounts, balances, strict=True)
    ]
    return tuple(sorted(parts, key=lambda s: (oldest_visit(s), s.account_number)))


def oldest_visit(section: AccountSection) -> dt.date:
    return min((line.service_date for line in section.lines), default=dt.date.max)


def covering_letter(
    letter: LetterContent, parts: tuple[AccountSection, ...], scope: str
) -> LetterContent:
    """``letter`` laid out for several accounts: their visits, each balance and the total."""
    lines = tuple(line for part in parts for line in part.lines)
    total = sum(part.balance_cents for part in parts)
    return dataclasses.replace(
        letter,
        account_number=", ".join(part.account_number for part in parts),
        amount_due_cents=total,
        lines=lines,
        aging_cents=aging_of(lines, total, letter.statement_date),
        accounts=parts,
        scope=scope,
    )


def merged_letter(
    bundle: PolicyBundle,
    step: SendStepInput,
    accounts: Sequence[Account],
    balances: Sequence[int],
    today: dt.date,
    due_date: dt.date | None,
    scope: str,
) -> LetterContent:
    """The first step's statement, covering ``accounts`` (``scope``: merged or family)."""
    letter = letter_of(bundle, step, accounts[0], today, due_date)
    allocation = bundle.policy.statements.payment_allocation.value
    letter = dataclasses.replace(letter, allocation=allocation)
    return covering_letter(letter, sections(accounts, balances), scope)
