"""Intake for billing systems: balances and charge lines, payments, adjustments.

Each request is idempotent by the caller's external reference: the first answer is stored and
returned again for a repeat; a repeat with a different body is refused (409).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api import idempotency
from api.auth import Permission, Principal, require
from api.schemas import (
    AccountIn,
    AccountNumber,
    AccountOut,
    AdjustmentIn,
    AdjustmentOut,
    ChargeIn,
    PaymentIn,
    PaymentOut,
    Problem,
)
from api.state import State
from models.actions import AdjustmentSignal
from models.imports import BalanceRow
from models.money import dollars_text
from services import facts
from services import intake as services

router = APIRouter(tags=["intake"])
Integration = Annotated[Principal, Depends(require(Permission.INTAKE))]
ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem},
}
ACCEPTED: dict[int | str, dict[str, object]] = {
    **ERRORS,
    202: {"description": "recorded in the ledger; the workflow's signal is queued"},
}


def _status(delivered: bool) -> int:
    """200 when the workflow has the fact; 202 when the ledger has it and its signal is queued
    (Temporal away): the worker's dispatcher delivers it when Temporal returns."""
    return 200 if delivered else 202


def _rows(account_number: str, body: AccountIn) -> list[BalanceRow]:
    g = body.guarantor
    rows = []
    for index, charge in enumerate(body.charges):
        try:
            rows.append(
                BalanceRow.model_validate(
                    {
                        "account_number": account_number,
                        "guarantor_id": g.id,
                        "first_name": g.first_name,
                        "last_name": g.last_name,
                        "email": g.email,
                        "phone": g.phone,
                        "phone_kind": g.phone_kind.value,
                        "sms_consent": "yes" if g.sms_consent else "no",
                        "address_line1": g.address_line1,
                        "address_line2": g.address_line2,
                        "city": g.city,
                        "state": g.state,
                        "postal_code": g.postal_code,
                        "time_zone": g.time_zone,
                        "language": g.language,
                        "charge_ref": charge.reference,
                        "service_date": charge.service_date,
                        "description": charge.description,
                        "charges": dollars_text(charge.charges_cents),
                        "insurance_paid": dollars_text(charge.insurance_paid_cents),
                        "insurance_adjustment": dollars_text(charge.insurance_adjustment_cents),
                        "patient_paid": dollars_text(charge.patient_paid_cents),
                        "policy": body.policy,
                        **protections_fields(g.date_of_birth, charge),
                    }
                )
            )
        except ValidationError as exc:
            # a row-level rule names its field first ("deductible: ... is more than ...")
            fields = sorted(
                {
                    str(e["loc"][-1])
                    if e["loc"]
                    else str(e["msg"]).removeprefix("Value error, ").split(":")[0]
                    for e in exc.errors()
                }
            )
            raise HTTPException(
                422, f"charges[{index}] or guarantor: invalid {', '.join(fields)}"
            ) from None
    return rows


def protections_fields(guarantor_dob: dt.date | None, charge: ChargeIn) -> dict[str, object]:
    """The issue-18 columns of a balance row: good-faith estimate, NSA-protected amount, patient."""
    gfe = charge.good_faith_estimate_cents
    patient = charge.patient
    return {
        "guarantor_dob": guarantor_dob,
        "good_faith_estimate": None if gfe is None else dollars_text(gfe),
        "nsa_protected": dollars_text(charge.nsa_protected_cents),
        "patient_id": patient.id if patient else None,
        "patient_first_name": patient.first_name if patient else None,
        "patient_last_name": patient.last_name if patient else None,
        "patient_dob": patient.date_of_birth if patient else None,
        "payer": charge.payer,
        "claim_status": charge.claim_status,
        "deductible": dollars_text(charge.deductible_cents),
        "coinsurance": dollars_text(charge.coinsurance_cents),
        "copay": dollars_text(charge.copay_cents),
        "not_covered": dollars_text(charge.not_covered_cents),
    }


@router.put(
    "/accounts/{account_number}",
    response_model=AccountOut,
    responses=ACCEPTED,
    summary="Create or update an account's balance and charge lines",
)
async def put_account(
    account_number: AccountNumber, body: AccountIn, state: State, who: Integration
) -> JSONResponse:
    """New charge lines (by reference) are added and routed to the account's workflow
    (signal-with-start); known ones are left alone. Idempotent by ``reference``."""
    key = f"account:{body.reference}"
    digest = idempotency.request_hash(account_number, body.model_dump(mode="json"))
    if (first := idempotency.replay(state.session_factory, key, digest)) is not None:
        return first
    refs = [c.reference for c in body.charges]
    if len(set(refs)) != len(refs):
        raise HTTPException(422, "charges: each charge needs its own reference")
    rows = _rows(account_number, body)
    try:
        posted = await services.post_account(state.intake, rows, who.name)
    except (services.PolicyUnusable, services.ChargeRefused) as exc:
        raise HTTPException(422, str(exc)) from None
    out = AccountOut(
        account_number=posted.account_number,
        new_charges=posted.new_charges,
        balance_cents=posted.balance_cents,
        queued=not posted.delivered,
        warnings=[f"{w.field}: {w.message}" for w in posted.warnings],
    )
    return idempotency.remember(
        state.session_factory,
        key,
        digest,
        _status(posted.delivered),
        out.model_dump(mode="json"),
        who.name,
    )


@router.post(
    "/accounts/{account_number}/payments",
    response_model=PaymentOut,
    responses=ACCEPTED,
    summary="Post a payment (once per reference)",
)
async def post_payment(
    account_number: AccountNumber, body: PaymentIn, state: State, who: Integration
) -> JSONResponse:
    """Lowers the balance in the ledger, then tells the workflow; at zero the balance is paid."""
    key = f"payment:{body.reference}"
    digest = idempotency.request_hash(account_number, body.model_dump(mode="json"))
    if (first := idempotency.replay(state.session_factory, key, digest)) is not None:
        return first
    posted = await facts.pay(
        state.services,
        who.actor(),
        account_number,
        body.amount_cents,
        body.reference,
        method=body.method,
        received_at=body.received_at,
    )
    out = PaymentOut(
        reference=body.reference,
        new=posted.new,
        balance_cents=posted.balance_cents,
        credit_cents=posted.credit_cents,
        queued=not posted.delivered,
    )
    return idempotency.remember(
        state.session_factory,
        key,
        digest,
        _status(posted.delivered),
        out.model_dump(mode="json"),
        who.name,
    )


@router.post(
    "/accounts/{account_number}/adjustments",
    response_model=AdjustmentOut,
    responses=ACCEPTED,
    summary="Post an adjustment, insurance payment (negative) or denial (positive)",
)
async def post_adjustment(
    account_number: AccountNumber, body: AdjustmentIn, state: State, who: Integration
) -> JSONResponse:
    """Insurance payments are negative, denials positive; a zero adjustment is refused."""
    try:
        signal = AdjustmentSignal(
            reference=body.reference, kind=body.kind, amount_cents=body.amount_cents
        )
    except ValidationError as exc:
        raise HTTPException(422, exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    key = f"adjustment:{body.reference}"
    digest = idempotency.request_hash(account_number, body.model_dump(mode="json"))
    if (first := idempotency.replay(state.session_factory, key, digest)) is not None:
        return first
    posted = await facts.adjust(state.services, who.actor(), account_number, signal)
    out = AdjustmentOut(
        reference=body.reference, balance_cents=posted.balance_cents, queued=not posted.delivered
    )
    return idempotency.remember(
        state.session_factory,
        key,
        digest,
        _status(posted.delivered),
        out.model_dump(mode="json"),
        who.name,
    )
