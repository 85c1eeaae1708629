"""Phone numbers in E.164 (``+12125550123``), checked with ``phonenumbers`` at intake.

A number is normalised once, where it enters (CSV import rows, API intake), so that the ledger,
the household lookup of inbound texts and the providers all see the same form, and a number that
cannot exist is a row error naming the row and column instead of a provider failure days later.
Numbers without a country code are read as US numbers. The error never repeats the number.
"""

from __future__ import annotations

import phonenumbers

DEFAULT_REGION = "US"
INVALID = (
    "not a valid phone number (expected a number such as (212) 555-0123, or +44 20 7183 8750 "
    "with its country code)"
)


def to_e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """``raw`` in E.164, None for a blank; ValueError for a number that cannot exist."""
    if raw is None or not raw.strip():
        return None
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValueError(INVALID) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(INVALID)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
