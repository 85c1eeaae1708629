"""Render step messages from a policy's templates.

SMS and call scripts get a restricted context: practice name, a reference, how to pay or call.
Nothing else exists for them, so a template that tries to print a service, a diagnosis or an amount
fails to render (HIPAA minimum necessary, 45 CFR 164.502(b); limited-content voicemail,
12 CFR 1006.2(j)). ``dunning policy check`` renders every template to catch that early.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from config.loader import PolicyBundle
from models.money import format_cents
from models.policy import Channel, Policy, Tone

RESTRICTED_CHANNELS = frozenset({Channel.SMS, Channel.CALL})
PAYMENT_TERMS_DAYS = 30


class RenderError(ValueError):
    """A template that cannot be rendered; names the template, never the patient."""


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


@dataclass(frozen=True)
class StatementLine:
    service_date: dt.date
    description: str
    charges_cents: int
    insurance_paid_cents: int
    insurance_adjustment_cents: int
    patient_paid_cents: int

    @property
    def balance_cents(self) -> int:
        return (self.charges_cents - self.insurance_paid_cents
                - self.insurance_adjustment_cents - self.patient_paid_cents)


@dataclass(frozen=True)
class Recipient:
    """What a full message (letter, email) may say about the guarantor and the account."""

    first_name: str
    last_name: str
    account_number: str
    lines: tuple[StatementLine, ...] = ()


@lru_cache(maxsize=1)
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


@lru_cache(maxsize=1024)
def _compile(source: str) -> Any:
    return _env().from_string(source)


def context(
    policy: Policy,
    channel: Channel,
    recipient: Recipient,
    balance_cents: int,
    tone: Tone,
    today: dt.date,
) -> dict[str, Any]:
    """The variables a template of ``channel`` may use."""
    practice = policy.practice
    money = lambda c: format_cents(c, policy.currency)  # noqa: E731
    restricted = {
        "practice": {"name": practice.name, "phone": practice.phone, "pay_url": practice.pay_url},
        "reference": recipient.account_number,
        "tone": tone.value,
    }
    if channel in RESTRICTED_CHANNELS:
        return restricted
    return restricted | {
        "practice": restricted["practice"]
        | {"financial_assistance_summary": practice.financial_assistance_summary},
        "guarantor": {"first_name": recipient.first_name, "last_name": recipient.last_name},
        "account": {"number": recipient.account_number},
        "balance": money(balance_cents),
        "balance_cents": balance_cents,
        "today": today.isoformat(),
        "due_date": (today + dt.timedelta(days=PAYMENT_TERMS_DAYS)).isoformat(),
        "lines": [
            {
                "service_date": line.service_date.isoformat(),
                "description": line.description,
                "charges": money(line.charges_cents),
                "insurance_paid": money(line.insurance_paid_cents),
                "insurance_adjustment": money(line.insurance_adjustment_cents),
                "patient_paid": money(line.patient_paid_cents),
                "balance": money(line.balance_cents),
            }
            for line in recipient.lines
        ],
    }


def render(
    bundle: PolicyBundle,
    template: str,
    language: str,
    channel: Channel,
    variables: dict[str, Any],
) -> Rendered:
    """Render one message. Email templates give their subject on the first line.

    Raises:
        RenderError: the template is missing or uses something its channel may not show.
    """
    try:
        source = bundle.template(template, language, channel)
    except KeyError as exc:
        raise RenderError(f"template {exc.args[0]} is missing from policy {bundle.policy.name}") from exc
    try:
        text = _compile(source).render(**variables)
    except TemplateError as exc:
        raise RenderError(f"template {template}/{language}/{channel.value}: {exc}") from exc
    if channel is Channel.EMAIL:
        subject, _, body = text.partition("\n")
        return Rendered(subject.strip(), body.strip() + "\n")
    return Rendered(None, text.strip() + "\n")


SAMPLE_RECIPIENT = Recipient(
    first_name="Alex",
    last_name="Sample",
    account_number="A-000123",
    lines=(
        StatementLine(dt.date(2026, 9, 14), "Office visit", 18500, 9000, 4000, 2500),
        StatementLine(dt.date(2026, 10, 2), "Laboratory", 6000, 2000, 1500, 0),
    ),
)
"""Synthetic data for previews and checks: never a real patient."""
