"""Practice closed days from the ``holidays`` library: any year, pure and deterministic.

The decision core asks :func:`is_holiday` for a practice day. The library computes a year's
holidays from rules (Thanksgiving is the fourth Thursday of November, an observed Independence
Day moves to the Friday or Monday), so 2028, 2029 and 2040 work as well as this year. The result
for a (country, subdivision, observed, year) is cached: a workflow's every wake-up and a
portfolio simulation ask the same few years again and again.

Pure Python without I/O or clock: safe in workflow code (``models`` and ``holidays`` are passed
through the sandbox by ``worker.py``). The library's version is pinned by the deployment; a new
version that changed a past year's holidays would change decisions being replayed, so upgrade it
like a policy.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import TYPE_CHECKING

import holidays
from temporalio import workflow

if TYPE_CHECKING:
    from models.policy import Calendar, ContactRules


@lru_cache(maxsize=64)
def _library(
    country: str, subdivision: str | None, observed: bool, year: int
) -> dict[dt.date, str]:
    # The library names holidays through gettext, which reads the library's own bundled catalogue
    # and calls locale.normalize on the fixed language asked for: the same answer on every run of
    # a deployment, like zoneinfo's database. The Temporal sandbox forbids locale to workflow code
    # in general, so this one call is let through, and nothing else.
    with workflow.unsafe.sandbox_unrestricted():
        days = holidays.country_holidays(
            country, subdiv=subdivision, years=year, observed=observed, language="en_US"
        )
    return {day: str(name) for day, name in sorted(days.items())}


@lru_cache(maxsize=256)
def _closed(calendar_key: tuple[object, ...], year: int) -> frozenset[dt.date]:
    country, subdivision, observed, skip, yearly = calendar_key
    assert isinstance(country, str) and isinstance(observed, bool)
    assert subdivision is None or isinstance(subdivision, str)
    assert isinstance(skip, tuple) and isinstance(yearly, tuple)
    closed = {
        day
        for day, name in _library(country, subdivision, observed, year).items()
        if not any(
            part.strip().startswith(s)
            for part in name.split(";")
            for s in skip
            if isinstance(s, str)
        )
    }
    for month_day in yearly:
        assert isinstance(month_day, str)
        month, day = (int(x) for x in month_day.split("-"))
        try:
            closed.add(dt.date(year, month, day))
        except ValueError:  # 02-29 outside a leap year
            continue
    return frozenset(closed)


def _key(calendar: Calendar) -> tuple[object, ...]:
    return (
        calendar.country,
        calendar.subdivision,
        calendar.observed,
        tuple(calendar.skip),
        tuple(calendar.yearly_closures),
    )


def closed_days(calendar: Calendar, year: int) -> frozenset[dt.date]:
    """Every day of ``year`` the calendar closes the practice (library, skips, closures)."""
    days = set(_closed(_key(calendar), year))
    days.update(d for d in calendar.closures if d.year == year)
    days.difference_update(calendar.openings)
    return frozenset(days)


def is_holiday(rules: ContactRules, day: dt.date) -> bool:
    """True if the practice is closed on ``day`` for a holiday (hand list or calendar)."""
    if day in rules.holidays:
        return True
    calendar = rules.calendar
    if calendar is None:
        return False
    if day in calendar.openings:
        return False
    if day in calendar.closures:
        return True
    return day in _closed(_key(calendar), day.year)


def supported(country: str, subdivision: str | None) -> str:
    """ "" if the library knows the calendar, else an error naming the field."""
    countries = holidays.list_supported_countries()
    if country not in countries:
        return f"contact.calendar.country: the holidays library has no country {country!r}"
    if subdivision is not None and subdivision not in countries[country]:
        known = ", ".join(countries[country][:12])
        return (
            f"contact.calendar.subdivision: {country} has no subdivision {subdivision!r} "
            f"(such as {known}...)"
        )
    return ""


@lru_cache(maxsize=32)
def holiday_names(country: str, subdivision: str | None) -> frozenset[str]:
    """The library's holiday names for a calendar over a few years (observed ones included)."""
    names: set[str] = set()
    for year in range(2024, 2030):
        for name in _library(country, subdivision, True, year).values():
            names.update(part.strip() for part in name.split(";"))
    return frozenset(names)


HAND_LIST_HORIZON_DAYS = 548
"""18 months: a hand list of holidays that ends sooner is about to leave years without any."""


def calendar_warnings(rules: ContactRules, today: dt.date) -> list[str]:
    """What ``policy check`` warns about the policy's closed days (never an error)."""
    warnings: list[str] = []
    if rules.holidays:
        last = max(rules.holidays)
        if last < today + dt.timedelta(days=HAND_LIST_HORIZON_DAYS):
            warnings.append(
                f"contact.holidays: the hand list ends on {last.isoformat()}, within 18 months; "
                "after it no day is a holiday. Name a calendar instead (contact.calendar: "
                "{country: US, ...}; see docs/policies.md)"
            )
    return warnings
