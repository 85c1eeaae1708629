"""The balances a simulation runs over: a practice-management CSV export, or a synthetic portfolio.

Every balance gets the very contact profile the import would give its workflow: profiles are built
by :func:`models.orm.repositories.contact_profile` from an unsaved guarantor, so flags and reasons
match what ``Intake.import_balances`` puts into the workflow input.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from models.imports import BalanceRow, CsvImportError, parse_rows
from models.orm import ChannelPreference, Deliverability, Guarantor
from models.orm.repositories import contact_profile
from models.payloads import ContactProfile
from models.policy import Channel, Policy
from services.locations import patient_locations

UTC = dt.UTC

# Synthetic guarantors' time zones, weighted roughly by US population.
ZONES: tuple[tuple[str, float], ...] = (
    ("America/New_York", 0.46),
    ("America/Chicago", 0.29),
    ("America/Denver", 0.06),
    ("America/Phoenix", 0.02),
    ("America/Los_Angeles", 0.15),
    ("America/Anchorage", 0.01),
    ("Pacific/Honolulu", 0.01),
)
SYNTHETIC_INTAKE_DAYS = 28
"""Synthetic balances enter the ladder in daily imports over the first four weeks."""


@dataclass(frozen=True, slots=True)
class SimBalance:
    """One account's balance as it enters the ladder."""

    account: str
    balance_cents: int
    opened_at: dt.datetime
    entered_at: dt.datetime
    profile: ContactProfile


ProfileKey = tuple[str, str, bool, bool, bool, bool, bool, tuple[str, ...], str | None]

PLACELESS_ZIP = "99999"
"""A well-formed ZIP code no ZIP database places: a synthetic address adds no time zone."""
PLACELESS_PHONE = "+15005550100"
"""A valid number with no place (NANP 500): a synthetic phone adds no time zone either."""


class ProfileBook:
    """Contact profiles built once per distinct combination of flags, and shared."""

    def __init__(self, policy: Policy) -> None:
        self._sms_requires_consent = policy.contact.sms_requires_consent
        self._profiles: dict[ProfileKey, ContactProfile] = {}

    def get(
        self,
        time_zone: str,
        language: str,
        *,
        address: bool,
        email: bool,
        phone: bool,
        sms_consent: bool,
        postal_code: str | None = None,
        phone_number: str | None = None,
        region: str | None = None,
    ) -> ContactProfile:
        """The profile the import would give such a guarantor: the row's own ZIP code, number and
        state when given (they add the places the allowed window counts, and the state's rules),
        else placeless stand-ins, so that ``time_zone`` alone places a synthetic patient."""
        postal_code = (postal_code or PLACELESS_ZIP) if address else None
        phone_number = (phone_number or PLACELESS_PHONE) if phone else None
        places = tuple(loc.time_zone for loc in patient_locations(postal_code, phone_number))
        key = (
            time_zone,
            language,
            address,
            email,
            phone,
            sms_consent,
            self._sms_requires_consent,
            places,
            region,
        )
        profile = self._profiles.get(key)
        if profile is None:
            guarantor = Guarantor(
                external_ref="simulated",
                first_name="Sim",
                last_name="Ulated",
                email="sim@example.test" if email else None,
                phone=phone_number,
                address_line1="1 Example Way" if address else None,
                city="Springfield" if address else None,
                postal_code=postal_code,
                region=region,
                time_zone=time_zone,
                language=language,
                channels=[
                    ChannelPreference(
                        channel=Channel.SMS, consent=sms_consent, deliverability=Deliverability.OK
                    )
                ],
            )
            profile = contact_profile(guarantor, self._sms_requires_consent)
            self._profiles[key] = profile
        return profile

    def for_row(self, row: BalanceRow) -> ContactProfile:
        return self.get(
            row.time_zone,
            row.language,
            address=bool(row.address_line1 and row.city and row.postal_code),
            email=bool(row.email),
            phone=bool(row.phone),
            sms_consent=row.sms_consent,
            postal_code=row.postal_code,
            phone_number=row.phone,
            region=row.state,
        )


def from_csv(path: Path, policy: Policy, start: dt.datetime) -> list[SimBalance]:
    """Balances of a practice-management export, as ``dunning import balances`` would post them.

    All balances enter the ladder at ``start`` (the moment of the import). An account's balance is
    the sum of its positive charge lines: each of them is one ``add_charge`` signal.

    Raises:
        CsvImportError: every bad row, as the import reports them.
    """
    rows, errors = parse_rows(path, BalanceRow)
    if errors:
        raise CsvImportError(errors)
    book = ProfileBook(policy)
    by_account: dict[str, list[BalanceRow]] = defaultdict(list)
    for _, row in rows:
        by_account[row.account_number].append(row)
    balances = []
    for number, account_rows in by_account.items():
        cents = sum(r.balance_cents for r in account_rows if r.balance_cents > 0)
        if cents <= 0:
            continue
        opened = dt.datetime.combine(min(r.service_date for r in account_rows), dt.time(), UTC)
        balances.append(SimBalance(number, cents, opened, start, book.for_row(account_rows[0])))
    return balances


def synthetic(
    n: int, policy: Policy, start: dt.datetime, seed: int = 0, offset: int = 0
) -> Iterator[SimBalance]:
    """``n`` invented balances (numbers ``offset`` to ``offset + n - 1``), reproducible by seed.

    Amounts are log-normal around $120 (a few below the policy minimum, a few in the thousands);
    97% have a postal address, 65% an email, 90% a phone, 55% of phones consent to texts. Each
    balance is imported on one of the business days of the first four weeks, at the time of day
    of ``start``, with a service date 30 to 90 days before.
    """
    book = ProfileBook(policy)
    zones = [z for z, _ in ZONES]
    weights = [w for _, w in ZONES]
    intake_days = [
        d for d in range(SYNTHETIC_INTAKE_DAYS) if (start + dt.timedelta(days=d)).weekday() < 5
    ] or [0]
    for i in range(offset, offset + n):
        rng = random.Random(seed * 1_000_003 + i)
        dollars = min(20_000.0, math.exp(rng.gauss(math.log(120.0), 1.0)))
        cents = max(100, round(dollars * 100))
        phone = rng.random() < 0.90
        profile = book.get(
            rng.choices(zones, weights)[0],
            "en",
            address=rng.random() < 0.97,
            email=rng.random() < 0.65,
            phone=phone,
            sms_consent=phone and rng.random() < 0.55,
        )
        entered = start + dt.timedelta(days=rng.choice(intake_days))
        opened = dt.datetime.combine(
            (entered - dt.timedelta(days=rng.randint(30, 90))).date(), dt.time(), UTC
        )
        yield SimBalance(f"SIM-{i:07d}", cents, opened, entered, profile)
