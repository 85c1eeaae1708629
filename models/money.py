"""Money is integer cents; billing leads write dollars ("$10", "10.00") in policy files and CSVs."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

_MONEY_RE = re.compile(r"^\s*(-)?\s*\$?\s*(-)?(\d{1,12}(?:,\d{3})*|\d+)(?:\.(\d{1,2}))?\s*$")


def parse_cents(value: object) -> int:
    """Parse a dollar amount into integer cents.

    Accepts ints (taken as dollars), and strings such as ``"10"``, ``"$1,234.50"`` or ``"-3.5"``.
    Floats (YAML reads ``10.50`` as one) are taken by their shortest text form.

    Raises:
        ValueError: the value is not an amount with at most two decimals.
    """
    if isinstance(value, bool):
        raise ValueError("expected an amount such as 10.00, not a boolean")
    if isinstance(value, int):
        return value * 100
    if isinstance(value, Decimal):
        value = str(value)
    if isinstance(value, float):
        # YAML reads 10.50 as a float; its shortest repr is exactly what the person wrote.
        value = repr(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an amount such as 10.00, got {type(value).__name__}")
    m = _MONEY_RE.match(value)
    if not m:
        raise ValueError(f"expected an amount such as 10.00, got {value!r}")
    sign = -1 if (m.group(1) or m.group(2)) else 1
    try:
        whole = int(Decimal(m.group(3).replace(",", "")))
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise ValueError(f"expected an amount such as 10.00, got {value!r}") from exc
    frac = int((m.group(4) or "0").ljust(2, "0"))
    return sign * (whole * 100 + frac)


def format_cents(cents: int, currency: str = "USD") -> str:
    """Format cents for people: ``$1,234.50`` (a minus sign before the dollar sign)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{sign}{symbol}{whole:,}.{frac:02d}"


Cents = Annotated[int, BeforeValidator(lambda v: v if isinstance(v, int) else parse_cents(v))]
"""A field that holds cents and accepts a dollar string ("10.00") when read from a file."""


def dollars_text(cents: int) -> str:
    """Cents as plain dollar text, ``-3.50``: what :func:`parse_cents` reads back."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


DollarsAsCents = Annotated[
    int, BeforeValidator(parse_cents), PlainSerializer(dollars_text, return_type=str)
]
"""A field written in dollars in a file (``10`` means $10.00), held as cents.

It serialises back to dollar text, so a policy survives the round trip through a workflow's
history unchanged.
"""
