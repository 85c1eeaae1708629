"""Synthetic accounts written straight to the ledger, for tests of a single send."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from config.loader import PolicyBundle
from models.orm import Account, ChannelPreference, ChargeLine, Guarantor
from models.orm import repositories as repo
from models.payloads import SendStepInput
from models.policy import Channel, StepKind, Tone


def make_account(
    session_factory: sessionmaker[Session],
    bundle: PolicyBundle,
    *,
    sms_consent: bool = True,
    prefs: dict[Channel, dict[str, Any]] | None = None,
    charges: list[tuple[dt.date, str, int, int, int, int]] | None = None,
    **guarantor: Any,
) -> str:
    """An open account of an invented guarantor; returns its id."""
    n = uuid.uuid4().hex[:8].upper()
    fields: dict[str, Any] = {
        "first_name": "Testy",
        "last_name": "Synthetic",
        "email": f"t{n.lower()}@example.test",
        "phone": "+12125550123",
        "address_line1": "1 Example Way",
        "city": "Springfield",
        "region": "NY",
        "postal_code": "10001",
        "time_zone": "America/New_York",
    }
    fields.update(guarantor)
    lines = charges or [(dt.date(2026, 10, 1), "Office visit", 18500, 9000, 4000, 0)]
    with session_factory.begin() as session:
        repo.store_policy_version(session, bundle)
        g = Guarantor(external_ref=f"G-{n}", channels=[], **fields)
        session.add(g)
        g.channels.append(ChannelPreference(channel=Channel.SMS, consent=sms_consent))
        for channel, values in (prefs or {}).items():
            pref = next((p for p in g.channels if p.channel is channel), None)
            if pref is None:
                pref = ChannelPreference(channel=channel)
                g.channels.append(pref)
            for key, value in values.items():
                setattr(pref, key, value)
        account = Account(
            account_number=f"T-{n}",
            guarantor=g,
            policy_name=bundle.policy.name,
            opened_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        )
        session.add(account)
        session.flush()
        for i, (day, what, charged, ins, adj, paid) in enumerate(lines):
            session.add(
                ChargeLine(
                    account_id=account.id,
                    external_ref=f"C-{n}-{i}",
                    service_date=day,
                    description=what,
                    charges_cents=charged,
                    insurance_paid_cents=ins,
                    insurance_adjustment_cents=adj,
                    patient_paid_cents=paid,
                )
            )
            account.balance_cents += charged - ins - adj - paid
        return str(account.id)


def step_input(
    bundle: PolicyBundle,
    account_id: str,
    step_id: str,
    *,
    channels: list[Channel] | None = None,
    balance_cents: int = 5500,
    episode: str | None = None,
    due_at: dt.datetime | None = None,
) -> SendStepInput:
    """The ``send_step`` input the workflow would build for ``step_id`` of the policy.

    ``due_at``: when the schedule had the step due (rolling caps count a contact from it).
    """
    step = bundle.policy.steps[bundle.policy.step_index(step_id)]
    return SendStepInput(
        account_id=account_id,
        idempotency_key=f"{account_id}/{episode or uuid.uuid4().hex[:12]}/{step.id}",
        policy_hash=bundle.hash,
        step_id=step.id,
        kind=step.kind if step.kind else StepKind.MESSAGE,
        channels=channels or list(step.channels),
        template=step.template,
        tone=step.tone if step.tone else Tone.FRIENDLY,
        balance_cents=balance_cents,
        due_at=due_at or dt.datetime.now(dt.UTC),
    )
