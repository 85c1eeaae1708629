"""Where the patient is (issue #19 item 4): zones from the ZIP code and the phone's area code, the
allowed window over every known location, the policy's default only when nothing is known.

Pure functions of the decision core, and property tests over any pair of US zones, 2026-2040.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.loader import load_policy
from models.imports import BalanceRow
from models.orm import ChannelPreference, Guarantor
from models.orm.repositories import contact_profile
from models.payloads import ChannelStatus, ContactProfile, PatientLocation
from models.policy import Channel
from services.locations import patient_locations, zone_of_zip, zones_of_phone
from tests.factories import balance_row
from workflows import decisions
from workflows.decisions import zone

US_ZONES = [
    "America/New_York",
    "America/Detroit",
    "America/Indiana/Indianapolis",
    "America/Chicago",
    "America/Denver",
    "America/Boise",
    "America/Phoenix",  # no DST
    "America/Los_Angeles",
    "America/Anchorage",
    "America/Adak",
    "Pacific/Honolulu",
    "America/Puerto_Rico",
    "America/St_Thomas",
    "Pacific/Guam",
    "Pacific/Saipan",
    "Pacific/Pago_Pago",
]
PROPERTY = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
POLICY = load_policy("physician").policy
REACHABLE = {c: ChannelStatus(reachable=True) for c in Channel}


def _guarantor(**fields: str) -> Guarantor:
    base = {"external_ref": "G-LOC", "first_name": "Testy", "last_name": "Synthetic"}
    return Guarantor(
        **(base | fields), channels=[ChannelPreference(channel=Channel.SMS, consent=True)]
    )


def _profile(*zones: str) -> ContactProfile:
    locations = [PatientLocation(time_zone=z, source="address") for z in zones]
    return ContactProfile(channels=dict(REACHABLE), locations=locations)


def test_zones_come_from_the_zip_code_and_the_area_code_offline() -> None:
    assert zone_of_zip("90012") == "America/Los_Angeles"
    assert zone_of_zip("60601-1234") == "America/Chicago"
    assert zone_of_zip("96813") == "Pacific/Honolulu"
    assert zone_of_zip("00901") == "America/Puerto_Rico"
    assert zone_of_zip("not a zip") is None
    assert zones_of_phone("+1 212 555 0123") == ("America/New_York",)
    assert zones_of_phone("(808) 555-0123") == ("Pacific/Honolulu",)
    assert zones_of_phone("+1 800 555 0123") == ()  # toll-free: says nothing of where
    assert zones_of_phone("+1 555 010 0123") == ()
    assert [(loc.time_zone, loc.source) for loc in patient_locations("90012", "2125550123")] == [
        ("America/Los_Angeles", "address"),
        ("America/New_York", "phone"),
    ]


def test_a_new_york_number_with_a_los_angeles_address_is_called_11_to_21_eastern() -> None:
    """Reg F 1006.6(b)(1)(i) commentary. Before: only the stored zone (New York) counted."""
    profile = contact_profile(
        _guarantor(
            phone="+12125550123",
            address_line1="1 Example Way",
            city="Los Angeles",
            postal_code="90012",
            time_zone="",
        )
    )
    assert decisions.patient_zones(POLICY, profile) == (
        ("America/Los_Angeles", "address"),
        ("America/New_York", "phone"),
    )
    eastern = zone("America/New_York")
    morning = dt.datetime(2027, 1, 12, 10, 30, tzinfo=eastern)
    opens = decisions.quiet_hours_until(POLICY, profile, morning)
    assert opens == dt.datetime(2027, 1, 12, 11, 0, tzinfo=eastern)
    assert (
        decisions.quiet_hours_until(
            POLICY, profile, dt.datetime(2027, 1, 12, 11, 0, tzinfo=eastern)
        )
        is None
    )
    late = dt.datetime(2027, 1, 12, 21, 30, tzinfo=eastern)
    assert decisions.quiet_hours_until(POLICY, profile, late) == dt.datetime(
        2027, 1, 13, 11, 0, tzinfo=eastern
    )
    note = decisions.window_note(POLICY, profile, morning)
    assert "America/Los_Angeles (address)" in note and "America/New_York (phone)" in note
    assert "11:00-21:00 America/Los_Angeles" not in note  # said in the home (address) zone
    assert "08:00-18:00 America/Los_Angeles" in note


def test_rows_without_a_zone_are_not_stored_as_new_york() -> None:
    """Before: a row without a zone became America/New_York, Illinois patients included, so the
    ZIP code and the policy's default never applied."""
    row = balance_row(state="IL", postal_code="60601", city="Chicago", phone="")
    row.pop("time_zone")
    parsed = BalanceRow.model_validate(row)
    assert parsed.time_zone == ""
    profile = contact_profile(
        _guarantor(
            address_line1="1 Example Way",
            city="Chicago",
            postal_code=parsed.postal_code or "",
            time_zone=parsed.time_zone,
        )
    )
    assert decisions.patient_zones(POLICY, profile) == (("America/Chicago", "address"),)
    first = dt.datetime(2027, 1, 12, 15, 0, tzinfo=dt.UTC)
    entries = decisions.timeline(POLICY, 12000, first, profile)
    for entry in entries:
        local = entry.at.astimezone(zone("America/Chicago")).time()
        assert dt.time(8) <= local < dt.time(21)
    # statement-2's day 30 at the policy's 10:00 send time, in Chicago, not New York
    statement2 = next(e for e in entries if e.step.id == "statement-2")
    assert statement2.at.astimezone(zone("America/Chicago")).time() == dt.time(10, 0)


def test_the_policy_default_zone_only_when_nothing_is_known() -> None:
    nothing = contact_profile(_guarantor(time_zone=""))
    assert decisions.patient_zones(POLICY, nothing) == (
        (POLICY.contact.default_patient_time_zone, "policy default"),
    )
    known = contact_profile(_guarantor(phone="+13125550123", time_zone=""))
    assert decisions.patient_zones(POLICY, known) == (("America/Chicago", "phone"),)


@PROPERTY
@given(
    first=st.sampled_from(US_ZONES),
    second=st.sampled_from(US_ZONES),
    moment=st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2040, 12, 31),
        timezones=st.just(dt.UTC),
    ),
)
def test_the_window_opens_at_the_first_moment_allowed_in_both_zones(
    first: str, second: str, moment: dt.datetime
) -> None:
    profile = _profile(first, second)
    opens = decisions.quiet_hours_until(POLICY, profile, moment)
    at = moment if opens is None else opens
    assert at >= moment
    hours = POLICY.contact.allowed_hours
    for name in (first, second):
        local = at.astimezone(zone(name)).time()
        assert hours.start <= local < hours.end, (name, at)
    if opens is not None:  # nothing earlier was allowed in both (checked every 15 minutes)
        probe = moment
        while probe < opens:
            assert decisions.quiet_hours_until(POLICY, profile, probe) is not None
            probe += dt.timedelta(minutes=15)


@PROPERTY
@given(
    first=st.sampled_from(US_ZONES),
    second=st.sampled_from(US_ZONES),
    start=st.datetimes(
        min_value=dt.datetime(2026, 1, 1),
        max_value=dt.datetime(2040, 6, 30),
        timezones=st.just(dt.UTC),
    ),
)
def test_every_planned_contact_is_inside_the_hours_of_both_zones(
    first: str, second: str, start: dt.datetime
) -> None:
    profile = _profile(first, second)
    hours = POLICY.contact.allowed_hours
    for entry in decisions.timeline(POLICY, 12000, start, profile):
        if entry.outcome.value != "sent":
            continue
        for name in (first, second):
            local = entry.at.astimezone(zone(name)).time()
            assert hours.start <= local < hours.end, (entry.step.id, name, entry.at)
