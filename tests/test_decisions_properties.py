"""Property tests of the pure decision core over random policies, balances, zones and calendars.

Whatever the policy, the balance, the patient's time zone and the practice calendar, every contact
that :func:`workflows.decisions.timeline` (the code the workflow and the preview run) computes:
- lies inside the allowed hours in the patient's zone, on an open practice day;
- keeps every per-channel cap in every rolling window, and the minimum spacing;
- comes in step order, never before its day offset;
- under IRS 501(r), is no ECA before day 120 nor within 30 days after a sent final notice.

Derandomized: the same examples run every time, so a failure is reproducible.
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.payloads import ChannelStatus, ContactProfile, LadderState, StepOutcome, StepRecord
from models.policy import Channel, Policy, StepKind, Weekday
from workflows import decisions
from workflows.decisions import Done, Skip, TimelineEntry, WaitForChange, timeline, zone

ZONES = [
    "America/New_York",
    "America/Los_Angeles",
    "America/Chicago",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Puerto_Rico",
    "America/Santiago",  # DST changes at midnight
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "Asia/Kathmandu",  # UTC+05:45
    "Pacific/Kiritimati",  # UTC+14
    "Pacific/Pago_Pago",  # UTC-11
    "Europe/London",
    "UTC",
]
CHANNELS = list(Channel)
SETTINGS = settings(
    derandomize=True,
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def hours(draw: st.DrawFn) -> tuple[dt.time, dt.time, dt.time]:
    """Allowed hours inside 08:00-21:00 (half hours) and a send time inside them."""
    slots = list(range(16, 43))  # 08:00 .. 21:00 in half hours
    start = draw(st.sampled_from(slots[:-1]))
    end = draw(st.sampled_from([s for s in slots if s > start]))
    send = draw(st.integers(start, end - 1))

    def t(slot: int) -> dt.time:
        return dt.time(slot // 2, 30 * (slot % 2)) if slot < 42 else dt.time(21, 0)

    return t(start), t(end), t(send)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    start, end, send = draw(hours())
    business = draw(st.sets(st.sampled_from(list(Weekday)), min_size=1))
    holidays = draw(st.sets(st.dates(dt.date(2026, 1, 1), dt.date(2027, 12, 31)), max_size=40))
    caps = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "channel": st.sampled_from(CHANNELS),
                    "max": st.integers(1, 7),
                    "per_days": st.integers(1, 14),
                }
            ),
            max_size=4,
        )
    )
    n = draw(st.integers(1, 8))
    steps: list[dict[str, Any]] = []
    day = 0
    for i in range(n):
        anchor = (
            "first_statement"
            if i == 0
            else draw(st.sampled_from(["first_statement", "previous_contact"]))
        )
        if anchor == "first_statement":
            day = draw(st.integers(day, day + 40))
            offset = day
        else:
            offset = draw(st.integers(0, 20))
        channels = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=4, unique=True))
        steps.append(
            {
                "id": f"s{i}",
                "day": offset,
                "anchor": anchor,
                "channels": [c.value for c in channels],
                "template": "t",
            }
        )
    eca = draw(st.booleans())
    if eca:
        # A final notice, then an ECA at least 30 days later and after day 120 (by their offsets).
        notice_day = max(day, draw(st.integers(0, 150)))
        eca_day = max(notice_day + 30, 120) + draw(st.integers(0, 30))
        steps.append(
            {
                "id": "final",
                "day": notice_day,
                "channels": ["letter"],
                "template": "t",
                "kind": "final_notice",
            }
        )
        steps.append(
            {
                "id": "eca",
                "day": eca_day,
                "channels": draw(st.sampled_from([["letter"], ["call", "letter"]])),
                "template": "t",
                "kind": "agency_referral",
                "eca": True,
                "approval": {"approvers": ["supervisor"]},
            }
        )
    return Policy.model_validate(
        {
            "name": "generated",
            "practice": {
                "name": "Synthetic Clinic",
                "phone": "(555) 010-9999",
                "financial_assistance_summary": "Free or discounted care by income.",
            },
            "thresholds": {"minimum_balance": draw(st.sampled_from(["0", "5", "10"]))},
            "contact": {
                "practice_time_zone": draw(st.sampled_from(ZONES)),
                "allowed_hours": {"start": start.isoformat(), "end": end.isoformat()},
                "send_time": send.isoformat(),
                "business_days": sorted(d.value for d in business),
                "holidays": sorted(holidays),
                "min_spacing_hours": draw(st.integers(0, 96)),
                "caps": caps,
            },
            "eca": {"enabled": eca},
            "steps": steps,
        }
    )


@st.composite
def profiles(draw: st.DrawFn) -> ContactProfile:
    unreachable = draw(st.sets(st.sampled_from(CHANNELS), max_size=2))
    return ContactProfile(
        time_zone=draw(st.sampled_from(ZONES)),
        channels={
            c: ChannelStatus(reachable=c not in unreachable, reason="returned") for c in CHANNELS
        },
    )


first_statements = st.datetimes(
    dt.datetime(2026, 1, 1), dt.datetime(2027, 6, 30), timezones=st.just(dt.UTC)
)


def _check(policy: Policy, balance: int, first: dt.datetime, profile: ContactProfile) -> None:
    entries = timeline(policy, balance, first, profile)
    sent = [e for e in entries if e.outcome is StepOutcome.SENT]
    rules = policy.contact
    patient = zone(profile.time_zone)
    practice = zone(rules.practice_time_zone)
    open_days = {d.number for d in rules.business_days}

    for e in sent:
        local = e.at.astimezone(patient)
        assert rules.allowed_hours.start <= local.time() < rules.allowed_hours.end, (e, local)
        day = e.at.astimezone(practice).date()
        assert day.weekday() in open_days and day not in rules.holidays, (e, day)

    for cap in rules.caps:
        times = [e.at for e in sent if e.channel is cap.channel]
        window = dt.timedelta(days=cap.per_days)
        for t in times:
            in_window = [u for u in times if t - window < u <= t]
            assert len(in_window) <= cap.max, (cap, t, in_window)

    indices = [e.index for e in entries]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    moments = [e.at for e in entries]
    assert moments == sorted(moments)
    for a, b in itertools.pairwise(sent):
        assert b.at - a.at >= dt.timedelta(hours=rules.min_spacing_hours), (a, b)

    _check_offsets(policy, first, profile, sent)
    if policy.eca.enabled:
        _check_501r(policy, first, sent)


def _check_offsets(
    policy: Policy, first: dt.datetime, profile: ContactProfile, sent: list[TimelineEntry]
) -> None:
    """No step earlier than the date its day offset names (in the patient's zone)."""
    patient = zone(profile.time_zone)
    previous: dt.datetime | None = None
    for e in sent:
        step = e.step
        base = previous if step.anchor.value == "previous_contact" and previous else first
        earliest = base.astimezone(patient).date() + dt.timedelta(days=step.day)
        assert e.at.astimezone(patient).date() >= earliest, (e, earliest)
        previous = e.at


def _check_501r(policy: Policy, first: dt.datetime, sent: list[TimelineEntry]) -> None:
    notices = [e.at for e in sent if e.step.kind is StepKind.FINAL_NOTICE]
    for e in sent:
        if not e.step.is_eca:
            continue
        assert e.at >= first + dt.timedelta(days=policy.eca.notification_days), e
        before = [n for n in notices if n < e.at]
        assert before, "an ECA without a final notice sent before it"
        assert e.at - before[-1] >= dt.timedelta(days=policy.eca.notice_lead_days), e


@SETTINGS
@given(
    policy=policies(),
    balance=st.integers(1, 500_000),
    first=first_statements,
    profile=profiles(),
)
def test_every_contact_respects_every_rule(
    policy: Policy, balance: int, first: dt.datetime, profile: ContactProfile
) -> None:
    _check(policy, balance, first, profile)


def _narrow_policy(**contact: Any) -> Policy:
    return Policy.model_validate(
        {
            "name": "narrow",
            "practice": {"name": "Synthetic Clinic", "phone": "(555) 010-9999"},
            "contact": {"practice_time_zone": "America/Chicago", **contact},
            "steps": [
                {"id": f"s{i}", "day": 7 * i, "channels": ["letter"], "template": "t"}
                for i in range(6)
            ],
        }
    )


def test_quiet_hours_and_a_closed_day_no_longer_push_each_other_on_for_ever() -> None:
    """Regression (found by the property test): the core gave up with "no allowed moment".

    Practice in Chicago, open on Mondays only, sending at 08:00; the patient in New York may be
    contacted 08:00-09:00. Monday 08:00 in Chicago is 09:00 in New York (too late); the patient's
    next morning is a Tuesday in Chicago (closed); back to Monday 08:00, and so on. The only
    allowed moments are Mondays 07:00-08:00 Chicago time.
    """
    policy = _narrow_policy(
        allowed_hours={"start": "08:00", "end": "09:00"}, send_time="08:00", business_days=["mon"]
    )
    profile = ContactProfile(
        time_zone="America/New_York", channels={Channel.LETTER: ChannelStatus(reachable=True)}
    )
    first = dt.datetime(2026, 11, 2, 16, tzinfo=dt.UTC)
    _check(policy, 10_000, first, profile)
    sent = timeline(policy, 10_000, first, profile)
    assert len(sent) == 6
    chicago = [e.at.astimezone(zone("America/Chicago")) for e in sent[1:]]
    assert all(t.weekday() == 0 and t.hour == 7 for t in chicago), chicago


def test_reasons_survive_the_wake_up() -> None:
    """The rule that moved a step is recorded when it runs, not only when it was first planned."""
    policy = _narrow_policy(holidays=["2026-11-09"])
    profile = ContactProfile(
        time_zone="America/Chicago", channels={Channel.LETTER: ChannelStatus(reachable=True)}
    )
    entries = timeline(policy, 10_000, dt.datetime(2026, 11, 2, 16, tzinfo=dt.UTC), profile)
    moved = next(e for e in entries if e.step.id == "s1")
    assert moved.at.date() == dt.date(2026, 11, 10)
    assert moved.reasons == ["practice holiday"]


@example(balance=50_000)
@settings(derandomize=True, max_examples=20, deadline=None)
@given(balance=st.integers(1, 1_000_000))
def test_eca_waits_for_a_pending_assistance_application_and_needs_a_sent_notice(
    balance: int,
) -> None:
    policy = Policy.model_validate(
        {
            "name": "hospital",
            "practice": {
                "name": "Synthetic Hospital",
                "phone": "(555) 010-9999",
                "financial_assistance_summary": "Free or discounted care by income.",
            },
            "thresholds": {"minimum_balance": "0"},
            "eca": {"enabled": True},
            "steps": [
                {"id": "st", "day": 0, "channels": ["letter"], "template": "t"},
                {
                    "id": "final",
                    "day": 90,
                    "channels": ["letter"],
                    "template": "t",
                    "kind": "final_notice",
                    "when": {"min_balance": "200.00"},
                },
                {
                    "id": "eca",
                    "day": 120,
                    "channels": ["letter"],
                    "template": "t",
                    "kind": "agency_referral",
                    "eca": True,
                    "approval": {"approvers": ["director"]},
                },
            ],
        }
    )
    profile = ContactProfile(channels={Channel.LETTER: ChannelStatus(reachable=True)})
    first = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
    entries = timeline(policy, balance, first, profile)
    by_id = {e.step.id: e for e in entries}
    if balance < 20_000:
        # The notice's condition fails: no notice went out, so the ECA must not run at all.
        assert by_id["final"].outcome is StepOutcome.SKIPPED
        assert by_id["eca"].outcome is StepOutcome.SKIPPED
        assert "no final notice" in by_id["eca"].reasons[0]
    else:
        assert by_id["eca"].outcome is StepOutcome.SENT
        assert by_id["eca"].at - by_id["final"].at >= dt.timedelta(days=30)
        assert by_id["eca"].at >= first + dt.timedelta(days=120)

    state = LadderState(
        balance_cents=balance, anchor_at=first, next_index=2, fa_application_pending=True
    )
    state.history.append(
        StepRecord(step_id="final", outcome=StepOutcome.SENT, at=first + dt.timedelta(days=90))
    )
    decision = decisions.decide(policy, state, profile, first + dt.timedelta(days=200))
    assert isinstance(decision, WaitForChange) and "application pending" in decision.reason
    state.fa_application_pending = False
    decision = decisions.decide(policy, state, profile, first + dt.timedelta(days=200))
    assert not isinstance(decision, WaitForChange | Skip | Done)


def test_small_balance_is_written_off_after_the_quiet_period_not_chased() -> None:
    policy = Policy.model_validate(
        {
            "name": "small",
            "practice": {"name": "Synthetic Clinic", "phone": "(555) 010-9999"},
            "thresholds": {
                "minimum_balance": "10",
                "small_balance_write_off": {"below": "10", "after_days_inactive": 60},
            },
            "steps": [{"id": "st", "day": 0, "channels": ["letter"], "template": "t"}],
        }
    )
    profile = ContactProfile(channels={Channel.LETTER: ChannelStatus(reachable=True)})
    first = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
    entries = timeline(policy, 950, first, profile)
    assert [e.written_off for e in entries] == [True]
    assert entries[0].at == first + dt.timedelta(days=60)
    assert timeline(policy, 1000, first, profile)[0].outcome is StepOutcome.SENT
    # A payment restarts the quiet period.
    state = LadderState(balance_cents=1500, anchor_at=first)
    decisions.apply_payment(state, "P-1", 600, first + dt.timedelta(days=50))
    assert not isinstance(
        decisions.decide(policy, state, profile, first + dt.timedelta(days=61)), Done
    )
    done = decisions.decide(policy, state, profile, first + dt.timedelta(days=110))
    assert isinstance(done, Done) and done.write_off
    # Credit balances are never billed.
    credit = decisions.decide(
        policy, LadderState(balance_cents=-500, anchor_at=first), profile, first
    )
    assert isinstance(credit, Done) and not credit.write_off and "credit" in credit.reason
