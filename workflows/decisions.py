"""The pure decision core: what is due, when, by which channel, and under which rule.

No I/O, no clock: time is passed in. The workflow calls :func:`decide` at every wake-up; the policy
preview and the portfolio simulation call the very same functions in-process, so what a billing
lead previews is what a patient receives.

Rules and their sources:
- contact only inside allowed local hours (12 CFR 1006.6(b)(1)(i); TCPA 47 CFR 64.1200(c)(1));
- rolling caps per channel (12 CFR 1006.14(b)(2): 7 calls in 7 days);
- practice business days and holidays: a step on a closed day moves to the next open day;
- minimum spacing between any two contacts;
- SMS only with consent (TCPA, 47 U.S.C. 227);
- no extraordinary collection action before day 120, nor within 30 days of the final notice, nor
  while a financial-assistance application is pending, nor at all when no final notice went out
  (IRS 501(r), 26 CFR 1.501(r)-6);
- credit balances are never billed; balances below the minimum are not chased; small balances
  are written off after a quiet period instead of being chased (the dental seed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

from models.calendars import is_holiday
from models.money import format_cents
from models.payloads import (
    ContactProfile,
    LadderState,
    StepOutcome,
    StepRecord,
)
from models.policy import Anchor, Channel, ContactRules, NoChannelAction, Policy, Step, StepKind
from models.protections import RESTRICTED_REASON
from workflows import protections

UTC = dt.UTC
ON_TIME = dt.timedelta(minutes=1)
"""A timer fires a little after its moment: a step that late is on time, not overdue, so it keeps
the reasons it was planned with."""
_MAX_ADJUSTMENTS = 16
_MAX_SEARCH_DAYS = 3 * 366  # a calendar with no open moment in three years is unsatisfiable
OPTED_OUT = "opted out"
"""The reason a channel's consent flag carries once the patient asked us not to use it."""


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def calendar_day(policy: Policy, start: dt.datetime, at: dt.datetime) -> int:
    """The policy day of ``at``: calendar days since ``start`` in the practice's zone.

    Not elapsed 24-hour periods: a step at 10:00 on day 120 is day 120 although a DST change in
    between made the interval an hour shorter.
    """
    tz = zone(policy.contact.practice_time_zone)
    return (at.astimezone(tz).date() - start.astimezone(tz).date()).days


@dataclass(frozen=True, slots=True)
class Planned:
    """A step and the moment it may run, with the rules that moved it there."""

    index: int
    step: Step
    at: dt.datetime
    channels: tuple[Channel, ...]
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SendNow:
    planned: Planned


@dataclass(frozen=True, slots=True)
class WaitUntil:
    planned: Planned


@dataclass(frozen=True, slots=True)
class Skip:
    index: int
    step: Step
    reason: str


@dataclass(frozen=True, slots=True)
class WaitForChange:
    """Nothing can happen on a timer; only a new fact (a charge, a decision) can move the ladder."""

    reason: str
    index: int | None = None


@dataclass(frozen=True, slots=True)
class Done:
    """The ladder has nothing more to do. ``write_off``: the small balance is to be written off."""

    reason: str
    write_off: bool = False


Decision = SendNow | WaitUntil | Skip | WaitForChange | Done


def decide(
    policy: Policy,
    state: LadderState,
    profile: ContactProfile,
    now: dt.datetime,
    *,
    no_channel_rule: bool = True,
) -> Decision:
    """Decide what the ladder does next at ``now`` (timezone-aware).

    Conditions of a step are evaluated only once it is due, so that a payment or a plan agreed in
    the meantime counts. ``no_channel_rule``: a step without a usable channel follows the
    policy's ``on_no_channel`` (False only for workflows recorded before it existed: they skip).
    """
    if state.balance_cents <= 0:
        return Done(
            "balance paid" if state.balance_cents == 0 else "credit balance is never billed"
        )
    write_off = policy.thresholds.small_balance_write_off
    if write_off is not None and state.balance_cents < write_off.below:
        # Not chased: a statement would cost more than it brings in. Written off once quiet.
        due = write_off_due(policy, state, now)
        below = format_cents(write_off.below, policy.currency)
        if now >= due:
            return Done(
                f"small balance below {below}: written off after"
                f" {write_off.after_days_inactive} days without activity",
                write_off=True,
            )
        index = min(state.next_index, len(policy.steps) - 1)
        return WaitUntil(
            Planned(
                index,
                policy.steps[index],
                due,
                (),
                (f"small balance below {below}: write-off due",),
            )
        )
    if state.next_index >= len(policy.steps):
        return Done("all steps of the policy have run")
    minimum = policy.thresholds.minimum_balance
    if state.balance_cents < minimum:
        return WaitForChange(
            f"balance below the policy minimum of {format_cents(minimum, policy.currency)}",
            state.next_index,
        )
    index = state.next_index
    step = policy.steps[index]
    if under_eca_limits(policy, step):
        if state.fa_application_pending:
            return WaitForChange(
                "extraordinary collection actions suspended: financial-assistance application"
                " pending (IRS 501(r))",
                index,
            )
        if not _final_notice_sent(policy, index, state):
            return Skip(
                index,
                step,
                "IRS 501(r): no final notice with the financial-assistance"
                " summary was sent before this extraordinary collection action",
            )
    channels, blocked = allowed_channels(policy, step, profile)
    planned = schedule(policy, index, state, profile, now, channels or step.channels)
    if planned.at > now:
        return WaitUntil(planned)
    if protections.barred_step(step):
        barred = protections.time_barred(policy, profile, state.opened_at, now)
        if barred:
            return Skip(index, step, barred)
    skip_reason = unmet_condition(step, state, now)
    if skip_reason:
        return Skip(index, step, skip_reason)
    if not channels:
        reason = "no allowed channel: " + "; ".join(blocked)
        if not no_channel_rule:
            return Skip(index, step, reason)
        return no_channel(policy, index, state, profile, now, reason)
    return SendNow(planned)


UNREACHABLE = "unreachable: no usable address, phone or email; a locate task asks staff to find"
WAITING_FOR_CHANNEL = "waiting for a usable contact point"


def unreachable(policy: Policy, profile: ContactProfile) -> bool:
    """No channel at all may reach the patient: the account is parked for a person to locate."""
    return all(channel_block(policy, channel, profile) for channel in Channel)


def no_channel(
    policy: Policy,
    index: int,
    state: LadderState,
    profile: ContactProfile,
    now: dt.datetime,
    reason: str,
) -> Decision:
    """A due step none of whose channels is usable.

    An unreachable patient parks the ladder (never "complete", never escalated without a
    person). Otherwise a step with a letter in its chain waits, up to the policy's
    ``on_no_channel.wait_days`` after it fell due, for a corrected contact point (a returned
    letter's new address); then it follows ``on_no_channel.then``: wait on, skip, or wait with a
    staff task. Optional notices by email or text are skipped as before.
    """
    step = policy.steps[index]
    if unreachable(policy, profile):
        return WaitForChange(f"{UNREACHABLE} ({reason})", index)
    if Channel.LETTER not in step.channels:
        return Skip(index, step, reason)  # an optional notice: the letters carry the ladder
    rule = policy.contact.on_no_channel
    limit = nominal_time(policy, index, state, profile, now) + dt.timedelta(days=rule.wait_days)
    if now < limit:
        why = f"{WAITING_FOR_CHANNEL} until {limit.date().isoformat()} ({reason})"
        return WaitUntil(Planned(index, step, limit, (), (why,)))
    if rule.then is NoChannelAction.SKIP:
        return Skip(index, step, reason)
    if rule.then is NoChannelAction.TASK:
        return WaitForChange(f"{WAITING_FOR_CHANNEL}; a staff task asks for one ({reason})", index)
    return WaitForChange(f"{WAITING_FOR_CHANNEL} ({reason})", index)


def allowed_channels(
    policy: Policy, step: Step, profile: ContactProfile
) -> tuple[tuple[Channel, ...], list[str]]:
    """The step's fallback chain, less the channels this guarantor cannot or may not receive."""
    allowed: list[Channel] = []
    blocked: list[str] = []
    for channel in step.channels:
        problem = channel_block(policy, channel, profile)
        if problem:
            blocked.append(problem)
        else:
            allowed.append(channel)
    return tuple(allowed), blocked


def channel_block(policy: Policy, channel: Channel, profile: ContactProfile) -> str:
    """Why ``channel`` may not be used for this guarantor now, or an empty string.

    The one rule for the schedule and for the check at the moment of sending: a contact point
    that is deliverable, no opt-out of that medium (12 CFR 1006.14(h)), and for SMS the recorded
    consent the policy requires (TCPA, 47 U.S.C. 227). A call needs no prior consent.
    """
    status = profile.status(channel)
    if status.restricted:
        return f"{channel.value}: {RESTRICTED_REASON}"
    if not status.reachable:
        return f"{channel.value}: {status.reason or 'not reachable'}"
    if status.consent or (
        status.reason != OPTED_OUT
        and (
            channel is Channel.CALL
            or (channel is Channel.SMS and not policy.contact.sms_requires_consent)
        )
    ):
        return ""
    return f"{channel.value}: {status.reason or 'no consent'}"


def unmet_condition(step: Step, state: LadderState, now: dt.datetime) -> str:
    """The first condition of ``step`` that does not hold, or an empty string."""
    when = step.when
    if when.min_balance is not None and state.balance_cents < when.min_balance:
        return f"condition: balance below {format_cents(when.min_balance)}"
    opened = state.opened_at or state.anchor_at or now
    age = (now - opened).days
    if when.min_account_age_days is not None and age < when.min_account_age_days:
        return f"condition: account {age} days old, step needs {when.min_account_age_days}"
    if when.max_account_age_days is not None and age > when.max_account_age_days:
        return f"condition: account {age} days old, step only up to {when.max_account_age_days}"
    if when.plan_active is not None and state.plan_active != when.plan_active:
        return "condition: " + (
            "no payment plan active" if when.plan_active else "on a payment plan"
        )
    return ""


def nominal_time(
    policy: Policy, index: int, state: LadderState, profile: ContactProfile, now: dt.datetime
) -> dt.datetime:
    """When step ``index`` falls by its day offset alone, at the policy's local send time."""
    step = policy.steps[index]
    if step.anchor is Anchor.PREVIOUS_CONTACT and state.contacts():
        base = state.contacts()[-1].at
    else:
        base = state.anchor_at or now
    tz = zone(home_zone(policy, profile))
    local_day = base.astimezone(tz).date() + dt.timedelta(days=step.day)
    if index == 0 and step.day == 0 and step.anchor is Anchor.FIRST_STATEMENT:
        # The first statement goes out when the balance enters the ladder, not at 10:00 that day.
        return base
    return dt.datetime.combine(local_day, policy.contact.send_time, tzinfo=tz).astimezone(UTC)


def schedule(
    policy: Policy,
    index: int,
    state: LadderState,
    profile: ContactProfile,
    now: dt.datetime,
    channels: tuple[Channel, ...] | list[Channel],
) -> Planned:
    """Move step ``index`` from its nominal time to the first moment every contact rule allows.

    The rules are applied from the nominal time, not from ``now``, so that the reasons a step was
    moved are the same at every wake-up (and in the preview) as when it was first planned. Only a
    step already overdue is planned again from ``now``.
    """
    step = policy.steps[index]
    rules = policy.contact
    contacts = state.contacts()
    primary = channels[0] if channels else step.channels[0]
    calendar = calendar_of(policy, profile)
    eca_earliest = eca_earliest_at(policy, state, index) if under_eca_limits(policy, step) else None

    def settle(at: dt.datetime) -> tuple[dt.datetime, list[str]]:
        reasons: list[str] = []
        for _ in range(_MAX_ADJUSTMENTS):
            before = at
            # Not-before limits first: each is a fixed moment, so they never undo each other.
            if eca_earliest is not None:
                at = _not_before(at, eca_earliest, reasons, "IRS 501(r) waiting period")
            if primary is Channel.CALL and state.call_cooldown_until is not None:
                at = _not_before(
                    at,
                    state.call_cooldown_until,
                    reasons,
                    "no call within 7 days of a conversation (Reg F)",
                )
            if contacts and rules.min_spacing_hours:
                earliest = contacts[-1].at + dt.timedelta(hours=rules.min_spacing_hours)
                at = _not_before(
                    at, earliest, reasons, f"minimum spacing of {rules.min_spacing_hours}h"
                )
            for cap in rules.caps:
                if cap.channel is primary:
                    free = _cap_free_at(contacts, cap.channel, cap.max, cap.per_days, at)
                    at = _not_before(
                        at,
                        free,
                        reasons,
                        f"cap of {cap.max} {cap.channel.value} in {cap.per_days} days",
                    )
            free, why = protections.state_cap_free_at(policy, profile, primary, contacts, at)
            at = _not_before(at, free, reasons, why)
            at = calendar.adjust(at, reasons)
            if at == before:
                return at, reasons
        # pragma: no cover - adjust() always returns an allowed moment; limits are fixed
        raise ValueError("contact rules leave no allowed moment for this step")

    at, reasons = settle(nominal_time(policy, index, state, profile, now))
    if at < now - ON_TIME:
        at, reasons = settle(now)
    return Planned(index, step, at, tuple(channels), tuple(reasons))


@dataclass(frozen=True, slots=True)
class _Calendar:
    """Allowed local hours in every location of the patient, and open days of the practice."""

    patient_tzs: tuple[ZoneInfo, ...]
    practice_tz: ZoneInfo
    start: dt.time
    end: dt.time
    send_time: dt.time
    open_weekdays: frozenset[int]
    rules: ContactRules  # holidays: the hand list and the policy's calendar

    def is_holiday(self, day: dt.date) -> bool:
        return is_holiday(self.rules, day)

    def is_open(self, day: dt.date) -> bool:
        return day.weekday() in self.open_weekdays and not self.is_holiday(day)

    def in_hours(self, at: dt.datetime) -> bool:
        """Inside the allowed hours at every known location (12 CFR 1006.6(b)(1)(i))."""
        return all(self.start <= at.astimezone(tz).time() < self.end for tz in self.patient_tzs)

    def allows(self, at: dt.datetime) -> bool:
        return self.in_hours(at) and self.is_open(at.astimezone(self.practice_tz).date())

    def adjust(self, at: dt.datetime, reasons: list[str]) -> dt.datetime:
        """An allowed moment at or after ``at``, naming the rule that moved it.

        Quiet hours move a contact to the start of the patient's next allowed window (in every
        location); a closed practice day moves it to the next open day at the policy's send time.
        When the two disagree (a patient many hours away from the practice), the earliest moment
        both allow.
        """
        if self.allows(at):
            return at
        quiet = next(
            (
                tz
                for tz in self.patient_tzs
                if not self.start <= at.astimezone(tz).time() < self.end
            ),
            None,
        )
        if quiet is not None:
            moved = self.hours_from(at)
            early = at.astimezone(quiet).time() < self.start
            why = (
                "quiet hours (before allowed hours)"
                if early
                else "quiet hours (after allowed hours)"
            )
        else:
            day = at.astimezone(self.practice_tz).date()
            why = "practice holiday" if self.is_holiday(day) else "practice closed that weekday"
            nxt = self._next_open(day + dt.timedelta(days=1))
            moved = self._at(nxt, self.send_time, self.practice_tz)
        if not self.allows(moved):
            moved = self.earliest_allowed(at)
            practice_day = moved.astimezone(self.practice_tz).date()
            if practice_day != at.astimezone(self.practice_tz).date():
                day = at.astimezone(self.practice_tz).date()
                if not self.is_open(day):
                    _moved(
                        moved,
                        reasons,
                        "practice holiday"
                        if self.is_holiday(day)
                        else "practice closed that weekday",
                    )
        return _moved(moved, reasons, why)

    def hours_from(self, at: dt.datetime) -> dt.datetime:
        """The first moment from ``at`` inside the allowed hours of every location.

        The common window opens when the last location's window opens, so the candidates are
        ``at`` and each location's opening on the next few local days. When the locations share
        no hour at all (possible with hours narrower than the policy's 08:00-21:00), the first
        location's hours alone.
        """
        if self.in_hours(at):
            return at
        candidates = sorted(
            opening
            for tz in self.patient_tzs
            for offset in range(-1, 3)
            if (
                opening := self._at(
                    at.astimezone(tz).date() + dt.timedelta(days=offset), self.start, tz
                )
            )
            > at
        )
        for candidate in candidates:
            if self.in_hours(candidate):
                return candidate
        first = self.patient_tzs[0]
        local = at.astimezone(first)
        day = local.date() if local.time() < self.start else local.date() + dt.timedelta(days=1)
        return self._at(day, self.start, first)

    def earliest_allowed(self, at: dt.datetime) -> dt.datetime:
        """The first moment from ``at`` inside the patient's hours on an open practice day."""
        moment = at
        for _ in range(2 * _MAX_SEARCH_DAYS):
            moment = self.hours_from(moment)
            practice_day = moment.astimezone(self.practice_tz).date()
            if self.is_open(practice_day) or not self.in_hours(moment):
                return moment
            # The practice is closed that day: the next practice midnight, then the hours again.
            moment = self._at(practice_day + dt.timedelta(days=1), dt.time(0), self.practice_tz)
        raise ValueError("contact rules leave no allowed moment in three years")

    def _next_open(self, day: dt.date) -> dt.date:
        for _ in range(_MAX_SEARCH_DAYS):
            if self.is_open(day):
                return day
            day += dt.timedelta(days=1)
        raise ValueError("the practice calendar has no open day in three years")

    @staticmethod
    def _at(day: dt.date, time: dt.time, tz: ZoneInfo) -> dt.datetime:
        return dt.datetime.combine(day, time, tzinfo=tz).astimezone(UTC)


def patient_zones(policy: Policy, profile: ContactProfile) -> tuple[tuple[str, str], ...]:
    """Every location the collector knows of, as ``(zone, source)``, the home zone first.

    The zone on record, then the address's and the phone's (Reg F 1006.6(b)(1)(i) and its
    commentary: a time is convenient only if it is convenient in every location known). The
    policy's default zone only when nothing is known.
    """
    found: dict[str, str] = {}
    if profile.time_zone:
        found[profile.time_zone] = "record"
    for location in profile.locations:
        found.setdefault(location.time_zone, location.source)
    if not found:
        found[policy.contact.default_patient_time_zone] = "policy default"
    return tuple(found.items())


def home_zone(policy: Policy, profile: ContactProfile) -> str:
    """The zone a step's local day and send time are counted in: the first known location."""
    return patient_zones(policy, profile)[0][0]


def calendar_of(policy: Policy, profile: ContactProfile) -> _Calendar:
    rules = policy.contact
    return _Calendar(
        tuple(zone(name) for name, _ in patient_zones(policy, profile)),
        zone(rules.practice_time_zone),
        rules.allowed_hours.start,
        rules.allowed_hours.end,
        rules.send_time,
        frozenset(d.number for d in rules.business_days),
        rules,
    )


def quiet_hours_until(
    policy: Policy, profile: ContactProfile, now: dt.datetime
) -> dt.datetime | None:
    """When the allowed hours of every location open again, or None if they are open at ``now``.

    The check at the moment of sending: a late worker must not text at 23:00 anywhere the patient
    may be. Practice days are the schedule's concern, not the send's.
    """
    calendar = calendar_of(policy, profile)
    return None if calendar.in_hours(now) else calendar.hours_from(now)


def window_note(policy: Policy, profile: ContactProfile, on: dt.datetime) -> str:
    """Which locations set the allowed window, and the window they leave, for a timeline.

    E.g. "allowed hours 08:00-21:00 in America/New_York (phone), America/Los_Angeles (address):
    11:00-21:00 America/New_York on 2027-01-12".
    """
    zones = patient_zones(policy, profile)
    hours = policy.contact.allowed_hours
    span = f"{hours.start:%H:%M}-{hours.end:%H:%M}"
    where = ", ".join(f"{name} ({source})" for name, source in zones)
    if len(zones) == 1:
        return f"allowed hours {span} in {where}"
    home = zone(zones[0][0])
    day = on.astimezone(home).date()
    calendar = calendar_of(policy, profile)
    opens = calendar.hours_from(dt.datetime.combine(day, dt.time(0), tzinfo=home))
    closes = min(
        dt.datetime.combine(opens.astimezone(zone(name)).date(), hours.end, tzinfo=zone(name))
        for name, _ in zones
    )
    if not calendar.in_hours(opens) or closes <= opens:
        return f"allowed hours {span} in {where}: no hour convenient in all; {zones[0][0]} used"
    return (
        f"allowed hours {span} in {where}: {opens.astimezone(home):%H:%M}-"
        f"{closes.astimezone(home):%H:%M} {zones[0][0]} on {day.isoformat()}"
    )


def _final_notice_sent(policy: Policy, index: int, state: LadderState) -> bool:
    notices = {s.id for s in policy.steps[:index] if s.kind is StepKind.FINAL_NOTICE}
    return any(r.step_id in notices for r in state.contacts())


def write_off_due(policy: Policy, state: LadderState, now: dt.datetime) -> dt.datetime:
    """When a small balance is written off: after the policy's days without activity."""
    rule = policy.thresholds.small_balance_write_off
    assert rule is not None
    last = state.last_activity_at or state.anchor_at or state.opened_at or now
    return last + dt.timedelta(days=rule.after_days_inactive)


def under_eca_limits(policy: Policy, step: Step) -> bool:
    """Whether IRS 501(r) timing binds ``step``: an ECA, or an agency referral, since the agency
    inherits the limits (26 CFR 1.501(r)-6)."""
    return policy.eca.enabled and (step.is_eca or step.kind is StepKind.AGENCY_REFERRAL)


def eca_earliest_at(policy: Policy, state: LadderState, index: int | None = None) -> dt.datetime:
    """The first moment an ECA (or a referral) before step ``index`` may happen: day 120 after the
    first statement, and the notice lead time after the last final notice sent."""
    anchor = state.anchor_at
    assert anchor is not None  # an ECA is never the first step (validated)
    earliest = anchor + dt.timedelta(days=policy.eca.notification_days)
    steps = policy.steps if index is None else policy.steps[:index]
    notices = {s.id for s in steps if s.kind is StepKind.FINAL_NOTICE}
    sent = [r.at for r in state.contacts() if r.step_id in notices]
    if sent:
        earliest = max(earliest, sent[-1] + dt.timedelta(days=policy.eca.notice_lead_days))
    return earliest


def _cap_free_at(
    contacts: list[StepRecord], channel: Channel, limit: int, per_days: int, at: dt.datetime
) -> dt.datetime:
    """The first moment from ``at`` when one more contact on ``channel`` stays within the cap."""
    return cap_free_at([r.at for r in contacts if r.channel is channel], limit, per_days, at)


def cap_free_at(
    times: Sequence[dt.datetime], limit: int, per_days: int, at: dt.datetime
) -> dt.datetime:
    """The first moment from ``at`` when one more contact stays within ``limit`` in ``per_days``.

    A contact counts at the moment it was due (the schedule's), never at the moment a retry got
    it out: the schedule and the send-time check then agree on the window's boundary.
    """
    window = dt.timedelta(days=per_days)
    recent = sorted(t for t in times if t > at - window)
    if len(recent) < limit:
        return at
    return recent[len(recent) - limit] + window


def cap_block(
    policy: Policy, channel: Channel, times: Sequence[dt.datetime], at: dt.datetime
) -> tuple[str, dt.datetime] | None:
    """The cap ``channel`` would break at ``at`` given its contacts' times, and when it frees."""
    for cap in policy.contact.caps:
        if cap.channel is not channel:
            continue
        free = cap_free_at(times, cap.max, cap.per_days, at)
        if free > at:
            return f"{channel.value}: cap of {cap.max} in {cap.per_days} days reached", free
    return None


def _not_before(
    at: dt.datetime, earliest: dt.datetime, reasons: list[str], why: str
) -> dt.datetime:
    return _moved(earliest, reasons, why) if earliest > at else at


def _moved(to: dt.datetime, reasons: list[str], why: str) -> dt.datetime:
    if why not in reasons:
        reasons.append(why)
    return to.astimezone(UTC)


# --- state transitions, shared by the workflow, the preview and the simulation -------------


def record_sent(
    state: LadderState,
    planned: Planned,
    at: dt.datetime,
    channel: Channel | None,
    communication_id: str | None,
    outcome: StepOutcome = StepOutcome.SENT,
    reasons: list[str] | None = None,
) -> StepRecord:
    """Advance past a step that ran (sent, or suppressed at the moment of sending).

    A step that ran on time counts from its planned moment, not from the milliseconds by which its
    timer fired late: spacing and caps then follow the schedule exactly, in the workflow as in the
    preview and the simulation.
    """
    if planned.at <= at < planned.at + ON_TIME:
        at = planned.at
    if state.anchor_at is None:
        state.anchor_at = at
    record = StepRecord(
        step_id=planned.step.id,
        outcome=outcome,
        at=at,
        channel=channel,
        communication_id=communication_id,
        reasons=list(planned.reasons) + list(reasons or []),
    )
    state.history.append(record)
    state.next_index = planned.index + 1
    return record


def record_skip(state: LadderState, skip: Skip, at: dt.datetime) -> StepRecord:
    record = StepRecord(
        step_id=skip.step.id, outcome=StepOutcome.SKIPPED, at=at, reasons=[skip.reason]
    )
    state.history.append(record)
    state.next_index = skip.index + 1
    return record


def apply_payment(
    state: LadderState, reference: str, amount_cents: int, at: dt.datetime | None = None
) -> bool:
    """Lower the balance once per reference. Returns False for a duplicate.

    ``at`` (when the payment was received) restarts the small-balance write-off's quiet period.
    """
    if reference in state.seen_references:
        return False
    state.seen_references.append(reference)
    if at is not None:
        state.last_activity_at = max(at, state.last_activity_at or at)
    state.balance_cents -= amount_cents
    state.paid_cents += amount_cents
    return True


def apply_charge(
    state: LadderState, reference: str, amount_cents: int, at: dt.datetime | None = None
) -> bool:
    """Raise the balance once per reference. Returns False for a duplicate."""
    key = f"charge:{reference}"
    if key in state.seen_references:
        return False
    state.seen_references.append(key)
    if at is not None:
        state.last_activity_at = max(at, state.last_activity_at or at)
    state.balance_cents += amount_cents
    state.charged_cents += amount_cents
    return True


def resume_index(policy: Policy, state: LadderState) -> int:
    """Where a balance continues on ``policy``: after the last of its steps that already ran here.

    Steps are matched by id; a new version that renames every step starts over from its first step
    after the furthest point already reached in days.
    """
    done = {r.step_id for r in state.history}
    last = max((i for i, s in enumerate(policy.steps) if s.id in done), default=-1)
    if last >= 0 or not state.history:
        return last + 1
    reached = max(policy_day(state, r.at) for r in state.history)
    return next(
        (i for i in range(len(policy.steps)) if policy.nominal_day(i) > reached), len(policy.steps)
    )


def policy_day(state: LadderState, at: dt.datetime) -> int:
    """Days from the first statement to ``at``."""
    return (at - (state.anchor_at or at)).days


# --- the whole timeline, for preview and simulation ---------------------------------------


@dataclass(slots=True)
class TimelineEntry:
    index: int
    step: Step
    at: dt.datetime
    outcome: StepOutcome
    channel: Channel | None
    reasons: list[str] = field(default_factory=list)
    waiting_for: str = ""
    written_off: bool = False


def timeline(
    policy: Policy,
    balance_cents: int,
    first_statement: dt.datetime,
    profile: ContactProfile,
    *,
    state: LadderState | None = None,
    now: dt.datetime | None = None,
) -> list[TimelineEntry]:
    """Every step a balance that never pays would go through, from ``first_statement`` on.

    Approval gates are assumed approved on the day they are due; a step that can only wait for a
    new fact ends the timeline with its reason in ``waiting_for``. With ``state`` (which is
    updated in place) and ``now``, the rest of a running balance's ladder from ``now`` on.
    """
    state = state or LadderState(balance_cents=balance_cents, opened_at=first_statement)
    if state.anchor_at is None:
        state.anchor_at = first_statement
    now = max(now or first_statement, first_statement)
    entries: list[TimelineEntry] = []
    while True:
        decision = decide(policy, state, profile, now)
        match decision:
            case WaitUntil(planned):
                now = planned.at
            case SendNow(planned):
                channel = planned.channels[0]
                record_sent(state, planned, now, channel, None)
                entries.append(
                    TimelineEntry(
                        planned.index,
                        planned.step,
                        now,
                        StepOutcome.SENT,
                        channel,
                        list(planned.reasons),
                    )
                )
            case Skip(index, step, reason):
                record_skip(state, decision, now)
                entries.append(TimelineEntry(index, step, now, StepOutcome.SKIPPED, None, [reason]))
            case WaitForChange(reason, index):
                if index is not None:
                    step = policy.steps[index]
                    entries.append(
                        TimelineEntry(
                            index, step, now, StepOutcome.SKIPPED, None, [], waiting_for=reason
                        )
                    )
                return entries
            case Done(reason, write_off=True):
                index = min(state.next_index, len(policy.steps) - 1)
                entries.append(
                    TimelineEntry(
                        index,
                        policy.steps[index],
                        now,
                        StepOutcome.SKIPPED,
                        None,
                        [reason],
                        written_off=True,
                    )
                )
                return entries
            case Done():
                return entries
