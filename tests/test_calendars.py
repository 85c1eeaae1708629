"""Practice calendars from the ``holidays`` library: any year works, hand lists are warned about.

Before: every shipped policy listed its holidays by hand and the lists ended in 2027, so letters
went out on Thanksgiving and Christmas 2028 and New Year 2029 while ``policy check`` said ok.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from config.loader import PolicyFileError, load_policy, shipped_policies
from config.settings import POLICY_DIR
from models.calendars import calendar_warnings, closed_days, is_holiday
from models.payloads import ChannelStatus, ContactProfile, StepOutcome
from models.policy import Calendar, Channel, ContactRules
from tests.test_policy_check import BASE
from workflows.decisions import timeline, zone

runner = CliRunner()
SHIPPED = [p.stem for p in shipped_policies()]


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize(
    "day",
    [
        dt.date(2028, 11, 23),  # Thanksgiving 2028
        dt.date(2028, 12, 25),  # Christmas 2028
        dt.date(2029, 1, 1),  # New Year 2029
        dt.date(2029, 11, 22),  # Thanksgiving 2029
        dt.date(2035, 12, 25),
        dt.date(2040, 11, 22),  # Thanksgiving 2040
    ],
)
def test_every_shipped_policy_closes_on_holidays_of_any_year(name: str, day: dt.date) -> None:
    rules = load_policy(name).policy.contact
    assert rules.holidays == []  # migrated: no hand list left
    assert is_holiday(rules, day), (name, day)


def test_observed_rule_skips_and_yearly_closures() -> None:
    physician = load_policy("physician").policy.contact
    # Independence Day 2026 is a Saturday: observed on Friday 3 July.
    assert is_holiday(physician, dt.date(2026, 7, 3))
    # Christmas 2027 is a Saturday: observed on Friday 24 December.
    assert is_holiday(physician, dt.date(2027, 12, 24))
    # The physician's office stays open on Columbus Day and Veterans Day.
    assert not is_holiday(physician, dt.date(2028, 10, 9))
    assert not is_holiday(physician, dt.date(2028, 11, 10))
    assert not is_holiday(physician, dt.date(2028, 11, 24))  # the day after Thanksgiving
    dental = load_policy("dental").policy.contact
    assert is_holiday(dental, dt.date(2031, 12, 24))  # Christmas Eve, every year
    hospital = load_policy("hospital-501r").policy.contact
    assert is_holiday(hospital, dt.date(2029, 1, 15))  # MLK Day 2029 at the hospital
    assert not is_holiday(physician, dt.date(2029, 1, 15))


def test_a_policy_adds_closures_and_openings_on_top_of_the_library() -> None:
    calendar = Calendar(
        country="US",
        subdivision="PR",
        closures=[dt.date(2028, 8, 14)],
        openings=[dt.date(2028, 12, 25)],
    )
    rules = ContactRules(calendar=calendar)
    assert is_holiday(rules, dt.date(2028, 8, 14))
    assert not is_holiday(rules, dt.date(2028, 12, 25))
    assert is_holiday(rules, dt.date(2028, 1, 6))  # Epiphany, a Puerto Rico holiday
    days = closed_days(calendar, 2028)
    assert dt.date(2028, 8, 14) in days and dt.date(2028, 12, 25) not in days
    assert not is_holiday(ContactRules(calendar=Calendar(country="US")), dt.date(2028, 1, 6))


def test_the_lookup_is_cheap_cached_per_year() -> None:
    rules = load_policy("physician").policy.contact
    from models import calendars

    is_holiday(rules, dt.date(2033, 3, 3))
    before = calendars._closed.cache_info().hits
    for day in range(1, 29):
        is_holiday(rules, dt.date(2033, 2, day))
    assert calendars._closed.cache_info().hits >= before + 28


@pytest.mark.parametrize(
    ("first", "moved_step", "date", "after"),
    [
        ("2028-11-19", "notice-1", "2028-11-23", "2028-11-24"),  # Thanksgiving 2028
        ("2028-12-21", "notice-1", "2028-12-25", "2028-12-26"),  # Christmas 2028
        ("2028-12-28", "notice-1", "2029-01-01", "2029-01-02"),  # New Year 2029
    ],
)
def test_preview_moves_steps_off_holidays_in_later_years(
    first: str, moved_step: str, date: str, after: str
) -> None:
    result = runner.invoke(
        app,
        [
            "policy",
            "preview",
            str(POLICY_DIR / "physician.yaml"),
            "--balance",
            "80",
            "--first-statement",
            first,
            "--tz",
            "America/New_York",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    entries: list[dict[str, Any]] = json.loads(result.stdout)
    step = next(e for e in entries if e["step"] == moved_step)
    assert step["date"] == after, step
    assert step["reasons"] == ["practice holiday"], step
    assert all(e["date"] != date for e in entries)


def _check(tmp_path: Path, contact: str) -> tuple[int, str]:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE + contact, encoding="utf-8")
    result = runner.invoke(app, ["policy", "check", str(path)])
    return result.exit_code, result.output


def test_policy_check_warns_about_a_hand_list_that_ends_soon(tmp_path: Path) -> None:
    soon = dt.date.today() + dt.timedelta(days=300)
    code, out = _check(tmp_path, f"contact:\n  holidays: [{soon.isoformat()}]\n")
    assert code == 0, out
    assert "warning: contact.holidays: the hand list ends on" in out and "calendar" in out
    later = dt.date.today() + dt.timedelta(days=900)
    code, out = _check(tmp_path, f"contact:\n  holidays: [{soon}, {later}]\n")
    assert code == 0 and "warning" not in out, out
    code, out = _check(tmp_path, "contact:\n  calendar: {country: US}\n")
    assert code == 0 and "warning" not in out, out


def test_calendar_warnings_are_pure() -> None:
    rules = ContactRules(holidays=[dt.date(2027, 11, 25)])
    assert calendar_warnings(rules, dt.date(2026, 12, 1))
    assert not calendar_warnings(rules, dt.date(2020, 1, 1))


@pytest.mark.parametrize(
    ("calendar", "field"),
    [
        ("{country: XX}", "contact.calendar.country"),
        ("{country: US, subdivision: ZZ}", "contact.calendar.subdivision"),
        ("{country: US, skip: [Boxing Day]}", "contact.calendar.skip.0"),
        ("{country: US, yearly_closures: [13-01]}", "contact.calendar.yearly_closures.0"),
    ],
)
def test_a_bad_calendar_is_an_error_naming_the_field(
    tmp_path: Path, calendar: str, field: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(BASE + f"contact:\n  calendar: {calendar}\n", encoding="utf-8")
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert field in str(info.value), str(info.value)


ZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(SHIPPED),
    first=st.dates(dt.date(2026, 1, 1), dt.date(2040, 12, 31)),
    patient_zone=st.sampled_from(ZONES),
)
def test_no_step_of_any_year_lands_on_a_practice_holiday(
    name: str, first: dt.date, patient_zone: str
) -> None:
    policy = load_policy(name).policy
    rules = policy.contact
    practice = zone(rules.practice_time_zone)
    start = dt.datetime.combine(first, rules.send_time, tzinfo=practice).astimezone(dt.UTC)
    profile = ContactProfile(
        time_zone=patient_zone,
        channels={c: ChannelStatus(reachable=True, consent=True) for c in Channel},
    )
    open_days = {d.number for d in rules.business_days}
    for entry in timeline(policy, 250_00, start, profile):
        if entry.outcome is not StepOutcome.SENT:
            continue
        day = entry.at.astimezone(practice).date()
        assert not is_holiday(rules, day), (name, entry.step.id, day)
        assert day.weekday() in open_days, (name, entry.step.id, day)
