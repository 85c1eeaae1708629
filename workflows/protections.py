"""Pure protections owed to the patient: No Surprises Act disputes, state rules, time-barred debt.

No I/O, time passed in: the workflow's validators, ``policy check``, the services and the tests
share these functions (like ``workflows.decisions``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

from models.actions import AccountState, HoldReason, Installment
from models.content_rules import ContentProblem, refusal_of_care, scan
from models.money import format_cents
from models.payloads import ContactProfile, StepRecord
from models.policy import Channel, Policy, Step, StepKind
from models.protections import PhoneKind, RestrictionKind
from workflows.state_rules import STATE_RULES, StateRule, effective_rule


def nsa_dispute_pending(account: AccountState) -> bool:
    """A No Surprises Act patient-provider dispute is open: no collection of the bill meanwhile."""
    return account.hold is not None and account.hold.reason is HoldReason.NO_SURPRISES_DISPUTE


# -- the patient's requests about how to be contacted -------------------------------------------

RESTRICTED_CHANNELS: dict[RestrictionKind, frozenset[Channel]] = {
    RestrictionKind.MAIL_ONLY: frozenset({Channel.EMAIL, Channel.SMS, Channel.CALL}),
    RestrictionKind.EMAIL_ONLY: frozenset({Channel.LETTER, Channel.SMS, Channel.CALL}),
    RestrictionKind.NO_CALLS: frozenset({Channel.CALL}),
    RestrictionKind.NO_TEXTS: frozenset({Channel.SMS}),
    RestrictionKind.NO_EMAIL: frozenset({Channel.EMAIL}),
}
PHONE_CHANNELS = frozenset({Channel.CALL, Channel.SMS})


def restriction_blocks(kind: RestrictionKind, phone_kind: PhoneKind) -> frozenset[Channel]:
    """The channels a standing request rules out, given what is known of the phone number.

    "No calls at work" (Reg F 12 CFR 1006.6(b)(3); the patient's request under HIPAA
    45 CFR 164.522): calls and texts to a number known to be a work number are blocked. A number
    whose kind is unknown might be the workplace, so it is read conservatively as a work number
    (blocked) until staff or the import record it as mobile or home; a mobile or home number is
    not blocked. The same answer serves plan time (the workflow is told through ``restricted``
    channel events), previews and the send-time check (the ledger's channel preferences).
    """
    if kind is RestrictionKind.NO_CALLS_AT_WORK:
        if phone_kind in (PhoneKind.MOBILE, PhoneKind.HOME):
            return frozenset()
        return PHONE_CHANNELS
    return RESTRICTED_CHANNELS[kind]


# -- rules by where the patient lives -----------------------------------------------------------

STATE_CAPPED_CHANNELS = frozenset({Channel.CALL, Channel.SMS})
"""Calls (and the voicemails they leave) and texts: what a state contact cap counts."""


def residence_rule(policy: Policy, profile: ContactProfile) -> StateRule:
    """The rules of the patient's state of residence and of the policy's state, the more
    protective of both (``workflows.state_rules``)."""
    return effective_rule(policy.state, profile.state)


def state_cap_free_at(
    policy: Policy,
    profile: ContactProfile,
    channel: Channel,
    contacts: list[StepRecord],
    at: dt.datetime,
) -> tuple[dt.datetime, str]:
    """The first moment from ``at`` when one more call or text keeps within the state's cap of
    calls, texts and voicemails together in 7 days (e.g. Massachusetts: 2). ``at`` and an empty
    reason when no state cap applies."""
    rule = residence_rule(policy, profile)
    limit = rule.contacts_per_7_days
    if limit is None or channel not in STATE_CAPPED_CHANNELS:
        return at, ""
    window = dt.timedelta(days=7)
    times = sorted(
        r.at for r in contacts if r.channel in STATE_CAPPED_CHANNELS and r.at > at - window
    )
    reason = f"{rule.state} cap of {limit} calls, texts or voicemails in 7 days"
    if len(times) < limit:
        return at, reason
    return times[len(times) - limit] + window, reason


# -- what a message may say ---------------------------------------------------------------------

ANY_STATE = effective_rule(*STATE_RULES)
"""The rules of every state in the table together: what ``policy check`` holds a template to,
since its patients may live in any of them."""


def message_problems(
    channel: Channel,
    text: str,
    language: str,
    rule: StateRule,
    extra_sensitive: tuple[str, ...] = (),
) -> list[ContentProblem]:
    """Every content rule a message (a template's words, or a rendered message) breaks.

    The one implementation for ``policy check`` (``rule`` = :data:`ANY_STATE`) and for the check
    at the moment of sending (``rule`` = :func:`residence_rule` of the patient: the more
    protective of residence and service state):

    - limited-content voicemail (12 CFR 1006.2(j)) and no service, date of service, diagnosis or
      specialty in an SMS, an email subject or a voicemail (HIPAA 45 CFR 164.502(b));
      ``extra_sensitive`` adds phrases such as the account's own service descriptions;
    - where the state forbids it (Minnesota, Minn. Stat. 62J.806), no wording that care will be
      refused or delayed for an unpaid balance, in any channel.
    """
    problems = scan(channel, text, language, extra_sensitive)
    if rule.bans_refusal_of_care_wording:
        problems += refusal_of_care(text)
    return problems


def send_time_content_problems(
    policy: Policy,
    profile: ContactProfile,
    channel: Channel,
    subject: str | None,
    body: str,
    services: tuple[str, ...] = (),
) -> list[ContentProblem]:
    """The content rules of the patient's states on the message about to go out (subject on the
    first line, as an email template gives it)."""
    text = body if subject is None else f"{subject}\n{body}"
    return message_problems(
        channel, text, profile.language, residence_rule(policy, profile), services
    )


# -- what may be asked of the patient -----------------------------------------------------------


def plan_income_cap(policy: Policy, residence: str | None) -> tuple[int | None, StateRule]:
    """The share of monthly income (basis points) a payment plan may ask in a month, where the
    patient's state or the service state sets one (the lower), and the rule it comes from.

    A policy under IRS 501(r) (``eca.enabled``) is a hospital's; any other is read as an
    individual clinician's or practice's, whose cap (Colorado 2%) is the lower one.
    """
    rule = effective_rule(policy.state, residence)
    cap = rule.plan_cap_bp_hospital if policy.eca.enabled else rule.plan_cap_bp_clinician
    return cap, rule


def plan_affordability_problem(
    policy: Policy,
    residence: str | None,
    installments: Sequence[Installment],
    monthly_income_cents: int | None,
) -> str:
    """Why a payment plan asks more than the state allows, or an empty string.

    The cap holds for every calendar month: the installments due in one month together may not
    exceed the cap's share of the household's monthly income. Where a cap applies and the income
    is not known, the plan is refused until it is (the cap cannot be checked otherwise).
    """
    cap, rule = plan_income_cap(policy, residence)
    if cap is None:
        return ""
    who = "hospital" if policy.eca.enabled else "clinician"
    source = next((s for s in rule.sources if "monthly income" in s or "of income" in s), "")
    named = f"{rule.state} caps {who} payment plans at {cap / 100:g}% of monthly income ({source})"
    if monthly_income_cents is None or monthly_income_cents <= 0:
        return f"monthly_income: {named}; give the household's monthly income"
    limit = monthly_income_cents * cap // 10_000
    by_month: dict[tuple[int, int], int] = defaultdict(int)
    for item in installments:
        by_month[(item.due_on.year, item.due_on.month)] += item.amount_cents
    for (year, month), total in sorted(by_month.items()):
        if total > limit:
            return (
                f"installments: {format_cents(total)} due in {year}-{month:02d} is above"
                f" {format_cents(limit)}, the most a month allows: {named}"
            )
    return ""


MISSED_APPOINTMENT_FEE_SOURCE = (
    "the policy's thresholds.missed_appointment_fee_cap (DOMAIN.md: a missed-appointment fee is"
    " a small balance, not a source of income)"
)


def fee_cap_problem(policy: Policy, charges_cents: int) -> str:
    """Why a charge line of a policy that follows missed-appointment fees is above its cap, or an
    empty string. Every charge line under such a policy is a missed-appointment fee."""
    cap = policy.thresholds.missed_appointment_fee_cap
    if cap is None or charges_cents <= cap:
        return ""
    return (
        f"charges: {format_cents(charges_cents)} is above the missed-appointment fee cap of"
        f" {format_cents(cap)} of policy {policy.name} ({MISSED_APPOINTMENT_FEE_SOURCE})"
    )


# -- time-barred debt ---------------------------------------------------------------------------

BARRED_KINDS = frozenset({StepKind.AGENCY_REFERRAL, StepKind.FINAL_NOTICE})
"""Steps that threaten or take legal action: an agency referral, a final notice naming it."""


def time_barred_since(
    policy: Policy, profile: ContactProfile, opened_at: dt.datetime | None
) -> dt.datetime | None:
    """When the statute of limitations for medical debt ran (residence and policy state, the
    shorter), counted from the first date of service; None when no limitation is known."""
    years = residence_rule(policy, profile).limitations_years
    if years is None or opened_at is None:
        return None
    try:
        return opened_at.replace(year=opened_at.year + years)
    except ValueError:  # 29 February
        return opened_at.replace(year=opened_at.year + years, day=28)


def time_barred(
    policy: Policy, profile: ContactProfile, opened_at: dt.datetime | None, now: dt.datetime
) -> str:
    """Why the debt is time-barred at ``now``, or an empty string."""
    since = time_barred_since(policy, profile, opened_at)
    if since is None or now < since:
        return ""
    rule = residence_rule(policy, profile)
    return (
        f"time-barred: the {rule.limitations_years}-year statute of limitations ({rule.state})"
        f" ran on {since.date().isoformat()}; no agency referral, legal wording or credit"
        " reporting"
    )


def barred_step(step: Step) -> bool:
    return step.kind in BARRED_KINDS or step.is_eca
