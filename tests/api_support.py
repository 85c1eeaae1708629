"""Helpers of the API and webhook tests: the app on the real dev server, tokens, synthetic data."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import create_token
from config.settings import Settings
from models.orm import ApiRole
from tests.factories import UNLOCATED_ZIP, midday_zone
from worker import build_worker

TWILIO_TOKEN = "test-twilio-auth-token-0123456789"
PUBLIC_URL = "https://billing.example.test/dunning"


def ec_key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair like SendGrid's; the public key as SendGrid shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def api_settings(settings: Settings, sendgrid_public_key: str) -> Settings:
    return settings.model_copy(
        update={
            "twilio": settings.twilio.model_copy(update={"auth_token": SecretStr(TWILIO_TOKEN)}),
            "sendgrid": settings.sendgrid.model_copy(
                update={"webhook_public_key": sendgrid_public_key}
            ),
            "api": settings.api.model_copy(update={"public_url": PUBLIC_URL}),
        }
    )


@dataclass
class Api:
    http: httpx.AsyncClient
    tokens: dict[ApiRole, str]
    settings: Settings
    session_factory: sessionmaker[Session]
    client: Client

    def auth(self, role: ApiRole) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_tokens(session_factory: sessionmaker[Session]) -> dict[ApiRole, str]:
    tag = uuid.uuid4().hex[:6]
    with session_factory.begin() as session:
        return {role: create_token(session, f"{role.value}-{tag}", role) for role in ApiRole}


@asynccontextmanager
async def running_api(
    client: Client, settings: Settings, session_factory: sessionmaker[Session]
) -> AsyncIterator[Api]:
    """The app over ASGI, with a real worker on the dev server."""
    app = create_app(settings, session_factory, client)
    transport = httpx.ASGITransport(app=app)
    async with (
        build_worker(client, settings, session_factory),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        yield Api(http, make_tokens(session_factory), settings, session_factory, client)


def synthetic_phone() -> str:
    """A valid number in E.164 on the 555 exchange of area code 500, which has no place.

    A geographic number would add its time zone to the patient's allowed window, and a dev-server
    test would then depend on the time of day there (see ``tests.factories.UNLOCATED_PHONE``).
    """
    n = uuid.uuid4().int
    return f"+1500555{n % 10**4:04d}"


def account_body(reference: str | None = None, **guarantor: Any) -> dict[str, Any]:
    """A synthetic account: invented names and numbers, never a real patient."""
    n = uuid.uuid4().hex[:8].upper()
    g = {
        "id": f"G-{n}",
        "first_name": "Testy",
        "last_name": "Synthetic",
        "email": f"t{n.lower()}@example.test",
        "phone": synthetic_phone(),
        "sms_consent": True,
        "address_line1": "1 Example Way",
        "city": "Springfield",
        "state": "NY",
        "postal_code": UNLOCATED_ZIP,
        # Where it is midday now: a dev-server test sends in real time, whatever the hour.
        "time_zone": midday_zone(),
    }
    g.update(guarantor)
    return {
        "reference": reference or f"IMP-{n}",
        "guarantor": g,
        "charges": [
            {
                "reference": f"C-{n}",
                "service_date": "2026-10-01",
                "description": "Office visit",
                "charges_cents": 18500,
                "insurance_paid_cents": 9000,
                "insurance_adjustment_cents": 4000,
            }
        ],
    }
