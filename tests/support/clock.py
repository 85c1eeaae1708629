"""Fixed calendars for the tests: a test states the instant it is about, never the day it runs.

Time-skipping scenarios move the test server's clock forward to a fixed instant before the balance
is imported (``advance_to``); the workflow's first statement is then sent at that instant, so the
weekend, holiday or DST change a scenario is about falls on the same ladder day in every run.

The server's clock can only move forward. If a chosen instant is already past on the day the suite
runs, ``advance_to`` moves it by whole 28-year periods: the Gregorian calendar repeats its weekdays
every 28 years within 1901-2099, so weekdays, US holidays (fixed dates or "the nth weekday") and
US DST changes (second Sunday of March, first Sunday of November) fall exactly as chosen.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from temporalio.testing import WorkflowEnvironment

UTC = dt.UTC
NEW_YORK = ZoneInfo("America/New_York")

MORNING = dt.datetime(2027, 1, 12, 15, 0, tzinfo=UTC)
"""10:00 in New York on Tuesday 12 January 2027: inside every policy's hours, on a business day."""
NIGHT = MORNING + dt.timedelta(hours=12)
"""22:00 in New York the same day: outside the allowed hours."""

# Scenario starts (the moment the first statement goes out), each chosen for what it crosses.
TUESDAY_MORNING = dt.datetime(2027, 1, 12, 10, 0, tzinfo=NEW_YORK)
"""An ordinary weekday: later steps cross weekends, Presidents' Day and DST (14 Mar)."""
FRIDAY_EVENING = dt.datetime(2027, 3, 12, 17, 30, tzinfo=NEW_YORK)
"""Friday before the spring DST change (Sunday 14 March 2027): the next day's sends cross it."""
BEFORE_FALL_BACK = dt.datetime(2027, 10, 29, 9, 0, tzinfo=NEW_YORK)
"""Friday before the fall DST change (Sunday 7 November 2027), with Thanksgiving 28 days later."""
BEFORE_JULY_FOURTH = dt.datetime(2027, 7, 1, 11, 0, tzinfo=NEW_YORK)
"""Thursday 1 July 2027: day 4 is Independence Day observed (Monday 5 July), after a weekend."""
SATURDAY_NOON = dt.datetime(2027, 5, 1, 12, 0, tzinfo=NEW_YORK)
"""A Saturday: the first statement goes out on a weekend day."""

CALENDAR_PERIOD_YEARS = 28


def in_future_of(instant: dt.datetime, now: dt.datetime) -> dt.datetime:
    """``instant``, moved by whole 28-year periods until it is after ``now`` (same calendar)."""
    local = instant
    while local <= now:
        local = local.replace(year=local.year + CALENDAR_PERIOD_YEARS)
    return local


async def advance_to(env: WorkflowEnvironment, instant: dt.datetime) -> dt.datetime:
    """Move the time-skipping server's clock to ``instant`` (see the module notes); return it."""
    now = await env.get_current_time()
    target = in_future_of(instant, now)
    await env.sleep(target - now)
    return target


def in_waking_hours(at: dt.datetime, zone: ZoneInfo, start: int = 8, end: int = 21) -> bool:
    """Whether ``at`` is within ``start``:00-``end``:00 on ``zone``'s wall clock (DST-aware)."""
    local = at.astimezone(zone)
    return dt.time(start) <= local.time() < dt.time(end)
