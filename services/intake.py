"""Intake use cases: posting one account, channel events by contact point (webhooks).

Ledger first, then the workflow, as everywhere: each function commits PostgreSQL before it
signals, and every signal is deduplicated by its reference, so a retry is always safe.
The API routes, the webhooks, replies and unsubscribe links call it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from config.loader import PolicyFileError
from models.actions import ChannelEventSignal
from models.imports import BalanceRow, RowError
from models.orm import Account, AccountStatus, AuditEvent, Guarantor
from models.orm import repositories as repo
from models.payloads import ChargeSignal, EscalationInput
from starter import Intake, record_channel_event
from workflows.protections import fee_cap_problem


class PolicyUnusable(ValueError):
    """The named policy cannot be loaded."""


class ChargeRefused(ValueError):
    """A charge line the policy does not allow (a missed-appointment fee above its cap)."""


@dataclass(frozen=True)
class AccountPosted:
    account_number: str
    new_charges: int
    balance_cents: int
    delivered: bool = True
    """False when the workflow has not heard yet: its messages wait in the signal outbox."""
    warnings: list[RowError] = field(default_factory=list)
    """What a person should resolve (a closed account: ``services.lifecycle``)."""


async def post_account(intake: Intake, rows: list[BalanceRow], actor: str) -> AccountPosted:
    """Create or update one account and its charge lines; start or join its workflow.

    The rows are one account's, validated like a CSV import's. New charge lines (by reference)
    are added; known ones are left as they are.

    Raises:
        PolicyUnusable: the policy the rows name cannot be loaded.
        ChargeRefused: a charge line above the policy's missed-appointment fee cap.
    """
    routing = await asyncio.to_thread(intake.refresh_experiments)
    name = rows[0].policy or routing.default_policy or intake.settings.practice.default_policy
    try:
        bundle = intake.policy_for(rows[0].policy)
    except LookupError as exc:
        raise PolicyUnusable(f"policy: {exc}") from exc
    except PolicyFileError as exc:
        raise PolicyUnusable(f"policy: {name!r} is not usable") from exc
    for index, row in enumerate(rows):
        if problem := fee_cap_problem(bundle.policy, row.charges):
            raise ChargeRefused(f"charges[{index}].{problem}")
    number = rows[0].account_number

    def post() -> tuple[EscalationInput, list[ChargeSignal], int, list[RowError]]:
        # Blocking database work: in a thread, never on the event loop shared with the worker.
        with intake.session_factory.begin() as session:
            inp, charges, warnings = intake.post_account_checked(session, number, rows)
            session.add(
                AuditEvent(
                    actor=actor,
                    action="api_account_posted",
                    account_id=uuid.UUID(inp.account_id),
                    detail={"new_charges": len(charges)},
                )
            )
            session.flush()
            account = repo.account_by_number(session, number)
            assert account is not None
            return inp, charges, account.balance_cents, warnings

    inp, charges, balance, warnings = await asyncio.to_thread(post)
    # The charges' messages were queued with the ledger rows; deliver them now if Temporal
    # answers, else the worker's dispatcher does.
    delivered = await intake.deliver(inp.account_id)
    return AccountPosted(number, len(charges), balance, delivered, warnings)


def _phone_digits(phone: str) -> str:
    digits = "".join(c for c in phone if c.isdigit())
    return digits[-10:]


def guarantors_by_phone(session: Session, phone: str) -> list[uuid.UUID]:
    """Every guarantor with this number (a household may share one), by its last ten digits."""
    digits = _phone_digits(phone)
    if len(digits) < 7:
        return []
    stored = func.right(func.regexp_replace(Guarantor.phone, r"\D", "", "g"), 10)
    return list(session.scalars(select(Guarantor.id).where(stored == digits)).all())


def guarantors_by_email(session: Session, email: str) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Guarantor.id).where(func.lower(Guarantor.email) == email.strip().lower())
        ).all()
    )


async def channel_event_for_guarantors(
    intake: Intake, guarantor_ids: Iterable[uuid.UUID], event: ChannelEventSignal, actor: str
) -> int:
    """Apply a channel event to guarantors: each open account's workflow hears of it.

    A guarantor without an open account gets the ledger change alone, so that a later balance
    starts with it. Returns the number of open accounts told.
    """
    ids = list(dict.fromkeys(guarantor_ids))
    if not ids:
        return 0

    def record_quiet() -> list[str]:
        # Blocking database work: in a thread, never on the event loop shared with the worker.
        with intake.session_factory.begin() as session:
            rows = session.execute(
                select(Account.guarantor_id, Account.account_number).where(
                    Account.guarantor_id.in_(ids), Account.status == AccountStatus.OPEN
                )
            ).all()
            with_open = {g for g, _ in rows}
            numbers = [n for _, n in rows]
            quiet = [g for g in ids if g not in with_open]
            for guarantor in session.scalars(
                select(Guarantor)
                .where(Guarantor.id.in_(quiet))
                .options(selectinload(Guarantor.channels))
            ):
                record_channel_event(session, guarantor, event)
                session.add(
                    AuditEvent(
                        actor=actor,
                        action=event.kind.value,
                        detail={
                            "guarantor_id": str(guarantor.id),
                            "reference": event.reference,
                            "channel": event.channel.value if event.channel else None,
                        },
                    )
                )
        return numbers

    numbers = await asyncio.to_thread(record_quiet)
    for number in numbers:
        await intake.channel_event(number, event, actor=actor)
    return len(numbers)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
