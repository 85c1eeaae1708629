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
  while a financial-assistance application is pending (IRS 501(r), 26 CFR 1.501(r)-6).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

from models.payloads import (
    ContactProfile,
    LadderState,
    StepOutcome,
    StepRecord,
)
from models.policy import Anchor, Channel, Policy, Step, StepKind

UTC = dt.UTC
_MAX_ADJUSTMENTS = 64


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


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
    reason: str


Decision = SendNow | WaitUntil | Skip | WaitForChange | Done


def decide(policy: Policy, state: LadderState, profile: ContactProfile, now: dt.datetime) -> Decision:
    """Decide what the ladder does next at ``now`` (timezone-aware).

    Conditions of a step are evaluated only once it is due, so that a payment or a plan agreed in
    the meantime counts.
    """
    if state.balance_cents <= 0:
        return Done("balance paid" if state.balance_cents == 0 else "credit balance is never billed")
    if state.next_index >= len(policy.steps):
        return Done("all steps of the policy have run")
    minimum = policy.thresholds.minimum_balance
    if state.balance_cents < minimum:
        return WaitForChange(f"balance below the policy minimum of {minimum} cents", state.next_index)
    index = state.next_index
    step = policy.steps[index]
    if step.is_eca and policy.eca.enabled and state.fa_application_pending:
        return WaitForChange(
            "extraordinary collection actions suspended: financial-assistance application pending",
            index,
        )
    channels, blocked = allowed_channels(policy, step, profile)
    planned = schedule(policy, index, state, profile, now, channels or step.channels)
    if planned.at > now:
        return WaitUntil(planned)
    skip_reason = unmet_condition(step, state, now)
    if skip_reason:
        return Skip(index, step, skip_reason)
    if not channels:
        return Skip(index, step, "no allowed channel: " + "; ".join(blocked))
    return SendNow(planned)


def allowed_channels(
    policy: Policy, step: Step, profile: ContactProfile
) -> tuple[tuple[Channel, ...], list[str]]:
    """The step's fallback chain, less the channels this guarantor cannot or may not receive."""
    allowed: list[Channel] = []
    blocked: list[str] = []
    for channel in step.channels:
        status = profile.status(channel)
        if channel is Channel.CALL and status.reachable:
            allowed.append(channel)
        elif not status.reachable:
            blocked.append(f"{channel.value}: {status.reason or 'not reachable'}")
        elif not status.consent and (channel is not Channel.SMS or policy.contact.sms_requires_consent):
            blocked.append(f"{channel.value}: {status.reason or 'no consent'}")
        else:
            allowed.append(channel)
    return tuple(allowed), blocked


def unmet_condition(step: Step, state: LadderState, now: dt.datetime) -> str:
    """The first condition of ``step`` that does not hold, or an empty string."""
    when = step.when
    if when.min_balance is not None and state.balance_cents < when.min_balance:
        return f"condition: balance below {when.min_balance} cents"
    if when.min_account_age_days is not None:
        opened = state.opened_at or state.anchor_at or now
        age = (now - opened).days
        if age < when.min_account_age_days:
            return f"condition: account {age} days old, step needs {when.min_account_age_days}"
    if when.plan_active is not None and state.plan_active != when.plan_active:
        return "condition: " + ("no payment plan active" if when.plan_active else "on a payment plan")
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
    tz = zone(profile.time_zone or policy.contact.default_patient_time_zone)
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
    """Move step ``index`` from its nominal time to the first moment every contact rule allows."""
    step = policy.steps[index]
    rules = policy.contact
    reasons: list[str] = []
    at = nominal_time(policy, index, state, profile, now)
    if at < now:
        at = now
    patient_tz = zone(profile.time_zone or rules.default_patient_time_zone)
    practice_tz = zone(rules.practice_time_zone)
    contacts = state.contacts()
    primary = channels[0] if channels else step.channels[0]

    if step.is_eca and policy.eca.enabled:
        at = _not_before(at, _eca_earliest(policy, index, state), reasons, "IRS 501(r) waiting period")

    open_days = {d.number for d in rules.business_days}
    holidays = set(rules.holidays)
    for _ in range(_MAX_ADJUSTMENTS):
        before = at
        if contacts and rules.min_spacing_hours:
            earliest = contacts[-1].at + dt.timedelta(hours=rules.min_spacing_hours)
            at = _not_before(at, earliest, reasons, f"minimum spacing of {rules.min_spacing_hours}h")
        for cap in rules.caps:
            if cap.channel is primary:
                at = _not_before(at, _cap_free_at(contacts, cap.channel, cap.max, cap.per_days, at),
                                 reasons, f"cap of {cap.max} {cap.channel.value} in {cap.per_days} days")
        local = at.astimezone(patient_tz)
        start, end = rules.allowed_hours.start, rules.allowed_hours.end
        if local.time() < start:
            at = _moved(dt.datetime.combine(local.date(), start, tzinfo=patient_tz), reasons,
                        "quiet hours (before allowed hours)")
        elif local.time() >= end:
            nxt = local.date() + dt.timedelta(days=1)
            at = _moved(dt.datetime.combine(nxt, start, tzinfo=patient_tz), reasons,
                        "quiet hours (after allowed hours)")
        practice_day = at.astimezone(practice_tz).date()
        if practice_day.weekday() not in open_days or practice_day in holidays:
            why = "practice holiday" if practice_day in holidays else "practice closed that weekday"
            day = practice_day + dt.timedelta(days=1)
            while day.weekday() not in open_days or day in holidays:
                day += dt.timedelta(days=1)
            at = _moved(dt.datetime.combine(day, rules.send_time, tzinfo=practice_tz), reasons, why)
        if at == before:
            break
    else:  # pragma: no cover - the policy validator keeps calendars satisfiable
        raise ValueError("contact rules leave no allowed moment for this step")
    return Planned(index, step, at, tuple(channels), tuple(reasons))


def _eca_earliest(policy: Policy, index: int, state: LadderState) -> dt.datetime:
    anchor = state.anchor_at
    assert anchor is not None  # an ECA is never the first step (validated)
    earliest = anchor + dt.timedelta(days=policy.eca.notification_days)
    notices = {s.id for s in policy.steps[:index] if s.kind is StepKind.FINAL_NOTICE}
    sent = [r.at for r in state.contacts() if r.step_id in notices]
    if sent:
        earliest = max(earliest, sent[-1] + dt.timedelta(days=policy.eca.notice_lead_days))
    return earliest


def _cap_free_at(
    contacts: list[StepRecord], channel: Channel, limit: int, per_days: int, at: dt.datetime
) -> dt.datetime:
    """The first moment from ``at`` at which one more contact on ``channel`` stays within the cap."""
    window = dt.timedelta(days=per_days)
    times = sorted(r.at for r in contacts if r.channel is channel and r.at > at - window)
    if len(times) < limit:
        return at
    return times[len(times) - limit] + window


def _not_before(at: dt.datetime, earliest: dt.datetime, reasons: list[str], why: str) -> dt.datetime:
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
    """Advance past a step that ran (sent, or suppressed at the moment of sending)."""
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
    record = StepRecord(step_id=skip.step.id, outcome=StepOutcome.SKIPPED, at=at, reasons=[skip.reason])
    state.history.append(record)
    state.next_index = skip.index + 1
    return record


def apply_payment(state: LadderState, reference: str, amount_cents: int) -> bool:
    """Lower the balance once per reference. Returns False for a duplicate."""
    if reference in state.seen_references:
        return False
    state.seen_references.append(reference)
    state.balance_cents -= amount_cents
    state.paid_cents += amount_cents
    return True


def apply_charge(state: LadderState, reference: str, amount_cents: int) -> bool:
    """Raise the balance once per reference. Returns False for a duplicate."""
    key = f"charge:{reference}"
    if key in state.seen_references:
        return False
    state.seen_references.append(key)
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
    return next((i for i in range(len(policy.steps)) if policy.nominal_day(i) > reached),
                len(policy.steps))


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


def timeline(
    policy: Policy,
    balance_cents: int,
    first_statement: dt.datetime,
    profile: ContactProfile,
    *,
    state: LadderState | None = None,
) -> list[TimelineEntry]:
    """Every step a balance that never pays would go through, from ``first_statement`` on.

    Approval gates are assumed approved on the day they are due; a step that can only wait for a
    new fact ends the timeline with its reason in ``waiting_for``.
    """
    state = state or LadderState(balance_cents=balance_cents, opened_at=first_statement)
    if state.anchor_at is None:
        state.anchor_at = first_statement
    now = first_statement
    entries: list[TimelineEntry] = []
    while True:
        decision = decide(policy, state, profile, now)
        match decision:
            case WaitUntil(planned):
                now = planned.at
            case SendNow(planned):
                channel = planned.channels[0]
                record_sent(state, planned, now, channel, None)
                entries.append(TimelineEntry(planned.index, planned.step, now, StepOutcome.SENT,
                                             channel, list(planned.reasons)))
            case Skip(index, step, reason):
                record_skip(state, decision, now)
                entries.append(TimelineEntry(index, step, now, StepOutcome.SKIPPED, None, [reason]))
            case WaitForChange(reason, index):
                if index is not None:
                    step = policy.steps[index]
                    entries.append(TimelineEntry(index, step, now, StepOutcome.SKIPPED, None,
                                                 [], waiting_for=reason))
                return entries
            case Done():
                return entries
