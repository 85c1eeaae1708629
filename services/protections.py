"""Use cases that protect patients (issue 18): written once, called by the CLI, the API and intake.

Each use case takes the :class:`~services.identity.Actor` who acts, changes the ledger first and
writes one audit row. Sessions belong to the caller (repositories never commit) except where a use
case opens its own transaction from a session factory.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.imports import BalanceRow
from models.orm import Account, AuditEvent, ChargeLine, Guarantor, Patient, ProtectionFlag
from models.orm.protections import FlagKind, FlagStatus
from models.protections import majority_date
from services.identity import SYSTEM, Actor


def audit(
    session: Session, actor: Actor, action: str, account: Account | None, **detail: Any
) -> None:
    """One audit row: who, what, on which account; details carry no names or addresses."""
    session.add(
        AuditEvent(
            actor=actor.id,
            action=action,
            account_id=account.id if account is not None else None,
            detail=detail,
        )
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


# -- intake: a balance row's protections ---------------------------------------------------------


def charge_fields(session: Session, guarantor: Guarantor, row: BalanceRow) -> dict[str, Any]:
    """The protection fields of a new charge line: good-faith estimate, NSA-protected amount and
    the patient (kept apart from the guarantor, who is the one written to)."""
    if row.guarantor_dob is not None:
        guarantor.date_of_birth = row.guarantor_dob
    fields: dict[str, Any] = {
        "good_faith_estimate_cents": row.good_faith_estimate,
        "nsa_protected_cents": row.nsa_protected,
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
    """Flag a visit billed $400 or more above its good-faith estimate (No Surprises Act)."""
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
