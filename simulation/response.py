"""A simple, documented model of how patients respond to contacts, loadable from YAML.

Every contact that is actually sent is one chance for a response, drawn in this order:

1. **Cost**: the channel's cost per contact is spent (letter postage and print, email and SMS
   provider fees, staff time for a call).
2. **Returned mail** (letters only): with ``returned_mail_probability`` the letter comes back
   undeliverable ``returned_mail_days`` later. From then on the address is marked returned, as
   staff would mark it in the ledger, so the send activity falls back to the step's next channel
   or suppresses the step. A returned letter prompts no payment.
3. **Opt-out** (email and SMS only): with the channel's ``opt_out_probability`` the patient
   unsubscribes or texts STOP at once; the channel is then refused by the send activity. An
   opt-out prompts no payment.
4. **Payment**: unless a payment is already on its way, with probability
   ``pay_probability`` times the tone's multiplier (capped at 1) the patient pays after an
   exponentially distributed delay with mean ``mean_days_to_pay``. The payment is partial with
   ``partial_probability``: a fraction between ``partial_fraction_min`` and
   ``partial_fraction_max`` of the balance then owed; otherwise the whole balance.

Balances referred to an agency leave the practice's hands: the agency is assumed to recover
``agency.recovery_rate`` of what was placed and to keep ``agency.fee_rate`` of it.

The defaults are round figures in the range reported for US physician practices (statement
response rates of a few percent to 15% per contact, higher for texts and calls); they are
assumptions to be replaced by a practice's own history, not measurements.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.policy import Channel, Tone

MICROS_PER_DOLLAR = 1_000_000


class ChannelResponse(BaseModel):
    """How patients respond to one contact on a channel, and what the contact costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cost: Decimal = Field(ge=0, description="dollars per contact (fractions of a cent allowed)")
    pay_probability: float = Field(ge=0, le=1, description="chance the contact prompts a payment")
    mean_days_to_pay: float = Field(gt=0, le=365, description="mean delay from contact to payment")
    opt_out_probability: float = Field(default=0.0, ge=0, le=1, description="email and SMS only")

    @property
    def cost_micros(self) -> int:
        """Cost in millionths of a dollar: integer money, precise enough for $0.001 emails."""
        return int(self.cost * MICROS_PER_DOLLAR)


def _default_channels() -> dict[Channel, ChannelResponse]:
    return {
        Channel.LETTER: ChannelResponse(
            cost=Decimal("0.75"), pay_probability=0.10, mean_days_to_pay=12
        ),
        Channel.EMAIL: ChannelResponse(
            cost=Decimal("0.001"),
            pay_probability=0.06,
            mean_days_to_pay=4,
            opt_out_probability=0.01,
        ),
        Channel.SMS: ChannelResponse(
            cost=Decimal("0.0079"),
            pay_probability=0.09,
            mean_days_to_pay=2,
            opt_out_probability=0.02,
        ),
        Channel.CALL: ChannelResponse(
            cost=Decimal("2.50"), pay_probability=0.18, mean_days_to_pay=3
        ),
    }


def _default_tones() -> dict[Tone, float]:
    return {Tone.FRIENDLY: 1.0, Tone.NEUTRAL: 1.0, Tone.FIRM: 1.15, Tone.FINAL: 1.3}


class AgencyResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    recovery_rate: float = Field(default=0.20, ge=0, le=1, description="share of placed dollars")
    fee_rate: float = Field(default=0.30, ge=0, le=1, description="agency's contingency fee")


class ResponseModel(BaseModel):
    """Patient response and channel costs; every field has a documented default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channels: dict[Channel, ChannelResponse] = Field(default_factory=_default_channels)
    tone_multiplier: dict[Tone, float] = Field(default_factory=_default_tones)
    partial_probability: float = Field(default=0.25, ge=0, le=1)
    partial_fraction_min: float = Field(default=0.2, gt=0, lt=1)
    partial_fraction_max: float = Field(default=0.6, gt=0, lt=1)
    returned_mail_probability: float = Field(default=0.04, ge=0, le=1)
    returned_mail_days: int = Field(default=10, ge=0, le=90)
    agency: AgencyResponse = AgencyResponse()

    @model_validator(mode="after")
    def _complete(self) -> Self:
        missing = [c.value for c in Channel if c not in self.channels]
        if missing:
            raise ValueError("channels: missing " + ", ".join(missing))
        if self.partial_fraction_min > self.partial_fraction_max:
            raise ValueError("partial_fraction_min: must not exceed partial_fraction_max")
        return self

    @classmethod
    def load(cls, path: Path | None) -> ResponseModel:
        """The model in a YAML file; missing fields (or channels) take the defaults."""
        if path is None:
            return cls()
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of response-model fields")
        channels = {c.value: r.model_dump() for c, r in _default_channels().items()}
        for name, fields in (data.get("channels") or {}).items():
            channels[name] = {**channels.get(name, {}), **(fields or {})}
        data["channels"] = channels
        return cls.model_validate(data)
