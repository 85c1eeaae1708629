"""Use cases that protect patients (issue 18): written once, called by the CLI, the API and intake.

Each use case takes the :class:`~services.identity.Actor` who acts, changes the ledger first and
writes one audit row. Sessions belong to the caller (repositories never commit) except where a use
case opens its own transaction from a session factory.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session, object_session, selectinload, sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.channels import LetterContent
from activities.letters import letter_json
from config.loader import PolicyBundle, PolicyFileError, load_policy
from models.actions import (
    AdjustmentKind,
    ChannelEventKind,
    ChannelEventSignal,
    HardshipRequest,
    HoldReason,
    HoldRequest,
    Installment,
)
from models.imports import BalanceRow
from models.orm import (
    Account,
    AccountStatus,
    ChannelRestriction,
    ChargeLine,
    Communication,
    CommunicationStatus,
    ConfidentialAddress,
    Consent,
    Guarantor,
    Patient,
    Payment,
    PolicyVersion,
    ProtectionFlag,
)
from models.orm import repositories as repo
from models.orm.base import new_id
from models.orm.protections import ConsentPurpose, FlagKind, FlagStatus, RestrictionKind
from models.payloads import ContactProfile
from models.policy import Channel
from models.protections import PhoneKind, majority_date
from services import audit as audit_trail
from services import write_offs
from services.audit import Outcome
from services.identity import SYSTEM, Actor
from workflows.protections import plan_affordability_problem, restriction_blocks
from workflows.state_rules import STATE_RULES


def audit(
    session: Session, actor: Actor, action: str, account: Account | None, **detail: Any
) -> None:
    """One audit row: who, what, on which account; details carry no names or addresses."""
    audit_trail.record(
        session, actor, action, account.id if account is not None else None, Outcome.DONE, detail
    )


def flag(
    session: Session,
    account: Account,
    kind: FlagKind,
    reference: str = "",
    *,
    amount_cents: int | None = None,
    due_on: dt.date | None = None,
    actor: Actor = SYSTEM,
    **detail: Any,
) -> ProtectionFlag:
    """Open a flag or task for staff once per account, kind and reference (idempotent)."""
    existing = session.scalars(
        select(ProtectionFlag).where(
            ProtectionFlag.account_id == account.id,
            ProtectionFlag.kind == kind.value,
            ProtectionFlag.reference == reference,
        )
    ).one_or_none()
    if existing is not None:
        return existing
    row = ProtectionFlag(
        account_id=account.id,
        kind=kind.value,
        reference=reference,
        status=FlagStatus.OPEN.value,
        amount_cents=amount_cents,
        due_on=due_on,
        detail=detail,
    )
    session.add(row)
    audit(session, actor, f"flag_{kind.value}", account, reference=reference, **detail)
    return row


def open_flags(session: Session, account: Account) -> list[ProtectionFlag]:
    return list(
        session.scalars(
            select(ProtectionFlag)
            .where(
                ProtectionFlag.account_id == account.id,
                ProtectionFlag.status == FlagStatus.OPEN.value,
            )
            .order_by(ProtectionFlag.created_at, ProtectionFlag.kind)
        )
    )


def policy_of(session: Session, account: Account) -> PolicyBundle:
    """The latest stored version of the account's policy (as imported), else the shipped file."""
    row = session.scalars(
        select(PolicyVersion)
        .where(PolicyVersion.name == account.policy_name)
        .order_by(PolicyVersion.created_at.desc())
    ).first()
    if row is not None:
        return PolicyBundle.from_document(row.document, row.source_path)
    try:
        return load_policy(account.policy_name)
    except PolicyFileError as exc:
        raise LookupError(f"policy: {account.policy_name!r} is not stored") from exc


def plan_affordability(
    session: Session,
    account_id: uuid.UUID,
    installments: Sequence[Installment],
    monthly_income_cents: int | None,
) -> str:
    """The decision core's verdict on a payment plan for this account's states (the guarantor's
    residence and the policy's state): why it asks too much, or an empty string."""
    account = session.get(Account, account_id)
    if account is None:
        raise LookupError("account: not in the ledger")
    guarantor = session.get(Guarantor, account.guarantor_id)
    residence = guarantor.region if guarantor is not None else None
    policy = policy_of(session, account).policy
    return plan_affordability_problem(policy, residence, installments, monthly_income_cents)


# -- intake: a balance row's protections ---------------------------------------------------------


CONSENT_ADDED = "dunning.batch.consent_added"
"""``session.info`` key: guarantors given a billing-texts consent in this session."""


def charge_fields(session: Session, guarantor: Guarantor, row: BalanceRow) -> dict[str, Any]:
    """The protection fields of a new charge line: good-faith estimate, NSA-protected amount and
    the patient (kept apart from the guarantor, who is the one written to)."""
    if row.guarantor_dob is not None:
        guarantor.date_of_birth = row.guarantor_dob
    if row.sms_consent:
        if guarantor.id is None:
            session.flush()
        added: set[uuid.UUID] = session.info.setdefault(CONSENT_ADDED, set())
        # A guarantor created by this import has no consent on file: no need to ask.
        if guarantor.id not in added and (
            repo.is_new(session, repo.NEW_GUARANTORS, guarantor.id)
            or not has_billing_consent(session, guarantor, Channel.SMS)
        ):
            added.add(guarantor.id)
            # The import's sms_consent column is consent to billing texts; keep its purpose.
            repo.add_dependent(
                session,
                Consent(
                    guarantor_id=guarantor.id,
                    channel=Channel.SMS.value,
                    purpose=ConsentPurpose.BILLING.value,
                    source="import: sms_consent column",
                    recorded_by="import",
                ),
            )
    fields: dict[str, Any] = {
        "good_faith_estimate_cents": row.good_faith_estimate,
        "nsa_protected_cents": row.nsa_protected,
        # the remittance facts the statement explains each visit with (issue 15)
        "payer": row.payer,
        "claim_status": row.claim_status.value if row.claim_status else None,
        "deductible_cents": row.deductible,
        "coinsurance_cents": row.coinsurance,
        "copay_cents": row.copay,
        "not_covered_cents": row.not_covered,
    }
    if row.patient_id is not None:
        patient = upsert_patient(session, guarantor, row)
        session.flush()
        fields["patient_id"] = patient.id
    return fields


def upsert_patient(session: Session, guarantor: Guarantor, row: BalanceRow) -> Patient:
    assert row.patient_id and row.patient_first_name and row.patient_last_name
    patient = session.scalars(
        select(Patient).where(Patient.external_ref == row.patient_id)
    ).one_or_none()
    if patient is None:
        if guarantor.id is None:
            session.flush()
        patient = Patient(
            external_ref=row.patient_id,
            guarantor_id=guarantor.id,
            first_name=row.patient_first_name,
            last_name=row.patient_last_name,
            date_of_birth=row.patient_dob,
        )
        session.add(patient)
    else:
        patient.guarantor_id = guarantor.id
        patient.first_name = row.patient_first_name
        patient.last_name = row.patient_last_name
        if row.patient_dob is not None:
            patient.date_of_birth = row.patient_dob
    return patient


def after_charge(session: Session, account: Account, line: ChargeLine) -> None:
    """Flag a visit billed $400 or more above its good-faith estimate (No Surprises Act), and an
    account whose debt is already past the statute of limitations when it arrives."""
    shortest = min(
        (r.limitations_years for r in STATE_RULES.values() if r.limitations_years), default=None
    )
    today = dt.datetime.now(dt.UTC).date()
    # Only old visits can be time-barred: the exact date is time_barred_since's.
    if shortest is not None and line.service_date < today - dt.timedelta(days=365 * shortest):
        flag_time_barred_account(session, account, today)
    if line.nsa_dispute_eligible:
        assert line.good_faith_estimate_cents is not None
        flag(
            session,
            account,
            FlagKind.NSA_DISPUTE_ELIGIBLE,
            line.external_ref,
            amount_cents=line.charges_cents - line.good_faith_estimate_cents,
        )


def dispute_eligible_lines(session: Session, account: Account) -> list[ChargeLine]:
    lines = session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id))
    return [line for line in lines if line.nsa_dispute_eligible]


# -- patients reaching 18 -----------------------------------------------------------------------


def flag_patients_reaching_majority(session: Session, today: dt.date) -> int:
    """Flag for review each open account with a visit of a patient who has turned 18.

    Returns how many new flags were opened. Idempotent: run it daily.
    """
    rows = session.execute(
        select(Account, Patient)
        .join(ChargeLine, ChargeLine.account_id == Account.id)
        .join(Patient, Patient.id == ChargeLine.patient_id)
        .where(Patient.date_of_birth.is_not(None))
        .distinct()
    ).all()
    opened = 0
    for account, patient in rows:
        assert patient.date_of_birth is not None
        turned = majority_date(patient.date_of_birth)
        if turned > today or account.status.value != "open":
            continue
        existing = session.scalars(
            select(ProtectionFlag.id).where(
                ProtectionFlag.account_id == account.id,
                ProtectionFlag.kind == FlagKind.REACHED_MAJORITY.value,
                ProtectionFlag.reference == patient.external_ref,
            )
        ).first()
        if existing is None:
            flag(
                session,
                account,
                FlagKind.REACHED_MAJORITY,
                patient.external_ref,
                due_on=turned,
                note="a patient on this account has turned 18: review who is responsible",
            )
            opened += 1
    return opened


# -- financial assistance to the end (IRS 501(r), 26 CFR 1.501(r)-6(c)) ------------------------

REFUND_MINIMUM_CENTS = 500
"""501(r): refunds of $5 or more already paid above what is owed after assistance."""


@dataclass(frozen=True)
class AssistanceOutcome:
    """What an approved financial-assistance application changed, in cents."""

    responsibility_cents: int
    """What the patient owes for the visits after assistance (before payments)."""
    paid_cents: int
    write_off_cents: int
    refund_cents: int
    balance_cents: int
    recall: bool


def assistance_outcome(
    account: Account, lines: list[ChargeLine], payments_cents: int, discount_percent: int
) -> AssistanceOutcome:
    """Recompute what is owed from the visits' patient responsibility, not from what is left:
    a 100% grant after a $100 payment owes $0 and refunds the $100."""
    responsibility = sum(
        max(
            line.charges_cents
            - line.insurance_paid_cents
            - line.insurance_adjustment_cents
            - line.nsa_protected_cents,
            0,
        )
        for line in lines
    )
    paid = payments_cents + sum(line.patient_paid_cents for line in lines)
    owed = responsibility * (100 - discount_percent) // 100
    over = paid - owed
    refund = over if over >= REFUND_MINIMUM_CENTS else 0
    remaining = max(owed - paid, 0)
    write_off = max(account.balance_cents - remaining, 0)
    return AssistanceOutcome(
        responsibility_cents=owed,
        paid_cents=paid,
        write_off_cents=write_off,
        refund_cents=refund,
        balance_cents=remaining,
        recall=account.status is AccountStatus.PLACED,
    )


def approve_assistance_in_ledger(
    session: Session, actor: Actor, account: Account, discount_percent: int, program: str
) -> AssistanceOutcome:
    """Ledger side of an approved application: a refund task ($5 or more), a recall task for a
    placed account, the audit row. The caller then tells the workflow (write-off)."""
    lines = list(session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id)))
    paid = session.scalar(
        select(func.coalesce(func.sum(Payment.amount_cents), 0)).where(
            Payment.account_id == account.id
        )
    )
    outcome = assistance_outcome(account, lines, int(paid or 0), discount_percent)
    stamp = dt.datetime.now(dt.UTC).date().isoformat()
    if outcome.refund_cents:
        flag(
            session,
            account,
            FlagKind.REFUND_DUE,
            f"fa-{stamp}",
            amount_cents=outcome.refund_cents,
            actor=actor,
            note="refund what was paid above the amount owed after financial assistance (501(r))",
        )
    if outcome.recall:
        # Recalled at once, through the same ledger step as ``dunning recall`` (issue 18); the
        # flag stays for a person to reverse any extraordinary collection action (501(r)).
        from services import agency

        agency.recall_in_ledger(session, account, actor.id, "financial_assistance")
        flag(
            session,
            account,
            FlagKind.AGENCY_RECALL,
            f"fa-{stamp}",
            actor=actor,
            note="financial assistance approved: the account was recalled from the agency;"
            " reverse any extraordinary collection action (501(r))",
        )
    # The ledger lowers the balance now; the workflow writes off the same amount (at most what
    # it still has) when it is told.
    write_offs.record(
        session,
        account.id,
        AdjustmentKind.FINANCIAL_ASSISTANCE,
        outcome.write_off_cents,
        f"financial-assistance:{new_id()}",
        actor.id,
    )
    audit(
        session,
        actor,
        "financial_assistance_approved",
        account,
        program=program,
        discount_percent=discount_percent,
        write_off_cents=outcome.write_off_cents,
        refund_cents=outcome.refund_cents,
        recall=outcome.recall,
    )
    return outcome


def missing_information_notice(
    session: Session,
    actor: Actor,
    account: Account,
    missing: list[str],
    deadline: dt.date,
    policy_hash: str,
    practice_name: str,
    practice_phone: str,
) -> Communication:
    """Queue a "missing information" letter for an incomplete application, with its deadline
    (26 CFR 1.501(r)-6(c)(5)), and open a flag due on the deadline. Once per account and deadline.
    """
    key = f"fa-missing:{account.id}:{deadline.isoformat()}"
    existing = session.scalars(
        select(Communication).where(Communication.idempotency_key == key)
    ).one_or_none()
    if existing is not None:
        return existing
    guarantor = session.get(Guarantor, account.guarantor_id)
    assert guarantor is not None
    body = (
        f"Your application for financial assistance with {practice_name} is not complete yet."
        " To decide it we still need:\n"
        + "".join(f"- {item}\n" for item in missing)
        + f"\nPlease send them by {deadline.isoformat()}. Until then we take no extraordinary"
        " collection action (no referral, credit reporting or lawsuit). Questions or help with"
        f" the application: call {practice_name} at {practice_phone}.\n"
    )
    now = dt.datetime.now(dt.UTC)
    letter = LetterContent(
        practice_name=practice_name,
        practice_phone=practice_phone,
        pay_url="",
        recipient_name=f"{guarantor.first_name} {guarantor.last_name}",
        address_lines=tuple(mailing_address(session, guarantor)),
        account_number=account.account_number,
        statement_date=now.date(),
        due_date=deadline,
        amount_due_cents=account.balance_cents,
        currency=account.currency,
        lines=(),
        aging_cents=(),
        title="Financial assistance: information needed",
    )
    row = Communication(
        idempotency_key=key,
        account_id=account.id,
        step_id="fa-missing-info",
        policy_hash=policy_hash,
        channel=Channel.LETTER,
        template="fa-missing-info",
        language=guarantor.language,
        status=CommunicationStatus.SENT,
        recipient=" / ".join(letter.address_lines)[:300],
        body=body,
        provider="print",
        letter=letter_json(letter),
        sent_at=now,
    )
    session.add(row)
    flag(
        session,
        account,
        FlagKind.FA_INFO_MISSING,
        deadline.isoformat(),
        due_on=deadline,
        actor=actor,
        items=len(missing),
    )
    audit(session, actor, "fa_missing_information", account, deadline=deadline.isoformat())
    return row


# -- privacy requests (HIPAA 45 CFR 164.522; TCPA consent by purpose) ---------------------------

CONFIDENTIAL_BLOCKS = frozenset({Channel.EMAIL, Channel.SMS, Channel.CALL})
"""Confidential communications: letters to the alternate address only, no fallback."""


def _guarantor_of(session: Session, account: Account) -> Guarantor:
    guarantor = session.scalars(
        select(Guarantor)
        .where(Guarantor.id == account.guarantor_id)
        .options(selectinload(Guarantor.channels))
    ).one()
    return guarantor


def blocked_channels(
    session: Session, guarantor: Guarantor, account: Account | None
) -> set[Channel]:
    """Every channel the guarantor's standing requests rule out (for one account, or all)."""
    if repo.is_new(session, repo.NEW_GUARANTORS, guarantor.id):
        return set()  # created by this import: no request or confidential address yet
    rows = session.scalars(
        select(ChannelRestriction).where(
            ChannelRestriction.guarantor_id == guarantor.id,
            ChannelRestriction.lifted_at.is_(None),
        )
    ).all()
    blocked: set[Channel] = set()
    for row in rows:
        if row.account_id is None or (account is not None and row.account_id == account.id):
            blocked |= restriction_blocks(
                RestrictionKind(row.kind), PhoneKind(guarantor.phone_kind or "")
            )
    if session.get(ConfidentialAddress, guarantor.id) is not None:
        blocked |= CONFIDENTIAL_BLOCKS
    return blocked


def channel_events_for(
    before: set[Channel], after: set[Channel], reference: str
) -> list[ChannelEventSignal]:
    """The signals that move the workflow from one set of blocked channels to another."""
    events = [
        ChannelEventSignal(
            reference=f"{reference}:{c.value}", kind=ChannelEventKind.RESTRICTED, channel=c
        )
        for c in sorted(after - before)
    ]
    events += [
        ChannelEventSignal(
            reference=f"{reference}:{c.value}",
            kind=ChannelEventKind.RESTRICTION_LIFTED,
            channel=c,
        )
        for c in sorted(before - after)
    ]
    return events


def apply_requests_to_profile(
    session: Session, guarantor: Guarantor, account: Account, profile: ContactProfile
) -> ContactProfile:
    """A new workflow starts with the standing requests already applied."""
    for channel in blocked_channels(session, guarantor, account):
        profile.channels[channel] = profile.status(channel).model_copy(update={"restricted": True})
    return profile


CONFIDENTIAL_LOADED = "dunning.confidential_addresses"
"""``session.info`` key: guarantor id -> confidential address (or None), loaded for a batch."""


def remember_confidential(
    session: Session, addresses: Mapping[uuid.UUID, ConfidentialAddress | None]
) -> None:
    """What a batch's own query found (guarantor id -> confidential address or None), so that
    composing each letter and checking each channel asks the database nothing more."""
    session.info.setdefault(CONFIDENTIAL_LOADED, {}).update(addresses)


def _confidential(session: Session, guarantor: Guarantor) -> ConfidentialAddress | None:
    loaded: dict[uuid.UUID, ConfidentialAddress | None] = session.info.get(CONFIDENTIAL_LOADED, {})
    if guarantor.id in loaded:
        return loaded[guarantor.id]
    return session.get(ConfidentialAddress, guarantor.id)


def mailing_address(session: Session, guarantor: Guarantor) -> list[str]:
    """Where letters go: the confidential address when one is on file, else the guarantor's."""
    confidential = _confidential(session, guarantor)
    if confidential is not None:
        city = f"{confidential.city}, {confidential.region} {confidential.postal_code}"
        parts = [confidential.address_line1, confidential.address_line2 or "", city]
    else:
        city = f"{guarantor.city}, {guarantor.region or ''} {guarantor.postal_code}"
        parts = [
            guarantor.address_line1 or "",
            guarantor.address_line2 or "",
            " ".join(city.split()),
        ]
    return [p for p in parts if p.strip()]


def confidential_address_lines(guarantor: Guarantor) -> list[str] | None:
    """For the letter activity: the confidential address lines, or None when there is none."""
    session = object_session(guarantor)
    if session is None or _confidential(session, guarantor) is None:
        return None
    return mailing_address(session, guarantor)


@dataclass(frozen=True)
class PrivacyChange:
    """What a privacy request changed: the audit action and the workflow signals to send."""

    account_id: str
    account_open: bool
    events: list[ChannelEventSignal]


def _account(session: Session, account_number: str) -> Account:
    account = session.scalars(
        select(Account).where(Account.account_number == account_number)
    ).one_or_none()
    if account is None:
        raise LookupError(f"account: no account {account_number!r}")
    return account


def _record_events(
    session: Session, guarantor: Guarantor, events: list[ChannelEventSignal]
) -> None:
    from starter import record_channel_event  # the ledger side of a channel event

    for event in events:
        record_channel_event(session, guarantor, event)


def restrict_channels(
    session: Session,
    actor: Actor,
    account_number: str,
    kind: RestrictionKind,
    *,
    all_accounts: bool = True,
) -> PrivacyChange:
    """Record a channel restriction ("mail only", "no calls at work", ...) for the guarantor (or
    this account only); the workflow is told which channels it may no longer use."""
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    before = blocked_channels(session, guarantor, account)
    row = ChannelRestriction(
        guarantor_id=guarantor.id,
        account_id=None if all_accounts else account.id,
        kind=kind.value,
        recorded_by=actor.id,
    )
    session.add(row)
    session.flush()
    events = channel_events_for(before, blocked_channels(session, guarantor, account), str(row.id))
    _record_events(session, guarantor, events)
    audit(session, actor, "channel_restricted", account, kind=kind.value, all=all_accounts)
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


def lift_restriction(
    session: Session, actor: Actor, account_number: str, kind: RestrictionKind
) -> PrivacyChange:
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    before = blocked_channels(session, guarantor, account)
    rows = session.scalars(
        select(ChannelRestriction).where(
            ChannelRestriction.guarantor_id == guarantor.id,
            ChannelRestriction.kind == kind.value,
            ChannelRestriction.lifted_at.is_(None),
        )
    ).all()
    if not rows:
        raise LookupError(f"kind: no {kind.value} restriction in force for this guarantor")
    now = dt.datetime.now(dt.UTC)
    for row in rows:
        row.lifted_at = now
    session.flush()
    events = channel_events_for(
        before, blocked_channels(session, guarantor, account), f"lift-{rows[0].id}"
    )
    _record_events(session, guarantor, events)
    audit(session, actor, "channel_restriction_lifted", account, kind=kind.value)
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


def note_phone_kind(guarantor: Guarantor, kind: PhoneKind) -> None:
    """Intake: the kind of the number when the export says it; a new number of unknown kind
    forgets the old number's kind (read conservatively under "no calls at work")."""
    if kind is not PhoneKind.UNKNOWN:
        guarantor.phone_kind = kind.value
        return
    state = inspect(guarantor)
    if state.persistent and state.attrs.phone.history.has_changes():
        guarantor.phone_kind = PhoneKind.UNKNOWN.value


def set_phone_kind(
    session: Session, actor: Actor, account_number: str, kind: PhoneKind
) -> PrivacyChange:
    """Record what kind of line the guarantor's number is (mobile, home, work). Under "no calls
    at work" a work number (or one of unknown kind) gets no calls or texts; the workflow and the
    send-time check are told which channels that opens or closes."""
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    if not guarantor.phone:
        raise ValueError("phone_kind: the guarantor has no phone number on file")
    before = blocked_channels(session, guarantor, account)
    guarantor.phone_kind = kind.value
    session.flush()
    events = channel_events_for(
        before, blocked_channels(session, guarantor, account), f"phone-{uuid.uuid4().hex[:12]}"
    )
    _record_events(session, guarantor, events)
    audit(session, actor, "phone_kind_recorded", account, kind=kind.value or "unknown")
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


@dataclass(frozen=True)
class AddressIn:
    address_line1: str
    city: str
    region: str
    postal_code: str
    address_line2: str | None = None


def set_confidential_address(
    session: Session, actor: Actor, account_number: str, address: AddressIn
) -> PrivacyChange:
    """Confidential communications (HIPAA 45 CFR 164.522(b)): letters to this address only; no
    email, text or call, and no fallback to them when a letter comes back."""
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    before = blocked_channels(session, guarantor, account)
    row = session.get(ConfidentialAddress, guarantor.id)
    if row is None:
        row = ConfidentialAddress(guarantor_id=guarantor.id, recorded_by=actor.id)
        session.add(row)
    row.address_line1, row.address_line2 = address.address_line1, address.address_line2
    row.city, row.region, row.postal_code = address.city, address.region, address.postal_code
    row.recorded_by = actor.id
    session.flush()
    events = channel_events_for(
        before, blocked_channels(session, guarantor, account), f"conf-{uuid.uuid4().hex[:12]}"
    )
    _record_events(session, guarantor, events)
    audit(session, actor, "confidential_address_set", account)
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


def record_consent(
    session: Session,
    actor: Actor,
    account_number: str,
    channel: Channel,
    purpose: ConsentPurpose,
    source: str,
) -> PrivacyChange:
    """Record a consent with its purpose and source. Only consent for billing lets billing texts
    (or calls) go out: consent to appointment reminders is not consent to be texted about a bill.
    """
    if not source.strip():
        raise ValueError("source: say where the consent came from (form, call, portal, ...)")
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    session.add(
        Consent(
            guarantor_id=guarantor.id,
            channel=channel.value,
            purpose=purpose.value,
            source=source.strip()[:200],
            recorded_by=actor.id,
        )
    )
    events: list[ChannelEventSignal] = []
    if purpose is ConsentPurpose.BILLING:
        events.append(
            ChannelEventSignal(
                reference=f"consent-{uuid.uuid4().hex[:12]}",
                kind=ChannelEventKind.CONSENT_GIVEN,
                channel=channel,
            )
        )
        _record_events(session, guarantor, events)
    audit(session, actor, "consent_recorded", account, channel=channel.value, purpose=purpose.value)
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


def revoke_consent(
    session: Session, actor: Actor, account_number: str, channel: Channel, purpose: ConsentPurpose
) -> PrivacyChange:
    account = _account(session, account_number)
    guarantor = _guarantor_of(session, account)
    now = dt.datetime.now(dt.UTC)
    rows = session.scalars(
        select(Consent).where(
            Consent.guarantor_id == guarantor.id,
            Consent.channel == channel.value,
            Consent.purpose == purpose.value,
            Consent.revoked_at.is_(None),
        )
    ).all()
    for row in rows:
        row.revoked_at = now
    events: list[ChannelEventSignal] = []
    if purpose is ConsentPurpose.BILLING:
        events.append(
            ChannelEventSignal(
                reference=f"revoke-{uuid.uuid4().hex[:12]}",
                kind=ChannelEventKind.OPTED_OUT,
                channel=channel,
            )
        )
        _record_events(session, guarantor, events)
    audit(session, actor, "consent_revoked", account, channel=channel.value, purpose=purpose.value)
    return PrivacyChange(str(account.id), account.status is AccountStatus.OPEN, events)


def consents(session: Session, guarantor: Guarantor) -> list[Consent]:
    return list(
        session.scalars(
            select(Consent).where(Consent.guarantor_id == guarantor.id).order_by(Consent.given_at)
        )
    )


def has_billing_consent(session: Session, guarantor: Guarantor, channel: Channel) -> bool:
    return (
        session.scalars(
            select(Consent.id).where(
                Consent.guarantor_id == guarantor.id,
                Consent.channel == channel.value,
                Consent.purpose == ConsentPurpose.BILLING.value,
                Consent.revoked_at.is_(None),
            )
        ).first()
        is not None
    )


async def approve_financial_assistance(
    session_factory: sessionmaker[Session],
    client: Client | None,
    actor: Actor,
    account_number: str,
    discount_percent: int,
    program: str = "financial-assistance",
    *,
    agency_dir: Path | None = None,
) -> AssistanceOutcome:
    """An approved application: ledger first (refund task, the recall of a placed account, audit),
    then the workflow writes off down to what is still owed. A placed or closed account gets its
    ledger part only; a recall is written to the day's agency update file in ``agency_dir``."""
    if not 1 <= discount_percent <= 100:
        raise ValueError("percent: between 1 and 100")
    with session_factory.begin() as session:
        account = _account(session, account_number)
        outcome = approve_assistance_in_ledger(session, actor, account, discount_percent, program)
        account_id, is_open = str(account.id), account.status is AccountStatus.OPEN
    if outcome.recall and agency_dir is not None:
        from services import agency

        agency.write_update_file(session_factory, agency_dir)
    if is_open and client is not None:
        from starter import grant_hardship  # the typed workflow call

        request = HardshipRequest(
            program=program,
            discount_percent=discount_percent,
            granted_by=actor.id,
            write_off_cents=outcome.write_off_cents,
        )
        await _if_running(grant_hardship(client, account_id, request))
    return outcome


async def _if_running(call: Awaitable[object]) -> None:
    """Send an update to the account's workflow; none running (a zero balance never started one,
    or it has ended) leaves the ledger's record as the whole answer."""
    try:
        await call
    except RPCError as exc:
        if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            raise


async def financial_assistance_incomplete(
    session_factory: sessionmaker[Session],
    client: Client | None,
    actor: Actor,
    account_number: str,
    missing: list[str],
    deadline: dt.date,
) -> Communication:
    """An incomplete application: a missing-information letter with its deadline, and the
    financial-assistance hold (extraordinary collection actions suspended) until the deadline."""
    items = [m.strip() for m in missing if m.strip()]
    if not items:
        raise ValueError("missing: name at least one document or piece of information")
    if deadline <= dt.date.today():
        raise ValueError("deadline: must be in the future")
    with session_factory.begin() as session:
        account = _account(session, account_number)
        bundle = policy_of(session, account)
        row = missing_information_notice(
            session,
            actor,
            account,
            items,
            deadline,
            bundle.hash,
            bundle.policy.practice.name,
            bundle.policy.practice.phone,
        )
        account_id, is_open = str(account.id), account.status is AccountStatus.OPEN
    if is_open and client is not None:
        from starter import hold

        until = dt.datetime.combine(deadline + dt.timedelta(days=1), dt.time(), dt.UTC)
        request = HoldRequest(
            reason=HoldReason.FINANCIAL_ASSISTANCE,
            until=until,
            requested_by=actor.id,
            note="incomplete application: missing information requested",
        )
        await _if_running(hold(client, account_id, request))
    return row


async def notify_privacy_change(client: Client | None, change: PrivacyChange) -> None:
    """Tell a running workflow which channels it may use now (ledger already committed)."""
    if client is None or not change.account_open:
        return
    from starter import notify

    for event in change.events:
        await notify(client, change.account_id, "channel_event", event)


def flag_time_barred(session: Session, today: dt.date) -> int:
    """Flag each open account whose debt the statute of limitations of the guarantor's state of
    residence or of its policy's state has barred (``workflows.state_rules``). Idempotent."""
    from workflows.protections import time_barred_since

    rows = session.execute(
        select(Account, Guarantor)
        .join(Guarantor, Guarantor.id == Account.guarantor_id)
        .where(Account.status == AccountStatus.OPEN)
    ).all()
    opened = 0
    now = dt.datetime.combine(today, dt.time(), dt.UTC)
    for account, guarantor in rows:
        try:
            policy = policy_of(session, account).policy
        except LookupError:
            continue
        since = time_barred_since(policy, ContactProfile(state=guarantor.region), account.opened_at)
        if since is None or since > now:
            continue
        opened += _flag_barred(session, account, since)
    return opened


def _flag_barred(session: Session, account: Account, since: dt.datetime) -> bool:
    known = session.scalars(
        select(ProtectionFlag.id).where(
            ProtectionFlag.account_id == account.id,
            ProtectionFlag.kind == FlagKind.TIME_BARRED.value,
        )
    ).first()
    if known is not None:
        return False
    flag(session, account, FlagKind.TIME_BARRED, "", due_on=since.date())
    return True


def flag_time_barred_account(session: Session, account: Account, today: dt.date) -> bool:
    """Flag one account if its debt is time-barred on ``today``; True if a flag was opened."""
    from workflows.protections import time_barred_since

    # An account of this import is not flushed yet (bulk writes): its guarantor is in memory.
    guarantor: Guarantor | None = account.__dict__.get("guarantor")
    if guarantor is None and account.guarantor_id is not None:
        guarantor = session.get(Guarantor, account.guarantor_id)
    try:
        policy = policy_of(session, account).policy
    except LookupError:
        return False
    profile = ContactProfile(state=guarantor.region if guarantor else None)
    opened_at = dt.datetime.combine(
        min(line.service_date for line in _lines(session, account)), dt.time(), dt.UTC
    )
    since = time_barred_since(policy, profile, opened_at)
    if since is None or since.date() > today:
        return False
    return _flag_barred(session, account, since)


def _lines(session: Session, account: Account) -> list[ChargeLine]:
    return list(session.scalars(select(ChargeLine).where(ChargeLine.account_id == account.id)))
