"""Pure rules for what happens to a balance besides the ladder: holds, plans, settlements, events.

Like ``workflows.decisions``: no I/O, time passed in; the workflow, previews and tests share them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from models.actions import (
    AccountState,
    ChannelEventKind,
    ChannelEventSignal,
    HoldReason,
    Plan,
    Settlement,
)
from models.payloads import ChannelStatus, ContactProfile, LadderState
from models.policy import Channel, Policy, ReentryMode, StepKind
from models.protections import RESTRICTED_REASON
from workflows.decisions import (
    UNREACHABLE,
    Skip,
    eca_earliest_at,
    nominal_time,
    unreachable,
    zone,
)

UTC = dt.UTC
LETTER_RETURNED = "letter returned by the post office"


def end_hold(state: LadderState, account: AccountState, now: dt.datetime) -> int:
    """Lift the hold; the ladder's later steps move by the days held. Returns the days held."""
    hold = account.hold
    assert hold is not None
    held = now - hold.since
    if state.anchor_at is not None:
        state.anchor_at += held
    days = held.days
    account.held_days_total += days
    if hold.reason is HoldReason.FINANCIAL_ASSISTANCE:
        state.fa_application_pending = False
    account.hold = None
    return days


def mark_unreachable(profile: ContactProfile, channel: Channel, reason: str) -> None:
    current = profile.status(channel)
    profile.channels[channel] = ChannelStatus(
        reachable=False, consent=current.consent, reason=reason
    )


RESTRICTION_EVENTS = frozenset({ChannelEventKind.RESTRICTED, ChannelEventKind.RESTRICTION_LIFTED})


def apply_channel_event(
    profile: ContactProfile, event: ChannelEventSignal, *, keep_opt_out: bool = True
) -> None:
    """Reflect a deliverability or consent change in the flags the decision core routes by.

    A restriction and its lifting leave an opt-out as it was (the patient's own STOP, unsubscribe
    or "stop calling me"), so lifting restores only what the restriction alone closed.
    ``keep_opt_out`` False is the behaviour of workflows started before that rule (replay).
    """
    assert event.channel is not None
    current = profile.status(event.channel)
    match event.kind:
        case (
            ChannelEventKind.EMAIL_BOUNCED
            | ChannelEventKind.SMS_UNDELIVERABLE
            | ChannelEventKind.LETTER_RETURNED
        ):
            reason = {
                ChannelEventKind.EMAIL_BOUNCED: "email bounced",
                ChannelEventKind.SMS_UNDELIVERABLE: "number undeliverable",
                ChannelEventKind.LETTER_RETURNED: LETTER_RETURNED,
            }[event.kind]
            mark_unreachable(profile, event.channel, reason)
            return
        case ChannelEventKind.WRONG_NUMBER:
            # The number is someone else's: neither texts nor calls go to it (like a call's
            # wrong-number outcome).
            for channel in (Channel.CALL, Channel.SMS):
                mark_unreachable(profile, channel, "wrong number")
            return
        case ChannelEventKind.OPTED_OUT:
            updated = ChannelStatus(reachable=current.reachable, consent=False, reason="opted out")
        case ChannelEventKind.CONSENT_GIVEN:
            updated = ChannelStatus(
                reachable=current.reachable,
                consent=True,
                reason="" if current.reachable else current.reason,
            )
        case ChannelEventKind.RESTRICTED if keep_opt_out:
            updated = current.model_copy(update={"restricted": True})
        case ChannelEventKind.RESTRICTION_LIFTED if keep_opt_out and (
            current.reason != RESTRICTED_REASON  # else restricted the old way: lifted below
        ):
            updated = current.model_copy(update={"restricted": False})
        case ChannelEventKind.RESTRICTED:
            updated = ChannelStatus(
                reachable=False,
                consent=current.consent,
                reason=RESTRICTED_REASON,
            )
        case ChannelEventKind.RESTRICTION_LIFTED:
            updated = ChannelStatus(
                reachable=True,
                consent=current.consent,
                reason="" if current.consent else current.reason,
            )
        case ChannelEventKind.ADDRESS_CORRECTED:
            updated = ChannelStatus(
                reachable=True,
                consent=current.consent,
                reason="" if current.consent else current.reason,
            )
    profile.channels[event.channel] = updated


def stop_sms_after_placement(profile: ContactProfile) -> None:
    """Carriers and Twilio forbid third-party debt collection by SMS (CTIA; Twilio AUP)."""
    current = profile.status(Channel.SMS)
    profile.channels[Channel.SMS] = ChannelStatus(
        reachable=current.reachable, consent=False, reason="placed with an agency"
    )


def discount_percent(balance_cents: int, amount_cents: int) -> float:
    return 100.0 * (balance_cents - amount_cents) / balance_cents if balance_cents > 0 else 0.0


def settlement_met(state: LadderState, settlement: Settlement) -> bool:
    return state.paid_cents - settlement.paid_at_offer_cents >= settlement.amount_cents


def referral_earliest(policy: Policy, state: LadderState) -> dt.datetime | None:
    """Under IRS 501(r) an agency inherits the limits: no referral before day 120 nor within the
    final notice's lead time, nor before a final notice at all. None outside 501(r)."""
    if not policy.eca.enabled or state.anchor_at is None:
        return None
    notices = {s.id for s in policy.steps if s.kind is StepKind.FINAL_NOTICE}
    if not any(r.step_id in notices for r in state.contacts()):
        return dt.datetime.max.replace(tzinfo=UTC)
    return eca_earliest_at(policy, state)


class PlanEventKind(StrEnum):
    REMIND = "remind"
    CHECK = "check"  # due date plus grace: paid, or missed


@dataclass(frozen=True)
class PlanEvent:
    kind: PlanEventKind
    index: int
    at: dt.datetime


def plan_covered(plan: Plan, state: LadderState) -> int:
    """How many installments the payments since the plan began cover in full."""
    paid = state.paid_cents - plan.paid_at_start_cents
    covered, total = 0, 0
    for installment in plan.installments:
        total += installment.amount_cents
        if paid < total:
            break
        covered += 1
    return covered


def next_plan_event(
    policy: Policy, plan: Plan, state: LadderState, time_zone: str
) -> PlanEvent | None:
    """The next thing a plan needs: a reminder before an unpaid installment, or its grace check."""
    rules = policy.staff.plans
    tz = zone(time_zone or policy.contact.default_patient_time_zone)
    index = plan_covered(plan, state)
    if index >= len(plan.installments):
        return None
    due = plan.installments[index].due_on
    if index not in plan.reminded:
        day = due - dt.timedelta(days=rules.reminder_days_before)
        at = dt.datetime.combine(day, policy.contact.send_time, tzinfo=tz).astimezone(UTC)
        return PlanEvent(PlanEventKind.REMIND, index, max(at, plan.agreed_at))
    grace_end = due + dt.timedelta(days=rules.grace_days + 1)
    return PlanEvent(
        PlanEventKind.CHECK,
        index,
        dt.datetime.combine(grace_end, dt.time(0), tzinfo=tz).astimezone(UTC),
    )


def reentry_index(policy: Policy, state: LadderState) -> int:
    """Where a broken plan re-enters the ladder: the step the policy names, else where it was."""
    name = policy.staff.plans.reentry_step
    return policy.step_index(name) if name else state.next_index


def collapse_overdue(
    policy: Policy, state: LadderState, profile: ContactProfile, now: dt.datetime, why: str
) -> list[Skip]:
    """The steps to skip on re-entering the ladder, so that only the last one due runs.

    After a broken plan, a lifted hold or a lapsed settlement, the steps whose day passed while
    the ladder was paused would otherwise go out back to back, spaced only by the minimum
    spacing. With ``contact.reentry: collapse`` (the default) they collapse into the last of
    them. A final notice, an approval-gated step or an extraordinary collection action is never
    skipped this way: each is a precondition or a decision of its own (IRS 501(r)).
    """
    if policy.contact.reentry is ReentryMode.RESUME:
        return []
    skips: list[Skip] = []
    index = state.next_index
    while index + 1 < len(policy.steps):
        step = policy.steps[index]
        if step.kind is StepKind.FINAL_NOTICE or step.approval is not None or step.is_eca:
            break
        if nominal_time(policy, index + 1, state, profile, now) > now:
            break
        skips.append(
            Skip(
                index,
                step,
                f"re-entry after {why}: collapsed into the next step due"
                " (no contacts back to back)",
            )
        )
        index += 1
    return skips


def contact_tasks(policy: Policy, profile: ContactProfile, waiting_for: str) -> dict[str, str]:
    """The worklist tasks the contact situation calls for, by kind, with their reason.

    ``address``: a letter came back, or a letter step waited its limit for a usable channel and
    the policy's ``on_no_channel`` asks for a task. ``locate``: no channel at all.
    """
    wanted: dict[str, str] = {}
    if unreachable(policy, profile):
        wanted["locate"] = UNREACHABLE
    elif profile.status(Channel.LETTER).reason == LETTER_RETURNED:
        wanted["address"] = LETTER_RETURNED
    elif "a staff task asks for one" in waiting_for:
        wanted["address"] = waiting_for
    return wanted
