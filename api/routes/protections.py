"""Patients' protections over HTTP (issue 18): the same use cases as ``dunning protections``.

Thin: parse, call ``services.protections`` with the token's actor, render. A refused action is 409
(422 for an invalid request) with the rule as ``kind``; an unknown account is 404.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError, RPCStatusCode

import starter
from api.auth import Permission, Principal, require
from api.schemas import AccountNumber, Problem
from api.state import AppState, State
from models.orm import repositories as repo
from models.orm.protections import ConsentPurpose, RestrictionKind
from models.policy import Channel
from models.protections import PhoneKind
from services import protections
from services.agency import export_dir
from services.protections import AddressIn, PrivacyChange

router = APIRouter(tags=["protections"])
Reader = Annotated[Principal, Depends(require(Permission.READ))]
Acting = Annotated[Principal, Depends(require(Permission.ACT))]
T = TypeVar("T")
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem},
    403: {"model": Problem},
    404: {"model": Problem},
    409: {"model": Problem, "description": "refused; kind names the rule"},
    422: {"model": Problem},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FlagOut(BaseModel):
    kind: str
    reference: str
    amount_cents: int | None
    due_on: dt.date | None
    created_at: dt.datetime


class AssistanceIn(_Strict):
    discount_percent: int = Field(ge=1, le=100)
    program: str = Field(default="financial-assistance", min_length=1, max_length=64)


class AssistanceOut(BaseModel):
    responsibility_cents: int
    paid_cents: int
    write_off_cents: int
    refund_cents: int
    balance_cents: int
    recall: bool


class IncompleteIn(_Strict):
    missing: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1)
    deadline: dt.date


class RestrictionIn(_Strict):
    kind: RestrictionKind
    this_account_only: bool = False


class PhoneKindIn(_Strict):
    kind: PhoneKind = Field(description='mobile, home or work; "" when unknown (read as work)')


class ConfidentialAddressIn(_Strict):
    address_line1: str = Field(min_length=1, max_length=200)
    address_line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str = Field(pattern=r"^[A-Z]{2}$")
    postal_code: str = Field(pattern=r"^\d{5}(-\d{4})?$")


class ConsentIn(_Strict):
    channel: Channel
    purpose: ConsentPurpose
    source: str = Field(min_length=1, max_length=200)


class DoneOut(BaseModel):
    detail: str
    channels_changed: int = 0


async def _run(call: Callable[[], Awaitable[T]]) -> T | JSONResponse:
    try:
        return await call()
    except starter.ActionRejected as exc:
        code = 422 if exc.kind == "InvalidRequest" else 409
        return JSONResponse({"detail": str(exc), "kind": exc.kind}, status_code=code)
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
            return JSONResponse(
                {"detail": "the balance's workflow is not running", "kind": "NoWorkflow"},
                status_code=409,
            )
        raise
    except LookupError as exc:
        raise HTTPException(404, str(exc.args[0]) if exc.args else str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


async def _privacy(state: AppState, change_of: Callable[[Any], PrivacyChange]) -> DoneOut:
    with state.session_factory.begin() as session:
        change = change_of(session)
    await protections.notify_privacy_change(state.client, change)
    return DoneOut(detail="recorded", channels_changed=len(change.events))


@router.get(
    "/accounts/{account_number}/flags",
    response_model=list[FlagOut],
    responses=ERRORS,
    summary="Open flags and tasks: NSA dispute-eligible, time-barred, refund due, ...",
)
def get_flags(account_number: AccountNumber, state: State, who: Reader) -> list[FlagOut]:
    with state.session_factory() as session:
        account = repo.account_by_number(session, account_number)
        if account is None:
            raise HTTPException(404, f"account: no account {account_number!r}")
        return [
            FlagOut(
                kind=f.kind,
                reference=f.reference,
                amount_cents=f.amount_cents,
                due_on=f.due_on,
                created_at=f.created_at,
            )
            for f in protections.open_flags(session, account)
        ]


@router.post(
    "/accounts/{account_number}/financial-assistance",
    response_model=AssistanceOut,
    responses=ERRORS,
    summary="Approve an application: recompute what is owed, refund and recall tasks",
)
async def post_assistance(
    account_number: AccountNumber, body: AssistanceIn, state: State, who: Acting
) -> AssistanceOut | JSONResponse:
    async def call() -> AssistanceOut:
        outcome = await protections.approve_financial_assistance(
            state.session_factory,
            state.client,
            who.actor(),
            account_number,
            body.discount_percent,
            body.program,
            agency_dir=export_dir(state.settings),
        )
        return AssistanceOut(**outcome.__dict__)

    return await _run(call)


@router.post(
    "/accounts/{account_number}/financial-assistance/incomplete",
    response_model=DoneOut,
    responses=ERRORS,
    summary="An incomplete application: missing-information letter, ECAs suspended until then",
)
async def post_incomplete(
    account_number: AccountNumber, body: IncompleteIn, state: State, who: Acting
) -> DoneOut | JSONResponse:
    async def call() -> DoneOut:
        await protections.financial_assistance_incomplete(
            state.session_factory,
            state.client,
            who.actor(),
            account_number,
            body.missing,
            body.deadline,
        )
        return DoneOut(detail=f"missing-information letter queued; deadline {body.deadline}")

    return await _run(call)


@router.post(
    "/accounts/{account_number}/restrictions",
    response_model=DoneOut,
    responses=ERRORS,
    summary='Record a channel restriction ("mail only", "no calls", ...)',
)
async def post_restriction(
    account_number: AccountNumber, body: RestrictionIn, state: State, who: Acting
) -> DoneOut | JSONResponse:
    actor = who.actor()
    return await _run(
        lambda: _privacy(
            state,
            lambda s: protections.restrict_channels(
                s, actor, account_number, body.kind, all_accounts=not body.this_account_only
            ),
        )
    )


@router.delete(
    "/accounts/{account_number}/restrictions/{kind}",
    response_model=DoneOut,
    responses=ERRORS,
    summary="Lift a channel restriction",
)
async def delete_restriction(
    account_number: AccountNumber, kind: RestrictionKind, state: State, who: Acting
) -> DoneOut | JSONResponse:
    actor = who.actor()
    return await _run(
        lambda: _privacy(
            state, lambda s: protections.lift_restriction(s, actor, account_number, kind)
        )
    )


@router.put(
    "/accounts/{account_number}/phone-kind",
    response_model=DoneOut,
    responses=ERRORS,
    summary="The kind of the guarantor's number (a work number gets no calls or texts under \"no"
    ' calls at work")',
)
async def put_phone_kind(
    account_number: AccountNumber, body: PhoneKindIn, state: State, who: Acting
) -> DoneOut | JSONResponse:
    actor = who.actor()
    return await _run(
        lambda: _privacy(
            state, lambda s: protections.set_phone_kind(s, actor, account_number, body.kind)
        )
    )


@router.put(
    "/accounts/{account_number}/confidential-address",
    response_model=DoneOut,
    responses=ERRORS,
    summary="Confidential communications: letters only, to this address",
)
async def put_confidential_address(
    account_number: AccountNumber, body: ConfidentialAddressIn, state: State, who: Acting
) -> DoneOut | JSONResponse:
    actor = who.actor()
    address = AddressIn(
        body.address_line1, body.city, body.state, body.postal_code, body.address_line2
    )
    return await _run(
        lambda: _privacy(
            state,
            lambda s: protections.set_confidential_address(s, actor, account_number, address),
        )
    )


@router.post(
    "/accounts/{account_number}/consents",
    response_model=DoneOut,
    responses=ERRORS,
    summary="Record a consent with its purpose and source",
)
async def post_consent(
    account_number: AccountNumber, body: ConsentIn, state: State, who: Acting
) -> DoneOut | JSONResponse:
    actor = who.actor()
    return await _run(
        lambda: _privacy(
            state,
            lambda s: protections.record_consent(
                s, actor, account_number, body.channel, body.purpose, body.source
            ),
        )
    )


@router.delete(
    "/accounts/{account_number}/consents/{channel}/{purpose}",
    response_model=DoneOut,
    responses=ERRORS,
    summary="Record that a consent was revoked",
)
async def delete_consent(
    account_number: AccountNumber,
    channel: Channel,
    purpose: ConsentPurpose,
    state: State,
    who: Acting,
) -> DoneOut | JSONResponse:
    actor = who.actor()
    return await _run(
        lambda: _privacy(
            state,
            lambda s: protections.revoke_consent(s, actor, account_number, channel, purpose),
        )
    )
