"""Facts, each posted once: ledger first, then the workflow's signal, then the audit row.

Payments, adjustments and channel events go through ``starter.Intake`` (the ledger and the
signalling path); life and legal events (bankruptcy, death, attorney representation, cease
communication) keep their details in PostgreSQL (``legal_facts``) and send the workflow only
their kind. Corrections of an address, an email or a phone number update the guarantor and make
that channel usable again; consent given or withdrawn by phone or at the front desk takes effect
at once.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from temporalio.service import RPCError

import starter
from activities.calls import CallTaskError
from models.actions import (
    AdjustmentSignal,
    ChannelEventKind,
    ChannelEventSignal,
    LifeEventKind,
    LifeEventSignal,
)
from models.orm import Account, Guarantor, LegalFact, StaffTask, TaskKind
from models.payloads import CallOutcomeSignal, CallResult
from models.policy import Channel
from services import agency, audit, lifecycle
from services.audit import Outcome
from services.context import AccountRef, Services
from services.errors import Refused
from services.identity import Actor
from services.staff import refuse, rpc_refusal
from workflows.contract import Rejection
from workflows.escalation import BalanceEscalationWorkflow

T = TypeVar("T")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ()-]{7,20}$")


class ConsentSource(StrEnum):
    """How staff learned of consent given or withdrawn."""

    PHONE = "phone"
    FRONT_DESK = "front_desk"
    WRITING = "writing"


class Address(BaseModel):
    line1: str = Field(min_length=1, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str = Field(pattern=r"^[A-Z]{2}$")
    postal_code: str = Field(pattern=r"^\d{5}(-\d{4})?$")


class AttorneyContact(BaseModel):
    """Whom to contact instead of the patient (kept in PostgreSQL only)."""

    name: str = Field(min_length=1, max_length=200)
    firm: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, pattern=PHONE.pattern)
    email: str | None = Field(default=None, max_length=254, pattern=EMAIL.pattern)
    address: str | None = Field(default=None, max_length=400)


class PaymentPosted(BaseModel):
    new: bool
    balance_cents: int
    credit_cents: int = 0
    """Owed to the patient: the payment went past the balance."""
    delivered: bool = True
    """False when the workflow has not heard yet: the payment waits in the signal outbox."""

    @classmethod
    def of(cls, posted: starter.Posted) -> PaymentPosted:
        """The ledger's answer to a posted payment or adjustment."""
        return cls(
            new=posted.new,
            balance_cents=posted.balance_cents,
            credit_cents=posted.credit_cents,
            delivered=posted.delivered,
        )


class FactRecorded(BaseModel):
    """A fact is in the ledger; ``workflow_told`` is False when no workflow follows the balance."""

    account_number: str
    fact: str
    reference: str
    workflow_told: bool
    post_petition_account: str | None = None
    """A bankruptcy: the balance of its own that the post-petition visits moved to, if any."""


def _reference(kind: str) -> str:
    return f"staff:{kind}:{uuid.uuid4().hex[:16]}"


async def _guard(
    svc: Services,
    actor: Actor,
    action: str,
    account: AccountRef | None,
    work: Callable[[], Awaitable[T]],
    detail: dict[str, Any] | None = None,
) -> T:
    """Run a fact's work, turning expected failures into audited refusals."""
    try:
        try:
            return await work()
        except LookupError as exc:
            raise Refused(Rejection.ACCOUNT_UNKNOWN, str(exc)) from None
        except starter.NotRunning as exc:
            raise Refused(Rejection.TEMPORAL_UNREACHABLE, str(exc)) from None
        except CallTaskError as exc:
            raise Refused(Rejection.CALL_TASK, str(exc)) from None
        except RPCError as exc:
            refusal = rpc_refusal(exc)
            if refusal is None:
                raise
            raise refusal from None
    except Refused as exc:
        raise await refuse(
            svc, actor, action, account.id if account else None, exc, detail
        ) from None


async def _account(svc: Services, actor: Actor, action: str, number: str) -> AccountRef:
    try:
        return await svc.account(number)
    except Refused as exc:
        raise await refuse(svc, actor, action, None, exc, {"account_number": number}) from None


# -- money ------------------------------------------------------------------------------------


async def pay(
    svc: Services,
    actor: Actor,
    account_number: str,
    amount_cents: int,
    reference: str,
    *,
    method: str = "other",
    received_at: dt.datetime | None = None,
) -> PaymentPosted:
    """Post a payment once (by its reference) and tell the workflow."""
    if amount_cents <= 0:
        raise await refuse(
            svc,
            actor,
            "payment_posted",
            None,
            Refused(Rejection.INVALID_REQUEST, "amount: must be more than zero"),
        )
    # Temporal away is no reason to refuse a payment: the ledger takes it, and its signal waits
    # in the outbox for the worker's dispatcher.

    async def work() -> PaymentPosted:
        try:
            posted = await svc.intake.post_payment_fact(
                account_number,
                amount_cents,
                reference,
                received_at=received_at,
                method=method,
                posted_by=actor.id,
            )
        except ValueError as exc:  # the reference is known with other facts
            raise Refused(Rejection.REFERENCE_CONFLICT, str(exc)) from None
        return PaymentPosted.of(posted)

    return await _guard(
        svc, actor, "payment_posted", None, work, {"account_number": account_number}
    )


async def adjust(
    svc: Services, actor: Actor, account_number: str, adjustment: AdjustmentSignal
) -> PaymentPosted:
    """Post an adjustment, insurance payment or denial once, and tell the workflow."""
    # Temporal away: the ledger takes it and the outbox keeps its message (as for payments).

    async def work() -> PaymentPosted:
        try:
            posted = await svc.intake.post_adjustment_fact(
                account_number, adjustment, posted_by=actor.id
            )
        except ValueError as exc:
            raise Refused(Rejection.REFERENCE_CONFLICT, str(exc)) from None
        return PaymentPosted.of(posted)

    return await _guard(
        svc, actor, "adjustment_posted", None, work, {"account_number": account_number}
    )


# -- channels: deliverability, corrections, consent -----------------------------------------


async def channel_event(
    svc: Services,
    actor: Actor,
    account_number: str,
    kind: ChannelEventKind,
    channel: Channel | None = None,
    *,
    detail: dict[str, Any] | None = None,
    before: Callable[[Session, Guarantor], None] | None = None,
) -> FactRecorded:
    """Record a channel fact (ledger first) and tell the workflow; ``before`` edits the guarantor
    in its own transaction first (a corrected address, email or number)."""
    action = f"report_{kind.value}"
    account = await _account(svc, actor, action, account_number)
    facts = {"channel": channel.value if channel else None, **(detail or {})}
    try:
        event = ChannelEventSignal(reference=_reference(kind.value), kind=kind, channel=channel)
    except ValueError as exc:
        raise await refuse(
            svc, actor, action, account.id, Refused(Rejection.INVALID_REQUEST, str(exc)), facts
        ) from None
    svc.temporal  # noqa: B018

    async def work() -> FactRecorded:
        if before is not None:

            def edit(session: Session) -> None:
                guarantor = session.scalars(
                    select(Guarantor)
                    .join(Account, Account.guarantor_id == Guarantor.id)
                    .where(Account.id == account.id)
                    .options(selectinload(Guarantor.channels))
                ).one()
                before(session, guarantor)

            await svc.db(edit)
        await svc.intake.channel_event(account_number, event, actor=actor.id)
        await svc.db(
            lambda s: audit.record(
                s, actor, action, account.id, Outcome.DONE, {**facts, "reference": event.reference}
            )
        )
        return FactRecorded(
            account_number=account.number,
            fact=kind.value,
            reference=event.reference,
            workflow_told=account.open,
        )

    return await _guard(svc, actor, action, account, work, facts)


async def letter_returned(svc: Services, actor: Actor, account_number: str) -> FactRecorded:
    """The post office returned a letter: letters stop until the address is corrected."""
    return await channel_event(
        svc, actor, account_number, ChannelEventKind.LETTER_RETURNED, Channel.LETTER
    )


async def address_corrected(
    svc: Services, actor: Actor, account_number: str, address: Address
) -> FactRecorded:
    """A corrected postal address: stored, and letters may go again."""

    def edit(session: Session, guarantor: Guarantor) -> None:
        guarantor.address_line1 = address.line1
        guarantor.address_line2 = address.line2
        guarantor.city = address.city
        guarantor.region = address.state
        guarantor.postal_code = address.postal_code

    return await channel_event(
        svc,
        actor,
        account_number,
        ChannelEventKind.ADDRESS_CORRECTED,
        Channel.LETTER,
        detail={"corrected": "address"},
        before=edit,
    )


async def email_corrected(
    svc: Services, actor: Actor, account_number: str, email: str
) -> FactRecorded:
    """A corrected email address: stored, and email may go again."""
    if not EMAIL.match(email.strip()) or len(email) > 254:
        raise await refuse(
            svc,
            actor,
            "report_address_corrected",
            None,
            Refused(Rejection.INVALID_REQUEST, "email: not an email address"),
        )

    def edit(session: Session, guarantor: Guarantor) -> None:
        guarantor.email = email.strip()

    return await channel_event(
        svc,
        actor,
        account_number,
        ChannelEventKind.ADDRESS_CORRECTED,
        Channel.EMAIL,
        detail={"corrected": "email"},
        before=edit,
    )


async def phone_corrected(
    svc: Services, actor: Actor, account_number: str, phone: str
) -> FactRecorded:
    """A corrected phone number: stored, and texts (with consent) and calls may go again."""
    if not PHONE.match(phone.strip()):
        raise await refuse(
            svc,
            actor,
            "report_address_corrected",
            None,
            Refused(Rejection.INVALID_REQUEST, "phone: not a phone number"),
        )

    def edit(session: Session, guarantor: Guarantor) -> None:
        guarantor.phone = phone.strip()

    recorded = await channel_event(
        svc,
        actor,
        account_number,
        ChannelEventKind.ADDRESS_CORRECTED,
        Channel.SMS,
        detail={"corrected": "phone"},
        before=edit,
    )
    await channel_event(
        svc,
        actor,
        account_number,
        ChannelEventKind.ADDRESS_CORRECTED,
        Channel.CALL,
        detail={"corrected": "phone"},
    )
    return recorded


async def consent(
    svc: Services,
    actor: Actor,
    account_number: str,
    channel: Channel,
    *,
    given: bool,
    via: ConsentSource,
) -> FactRecorded:
    """Consent given or withdrawn by phone, at the front desk or in writing: same-day effect."""
    kind = ChannelEventKind.CONSENT_GIVEN if given else ChannelEventKind.OPTED_OUT
    return await channel_event(svc, actor, account_number, kind, channel, detail={"via": via.value})


# -- life and legal events ---------------------------------------------------------------------


async def life_event(
    svc: Services,
    actor: Actor,
    account_number: str,
    kind: LifeEventKind,
    facts: dict[str, Any],
) -> FactRecorded:
    """Record a life or legal event with its details in PostgreSQL; the workflow hears its kind."""
    action = f"report_{kind.value}"
    account = await _account(svc, actor, action, account_number)
    reference = _reference(kind.value)
    summary = {k: v for k, v in facts.items() if k in ("filed_on", "chapter", "on")}
    svc.temporal  # noqa: B018

    async def work() -> FactRecorded:
        def store(session: Session) -> bool:
            session.add(
                LegalFact(
                    account_id=account.id,
                    kind=kind.value,
                    reference=reference,
                    detail=facts,
                    reported_by=actor.id,
                )
            )
            audit.record(
                session,
                actor,
                action,
                account.id,
                Outcome.DONE,
                {**summary, "reference": reference},
            )
            change = AGENCY_CHANGES.get(kind)
            return change is not None and agency.tell_agency(
                session, account.id, change, reference, actor.id
            )

        if await svc.db(store):
            agency.write_update_file(svc.session_factory, agency.export_dir(svc.settings))
        told = account.open and await starter.notify(
            svc.temporal,
            account.workflow_account_id,
            starter.message_name(BalanceEscalationWorkflow.life_event),
            LifeEventSignal(reference=reference, kind=kind),
        )
        return FactRecorded(
            account_number=account.number,
            fact=kind.value,
            reference=reference,
            workflow_told=told,
        )

    return await _guard(svc, actor, action, account, work, summary)


AGENCY_CHANGES = {
    LifeEventKind.BANKRUPTCY: agency.Change.BANKRUPTCY,
    LifeEventKind.DECEASED: agency.Change.DEATH,
}
"""Life events a placed account's agency hears of (the update file)."""

BANKRUPTCY_CHAPTERS = frozenset({7, 9, 11, 12, 13, 15})


async def bankruptcy(
    svc: Services,
    actor: Actor,
    account_number: str,
    *,
    filed_on: dt.date,
    chapter: int,
    case_number: str | None = None,
) -> FactRecorded:
    """A bankruptcy filing: the automatic stay stops all collection on the balance at once."""
    problem = None
    if chapter not in BANKRUPTCY_CHAPTERS:
        problem = f"chapter: {chapter} is not a bankruptcy chapter (7, 9, 11, 12, 13 or 15)"
    elif filed_on > dt.date.today() + dt.timedelta(days=1):
        problem = "filed_on: in the future"
    if problem:
        raise await refuse(
            svc,
            actor,
            "report_bankruptcy",
            None,
            Refused(Rejection.INVALID_REQUEST, problem),
            {"account_number": account_number},
        )
    facts: dict[str, Any] = {"filed_on": filed_on.isoformat(), "chapter": chapter}
    if case_number:
        facts["case_number"] = case_number
    # The balance that continues a closed account is the same person's debt: stayed too, for
    # its visits before the filing. (Asked before the split, whose new balance is post-petition.)
    later = await svc.db(lambda s: lifecycle.open_continuation(s, account_number))
    svc.temporal  # noqa: B018  (Temporal away: refused before anything is written)
    # The stay covers pre-petition debt only: visits on or after the filing date go on being
    # collected, as a balance of their own (services.lifecycle; issue 11). Split while the
    # account is still open, before its workflow hears of the filing and closes it.
    try:
        split = await svc.intake.split_post_petition(account_number, filed_on)
    except LookupError:
        split = None  # refused, and audited, by life_event just below
    recorded = await life_event(svc, actor, account_number, LifeEventKind.BANKRUPTCY, facts)
    recorded.post_petition_account = split
    if later is not None:
        more = await bankruptcy(
            svc, actor, later, filed_on=filed_on, chapter=chapter, case_number=case_number
        )
        recorded.post_petition_account = more.post_petition_account
    return recorded


async def death(
    svc: Services, actor: Actor, account_number: str, *, died_on: dt.date | None = None
) -> FactRecorded:
    """The guarantor died: contact ends and the account goes to the estate queue (a task)."""
    facts: dict[str, Any] = {"on": died_on.isoformat()} if died_on else {}
    recorded = await life_event(svc, actor, account_number, LifeEventKind.DECEASED, facts)
    later = await svc.db(lambda s: lifecycle.open_continuation(s, account_number))
    if later is not None:  # the balance that continues it is the same guarantor's
        await death(svc, actor, later, died_on=died_on)
    return recorded


async def attorney(
    svc: Services, actor: Actor, account_number: str, contact: AttorneyContact
) -> FactRecorded:
    """Attorney representation: the attorney's contact is stored; the patient is contacted no
    more (Reg F 1006.6(b)(2))."""
    return await life_event(
        svc, actor, account_number, LifeEventKind.ATTORNEY, {"attorney": contact.model_dump()}
    )


async def cease_communication(
    svc: Services, actor: Actor, account_number: str, *, received_on: dt.date | None = None
) -> FactRecorded:
    """A written request to cease communication (Reg F 1006.6(c)): the ladder stops, and the
    workflow opens the task of the one closing notice it allows (approved, or nothing)."""
    facts = {"on": (received_on or dt.date.today()).isoformat()}
    return await life_event(svc, actor, account_number, LifeEventKind.CEASE_COMMUNICATION, facts)


# -- calls -------------------------------------------------------------------------------------


async def call_outcome(
    svc: Services,
    actor: Actor,
    task_id: str,
    result: CallResult,
    *,
    promised_date: dt.date | None = None,
    promised_cents: int | None = None,
    note: str = "",
) -> tuple[str, CallOutcomeSignal]:
    """Record a call task's outcome (ledger) and tell the workflow. Returns (account, outcome)."""
    from services.staff import find_task

    task = await find_task(svc, actor, "call_outcome", task_id)
    detail = {"task_id": str(task.id), "result": result.value}
    if task.kind is not TaskKind.CALL:
        raise await refuse(
            svc,
            actor,
            "call_outcome",
            task.account.id,
            Refused(Rejection.NOT_A_CALL_TASK, f"task: {task_id} is not a call task"),
            detail,
        )
    svc.temporal  # noqa: B018

    async def work() -> CallOutcomeSignal:
        return await svc.intake.record_call_outcome(
            str(task.id),
            result,
            recorded_by=actor.id,
            promised_date=promised_date,
            promised_cents=promised_cents,
            note=note,
        )

    outcome = await _guard(svc, actor, "call_outcome", task.account, work, detail)
    await svc.db(
        lambda s: audit.record(s, actor, "call_outcome", task.account.id, Outcome.DONE, detail)
    )
    return task.account.number, outcome


__all__ = [
    "Address",
    "AttorneyContact",
    "ConsentSource",
    "FactRecorded",
    "PaymentPosted",
    "StaffTask",
]
