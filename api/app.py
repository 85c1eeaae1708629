"""HTTP API: balances, payments, status and aging for billing systems and staff tools."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from config.settings import Settings
from models.orm import repositories as repo
from models.payloads import StatusView
from starter import Intake, get_status


class PaymentIn(BaseModel):
    reference: Annotated[str, Field(min_length=1, max_length=64)]
    amount_cents: Annotated[int, Field(gt=0)]
    method: str = "other"


class PaymentOut(BaseModel):
    new: bool
    balance_cents: int


def create_app(
    settings: Settings, session_factory: sessionmaker[Session], client: Client
) -> FastAPI:
    app = FastAPI(title="dunning", version="0.1.0")
    intake = Intake(session_factory, client, settings)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/accounts/{account_number}/status")
    async def account_status(account_number: str) -> StatusView:
        try:
            account_id = intake.account_id(account_number)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        return await get_status(client, account_id)

    @app.post("/accounts/{account_number}/payments")
    async def post_payment(account_number: str, payment: PaymentIn) -> PaymentOut:
        try:
            new, balance = await intake.post_payment(
                account_number,
                payment.amount_cents,
                payment.reference,
                method=payment.method,
                posted_by="api",
            )
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc
        return PaymentOut(new=new, balance_cents=balance)

    @app.get("/aging")
    async def aging() -> dict[str, int]:
        with session_factory() as session:
            return repo.aging(session, dt.datetime.now(dt.UTC))

    return app
