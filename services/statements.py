"""Show what a patient will receive: a policy's letter for a sample account, as printed.

``dunning letters sample`` (and the README's page images) go through here. The sample account is
synthetic and never stored: the letter is composed by the same code as a queued letter (the
step's rendered message, ``letter_of``, ``render_letter``), so what a billing lead sees is what
the print batch will print for such an account.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from activities.letters import render_letter
from activities.messaging.composition import letter_of, render_step
from activities.rendering import PAYMENT_TERMS_DAYS
from config.loader import load_policy
from models.orm import Account, ChargeLine, Guarantor
from models.payloads import SendStepInput
from models.policy import Channel
from services.errors import Refused, Rejection


@dataclass(frozen=True)
class SampleLetter:
    pdf: bytes
    policy: str
    step: str
    language: str


SAMPLE_VISITS = (
    # (date, service, charges, insurance paid, adjustment, patient paid, remittance facts)
    (
        dt.date(2026, 9, 14),
        "Office visit",
        24000,
        11000,
        4000,
        2000,
        {"payer": "Buckeye Health Plan", "claim_status": "paid", "deductible_cents": 5000},
    ),
    (
        dt.date(2026, 10, 2),
        "Laboratory",
        9000,
        3000,
        1500,
        0,
        {"payer": "Buckeye Health Plan", "claim_status": "paid", "coinsurance_cents": 1500},
    ),
    (
        dt.date(2026, 10, 20),
        "Imaging",
        18000,
        0,
        0,
        0,
        {"payer": "Buckeye Health Plan", "claim_status": "denied", "not_covered_cents": 18000},
    ),
)
"""Synthetic visits of the sample account: insurer paid, deductible, co-insurance, a denial."""


def sample_account(language: str) -> Account:
    """An invented account, never stored: Alex Sample, three visits with remittance facts."""
    guarantor = Guarantor(
        external_ref="SAMPLE",
        first_name="Alex",
        last_name="Sample",
        address_line1="1 Example Way",
        address_line2="Apartment 2",
        city="Springfield",
        region="IL",
        postal_code="62701",
        time_zone="America/Chicago",
        language=language,
    )
    account = Account(account_number="A-000123", guarantor=guarantor, policy_name="sample")
    account.charges = [
        ChargeLine(
            external_ref=f"SAMPLE-{i}",
            service_date=day,
            description=what,
            charges_cents=charged,
            insurance_paid_cents=paid,
            insurance_adjustment_cents=adjusted,
            patient_paid_cents=patient,
            nsa_protected_cents=0,
            good_faith_estimate_cents=None,
            **facts,
        )
        for i, (day, what, charged, paid, adjusted, patient, facts) in enumerate(SAMPLE_VISITS)
    ]
    return account


def sample_letter(
    policy_name: str, step_id: str, language: str | None, statement_date: dt.date
) -> SampleLetter:
    """The letter ``step_id`` of the policy would print for the sample account.

    Raises:
        config.loader.PolicyFileError: the policy cannot be loaded.
        Refused: (invalid request) the step is unknown or sends no letter, or the language is not
            one the policy declares; the message names the field and what would do.
    """
    bundle = load_policy(policy_name)
    policy = bundle.policy
    letters = [s.id for s in policy.steps if Channel.LETTER in s.channels]
    step = next((s for s in policy.steps if s.id == step_id), None)
    if step is None or Channel.LETTER not in step.channels:
        what = "no step" if step is None else "a step without a letter"
        raise Refused(
            Rejection.INVALID_REQUEST,
            f"step: {step_id!r} is {what} of policy {policy.name};"
            f" its letter steps: {', '.join(letters) or 'none'}",
        )
    language = language or policy.languages[0]
    if language not in policy.languages:
        raise Refused(
            Rejection.INVALID_REQUEST,
            f"language: {language!r} is not declared by policy {policy.name};"
            f" it declares {', '.join(policy.languages)}",
        )
    account = sample_account(language)
    balance = sum(c.balance_cents for c in account.charges)
    work = SendStepInput(
        account_id="00000000-0000-0000-0000-000000000000",
        idempotency_key=f"sample/{step.id}",
        policy_hash=bundle.hash,
        step_id=step.id,
        kind=step.kind,
        channels=[Channel.LETTER],
        template=step.template,
        tone=step.tone,
        balance_cents=balance,
        due_at=dt.datetime.combine(statement_date, dt.time(12), tzinfo=dt.UTC),
    )
    due = statement_date + dt.timedelta(days=PAYMENT_TERMS_DAYS)
    _, body = render_step(bundle, work, account, Channel.LETTER, statement_date, (due, False))
    letter = letter_of(bundle, work, account, statement_date, due)
    pdf = render_letter(letter, body, f"sample-{step.id}")
    return SampleLetter(pdf, policy.name, step.id, language)
