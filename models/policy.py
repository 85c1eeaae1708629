"""The escalation policy schema: what a billing lead writes in ``config/policies/*.yaml``.

The models validate everything that can be checked on one file alone (field types, order of
offsets, approval gates with approvers, IRS 501(r) timing, the stricter rules for third-party
collectors and the rules of a named state). Template existence is checked by the loader in
``config.loader``, which knows where templates live; ``dunning policy check`` also renders every
template with synthetic data (``activities.rendering.check_templates``).

Every error message of a model validator starts with the field path it is about
(``steps.3.day: ...``) so that the loader can point at the YAML line.

A policy is immutable once loaded: workflows pin it by its content hash.
"""

from __future__ import annotations

import datetime as dt
import itertools
from enum import StrEnum
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from models.calendars import holiday_names, supported
from models.money import DollarsAsCents
from workflows.state_rules import STATE_RULES


class Channel(StrEnum):
    """How a message reaches a patient."""

    LETTER = "letter"
    EMAIL = "email"
    SMS = "sms"
    CALL = "call"  # a call task for staff; voicemail is limited-content (12 CFR 1006.2(j))


ELECTRONIC_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS})


class Tone(StrEnum):
    """Polite first, firmer later; never threatening what the practice will not do."""

    FRIENDLY = "friendly"
    NEUTRAL = "neutral"
    FIRM = "firm"
    FINAL = "final"


class StepKind(StrEnum):
    """What a step does besides (or instead of) sending a message."""

    MESSAGE = "message"
    VALIDATION_NOTICE = "validation_notice"  # 12 CFR 1006.34: a third party's first contact
    FINAL_NOTICE = "final_notice"  # 501(r): names the ECAs and carries the FAP summary
    AGENCY_REFERRAL = "agency_referral"
    WRITE_OFF = "write_off"


REMOVED_STEP_KINDS = {
    "credit_report": "dunning does not report to credit bureaus (there is no bureau export, and"
    " a step that claims to report but only sends a letter misleads); the three bureaus do not"
    " report medical debt under $500 or within a year, and CA, CO, MD, MN and NY ban it."
    " Remove the step; for an agency referral that may report, use kind: agency_referral with"
    " eca: true",
}
"""Step kinds that existed once and are refused by ``policy check`` with the reason."""

ECA_KINDS: frozenset[StepKind] = frozenset()
WRITTEN_CHANNELS = frozenset({Channel.LETTER, Channel.EMAIL})


class Anchor(StrEnum):
    """What a step's day offset counts from."""

    FIRST_STATEMENT = "first_statement"
    PREVIOUS_CONTACT = "previous_contact"


class Weekday(StrEnum):
    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"

    @property
    def number(self) -> int:
        """ISO weekday minus one, as ``date.weekday()`` returns it."""
        return _WEEKDAY_NUMBER[self]


_WEEKDAY_NUMBER = {day: number for number, day in enumerate(Weekday)}


class TimeoutAction(StrEnum):
    """What happens to a gated step when nobody decides in time."""

    SKIP = "skip"  # the step does not run; the ladder goes on
    PROCEED = "proceed"  # the step runs as if approved
    HOLD = "hold"  # the ladder stops here until a person decides


class NoChannelAction(StrEnum):
    """What a step does once it has waited its limit for a usable channel."""

    WAIT = "wait"  # the ladder stays on the step until a new contact point arrives
    SKIP = "skip"  # the step does not run; the ladder goes on
    TASK = "task"  # the ladder stays on the step and a staff task asks to find the patient


class ReentryMode(StrEnum):
    """What happens to the steps that came due while the ladder was paused."""

    COLLAPSE = "collapse"  # only the last of them runs, at the next allowed moment
    RESUME = "resume"  # each runs in turn (spaced only by the contact rules)


class CollectorKind(StrEnum):
    """Regulation F binds third parties in full; first parties adopt its limits as defaults."""

    FIRST_PARTY = "first_party"
    THIRD_PARTY = "third_party"


def _check_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as America/Chicago"
        ) from exc
    return name


TimeZoneName = Annotated[str, AfterValidator(_check_zone)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NoChannelRule(_Frozen):
    """A step none of whose channels is usable (a returned letter, no address, no consent)."""

    wait_days: int = Field(
        default=30, ge=0, le=365, description="days to wait for a corrected contact point"
    )
    then: NoChannelAction = NoChannelAction.TASK


class Conditions(_Frozen):
    """A step runs only when all of its conditions hold at the moment it is due."""

    min_balance: DollarsAsCents | None = Field(default=None, description="dollars")
    min_account_age_days: int | None = Field(default=None, ge=0)
    max_account_age_days: int | None = Field(
        default=None, ge=0, description="only while the account is at most this many days old"
    )
    plan_active: bool | None = Field(
        default=None, description="true: only on a payment plan; false: only when not on one"
    )

    @model_validator(mode="after")
    def _ages_ordered(self) -> Self:
        low, high = self.min_account_age_days, self.max_account_age_days
        if low is not None and high is not None and high < low:
            raise ValueError(
                f"max_account_age_days: {high} is below min_account_age_days {low};"
                " no account could match"
            )
        return self


class ApprovalGate(_Frozen):
    """A firm step that waits for a person's decision before it runs."""

    approvers: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]] = Field(
        min_length=1, description="roles that may approve, in order"
    )
    wait_days: int = Field(default=5, ge=1, le=90)
    on_timeout: TimeoutAction = TimeoutAction.HOLD


class Step(_Frozen):
    """One rung of the ladder."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,47}$")
    day: int = Field(ge=0, le=3650, description="days after the anchor")
    anchor: Anchor = Anchor.FIRST_STATEMENT
    channels: list[Channel] = Field(min_length=1, description="tried in order: a fallback chain")
    template: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    tone: Tone = Tone.FRIENDLY
    kind: StepKind = StepKind.MESSAGE
    when: Conditions = Conditions()
    approval: ApprovalGate | None = None
    eca: bool = Field(
        default=False,
        description="the lead marks this step an extraordinary collection action (IRS 501(r)),"
        " e.g. a referral to an agency that may report or sue",
    )

    @model_validator(mode="before")
    @classmethod
    def _removed_kinds(cls, data: Any) -> Any:
        if isinstance(data, dict):
            reason = REMOVED_STEP_KINDS.get(str(data.get("kind")))
            if reason is not None:
                raise ValueError(f"kind: {data['kind']!r} is not supported: {reason}")
        return data

    @model_validator(mode="after")
    def _distinct_channels(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels: a channel appears twice in the fallback chain")
        return self

    @property
    def is_eca(self) -> bool:
        return self.eca or self.kind in ECA_KINDS


class Window(_Frozen):
    """Local hours in which contact is allowed, [start, end)."""

    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(21, 0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise ValueError("allowed_hours: start must be before end")
        if self.start < dt.time(8, 0) or self.end > dt.time(21, 0):
            # 12 CFR 1006.6(b)(1)(i): 8:00 to 21:00 at the consumer's location.
            raise ValueError("allowed_hours: must lie within 08:00-21:00 (Regulation F)")
        return self


class Cap(_Frozen):
    """At most ``max`` contacts on a channel in any rolling window of ``per_days``."""

    channel: Channel
    max: int = Field(ge=1)
    per_days: int = Field(ge=1, le=365)


def _default_caps() -> list[Cap]:
    # 12 CFR 1006.14(b)(2): more than 7 call attempts in 7 days is presumed harassment.
    return [Cap(channel=Channel.CALL, max=7, per_days=7)]


MonthDay = Annotated[str, Field(pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")]


class Calendar(_Frozen):
    """The practice's closed days from a maintained library (``holidays``), for any year.

    ``country`` and ``subdivision`` name the library's calendar (US, US-PR, a state); with
    ``observed`` a holiday on a weekend is also closed on the weekday it is observed. The
    practice's own rules come on top: ``skip`` names library holidays it stays open on (by the
    start of the name, "Columbus Day"), ``yearly_closures`` are month-days closed every year
    ("12-24"), ``closures`` and ``openings`` single dates closed or open whatever the library says.
    """

    country: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    subdivision: str | None = Field(default=None, pattern=r"^[A-Z0-9]{1,3}$")
    observed: bool = True
    skip: list[str] = Field(default_factory=list)
    yearly_closures: list[MonthDay] = Field(default_factory=list)
    closures: list[dt.date] = Field(default_factory=list)
    openings: list[dt.date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> Self:
        problem = supported(self.country, self.subdivision)
        if problem:
            raise ValueError(problem)
        names = holiday_names(self.country, self.subdivision)
        for i, name in enumerate(self.skip):
            if not any(n.startswith(name) for n in names):
                raise ValueError(
                    f"contact.calendar.skip.{i}: {self.country} has no holiday {name!r} "
                    f"(it has {', '.join(sorted(names))})"
                )
        clash = sorted(set(self.closures) & set(self.openings))
        if clash:
            raise ValueError(f"contact.calendar.openings: {clash[0]} is also a closure")
        return self


class ContactRules(_Frozen):
    """When a contact may happen."""

    practice_time_zone: TimeZoneName = "America/New_York"
    default_patient_time_zone: TimeZoneName = "America/New_York"
    allowed_hours: Window = Window()
    send_time: dt.time = Field(default=dt.time(10, 0), description="preferred local send time")
    business_days: list[Weekday] = Field(
        default_factory=lambda: [Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI],
        min_length=1,
    )
    holidays: list[dt.date] = Field(
        default_factory=list, description="a hand list of closed days; prefer calendar"
    )
    calendar: Calendar | None = None
    min_spacing_hours: int = Field(default=48, ge=0, le=24 * 60)
    caps: list[Cap] = Field(default_factory=_default_caps)
    sms_requires_consent: bool = True
    on_no_channel: NoChannelRule = Field(
        default_factory=NoChannelRule,
        description="a step with no usable channel: wait for a corrected contact point, then",
    )
    reentry: ReentryMode = Field(
        default=ReentryMode.COLLAPSE,
        description="after a broken plan, a lifted hold or a lapsed settlement",
    )

    @model_validator(mode="after")
    def _send_time_allowed(self) -> Self:
        if not (self.allowed_hours.start <= self.send_time < self.allowed_hours.end):
            raise ValueError("send_time: must lie within allowed_hours")
        if len(set(self.holidays)) != len(self.holidays):
            raise ValueError("holidays: a date appears twice")
        if len(set(self.business_days)) != len(self.business_days):
            raise ValueError("business_days: a weekday appears twice")
        return self

    def cap_for(self, channel: Channel, days: int) -> int | None:
        """The most contacts on ``channel`` the caps allow in any window of ``days`` days."""
        limits = [c.max * -(-days // c.per_days) for c in self.caps if c.channel is channel]
        return min(limits) if limits else None


class SmallBalanceWriteOff(_Frozen):
    """Balances too small to chase are written off instead.

    A $0.75 statement for a $5 balance wastes money (the dental seed).
    """

    below: DollarsAsCents = Field(description="dollars; balances under this are not chased")
    after_days_inactive: int = Field(default=60, ge=0, le=3650)

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if self.below <= 0:
            raise ValueError("below: must be more than 0.00 (credit balances are never billed)")
        return self


class Thresholds(_Frozen):
    minimum_balance: DollarsAsCents = Field(default=500, description="dollars; nothing sent below")
    small_balance_write_off: SmallBalanceWriteOff | None = None
    missed_appointment_fee_cap: DollarsAsCents | None = Field(
        default=None,
        description="dollars; a policy that follows missed-appointment fees: a charge line above"
        " this is refused at intake, naming the row",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.minimum_balance < 0:
            raise ValueError("minimum_balance: must not be negative")
        if self.missed_appointment_fee_cap is not None and self.missed_appointment_fee_cap <= 0:
            raise ValueError("missed_appointment_fee_cap: must be more than zero")
        return self


class Eca501r(_Frozen):
    """IRS 501(r) (26 CFR 1.501(r)-6) for nonprofit hospitals."""

    enabled: bool = False
    notification_days: int = Field(default=120, ge=120, description="no ECA before this day")
    notice_lead_days: int = Field(default=30, ge=30, description="final notice at least this early")
    application_days: int = Field(default=240, ge=240, description="FAP applications accepted")


PostalLine = Annotated[str, Field(min_length=1, max_length=60)]


class PhoneHours(_Frozen):
    """When the billing office answers the phone; letters say it in the patient's language."""

    days: list[Weekday] = Field(
        default_factory=lambda: [Weekday.MON, Weekday.TUE, Weekday.WED, Weekday.THU, Weekday.FRI],
        min_length=1,
    )
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(17, 0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start >= self.end:
            raise ValueError("phone_hours: start must be before end")
        return self


class Practice(_Frozen):
    """The practice's identity: who letters, emails, texts and replies come from.

    The one place letters (letterhead, return address, coupon), emails (the From name), texts and
    replies read the practice from. A field the policy leaves out takes the deployment's value
    (``config.settings.PracticeSettings``, filled in by the loader), so a deployment serving one
    practice names it once and one serving several names each in its policies.
    """

    name: str = Field(min_length=1, max_length=60)
    phone: str = Field(min_length=7)
    pay_url: str = ""
    financial_assistance_summary: str = ""
    remit_to: list[PostalLine] = Field(
        default_factory=list,
        max_length=4,
        description="where checks go: printed in the coupon, behind a #9 return envelope's window",
    )
    return_address: list[PostalLine] = Field(
        default_factory=list,
        max_length=3,
        description="the letter's return address (upper window); default: remit_to",
    )
    financial_assistance_summaries: dict[str, str] = Field(
        default_factory=dict,
        description="the summary in other languages, by language code (es: ...)",
    )
    phone_hours: PhoneHours = Field(
        default_factory=lambda: PhoneHours(), description="when the phone is answered"
    )
    logo: str = Field(
        default="",
        description="a PNG or JPEG for the letterhead: absolute, or relative to config/",
    )
    tax_id: str = Field(default="", description="printed on statements where a payer needs it")

    def assistance_summary(self, language: str) -> str:
        """The financial-assistance summary in ``language``, else in the policy's own words."""
        return self.financial_assistance_summaries.get(language, self.financial_assistance_summary)

    @property
    def return_lines(self) -> list[str]:
        """The return address, the remit-to address when none is given."""
        return self.return_address or self.remit_to


class StaffApproval(_Frozen):
    """Who approves a staff request (write-off, referral, large settlement discount).

    Approvers are tried in order: a request nobody answers within ``wait_days`` escalates to the
    next approver, and after the last one follows ``on_timeout``. Nobody approves their own request.
    """

    approvers: list[str] = Field(min_length=1)
    wait_days: int = Field(default=3, ge=1, le=90)
    on_timeout: TimeoutAction = TimeoutAction.SKIP


def _default_approval() -> StaffApproval:
    return StaffApproval(approvers=["supervisor", "manager"])


class PlanRules(_Frozen):
    """Payment plans: reminders before installments, grace, where a broken plan re-enters."""

    reminder_days_before: int = Field(default=3, ge=0, le=30)
    reminder_template: str = Field(default="plan-reminder", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    reminder_channels: list[Channel] = Field(
        default_factory=lambda: [Channel.EMAIL, Channel.SMS, Channel.LETTER]
    )
    grace_days: int = Field(default=10, ge=0, le=60)
    reentry_step: str | None = Field(
        default=None, description="step id; default: the next step not yet run"
    )
    max_installments: int = Field(default=24, ge=1, le=120)


class ClosingNoticeRules(_Frozen):
    """The one letter allowed after a written cease-communication request (Reg F 1006.6(c)).

    The request stops the ladder at once and opens a task; an approver (by default the
    write-off approvers) chooses what the letter says, and it goes by letter only, once.
    """

    template: str = Field(default="closing-notice", pattern=r"^[a-z0-9][a-z0-9_-]*$")
    approvers: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]] | None = Field(
        default=None, min_length=1, description="default: staff.write_off.approvers"
    )
    wait_days: int = Field(default=7, ge=1, le=90)


class StaffRules(_Frozen):
    """What staff may do on a balance, and who must approve it."""

    settlement_discount_limit_percent: int = Field(
        default=10, ge=0, le=100, description="staff may offer up to this discount without approval"
    )
    settlement: StaffApproval = Field(default_factory=_default_approval)
    write_off: StaffApproval = Field(default_factory=_default_approval)
    agency_referral: StaffApproval = Field(default_factory=_default_approval)
    plans: PlanRules = PlanRules()
    closing_notice: ClosingNoticeRules = ClosingNoticeRules()

    @property
    def closing_notice_approval(self) -> StaffApproval:
        """Who approves the closing notice; nobody deciding in time sends nothing."""
        rules = self.closing_notice
        return StaffApproval(
            approvers=rules.approvers or self.write_off.approvers,
            wait_days=rules.wait_days,
            on_timeout=TimeoutAction.SKIP,
        )


class PaymentAllocation(StrEnum):
    OLDEST_FIRST = "oldest_first"
    """The account with the oldest unpaid visit first, then the next (the default)."""
    LARGEST_FIRST = "largest_first"
    """The largest balance first."""


class Statements(_Frozen):
    """How statements are grouped for a guarantor with several accounts."""

    family: bool = Field(
        default=False,
        description="one statement per guarantor, covering all their open accounts",
    )
    payment_allocation: PaymentAllocation = Field(
        default=PaymentAllocation.OLDEST_FIRST,
        description="how a payment made against a family statement is spread over its accounts",
    )


class Policy(_Frozen):
    """An escalation policy, as the billing lead wrote it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    description: str = ""
    collector: CollectorKind = CollectorKind.FIRST_PARTY
    state: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    practice: Practice
    thresholds: Thresholds = Thresholds()
    contact: ContactRules = ContactRules()
    eca: Eca501r = Eca501r()
    steps: list[Step] = Field(min_length=1)
    staff: StaffRules = StaffRules()
    statements: Statements = Statements()

    @model_validator(mode="after")
    def _staff_rules_consistent(self) -> Self:
        reentry = self.staff.plans.reentry_step
        if reentry is not None and reentry not in {s.id for s in self.steps}:
            raise ValueError(f"staff.plans.reentry_step: no step {reentry!r} in this policy")
        return self

    @model_validator(mode="after")
    def _steps_consistent(self) -> Self:
        if len(set(self.languages)) != len(self.languages):
            raise ValueError("languages: a language appears twice")
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id in seen:
                raise ValueError(f"steps.{i}.id: {step.id!r} is used twice")
            seen.add(step.id)
        first_anchored = [
            (i, s) for i, s in enumerate(self.steps) if s.anchor is Anchor.FIRST_STATEMENT
        ]
        for (_, prev), (i, step) in itertools.pairwise(first_anchored):
            if step.day < prev.day:
                raise ValueError(
                    f"steps.{i}.day: {step.day} comes before step {prev.id!r} on day {prev.day};"
                    " steps must be in day order"
                )
        if self.steps[0].anchor is Anchor.PREVIOUS_CONTACT:
            raise ValueError("steps.0.anchor: the first step has no previous contact to count from")
        for i, step in enumerate(self.steps):
            if step.is_eca and step.approval is None:
                raise ValueError(
                    f"steps.{i}.approval: an extraordinary collection action needs approvers"
                )
            gated = (StepKind.AGENCY_REFERRAL, StepKind.WRITE_OFF)
            if step.kind in gated and step.approval is None:
                raise ValueError(f"steps.{i}.approval: a {step.kind.value} step needs approvers")
            if (
                step.is_eca
                and step.approval is not None
                and step.approval.on_timeout is TimeoutAction.PROCEED
            ):
                raise ValueError(
                    f"steps.{i}.approval.on_timeout: an extraordinary collection action never runs"
                    " without a person's decision; use hold or skip"
                )
            if step.kind is StepKind.FINAL_NOTICE and not set(step.channels) & WRITTEN_CHANNELS:
                raise ValueError(f"steps.{i}.channels: a final notice must be written (letter)")
        self._check_sms_after_placement()
        if self.collector is CollectorKind.THIRD_PARTY:
            self._check_third_party()
        if self.eca.enabled:
            self._check_501r()
        if self.state is not None:
            self._check_state()
        return self

    def _check_sms_after_placement(self) -> None:
        # CTIA messaging principles and Twilio's acceptable use forbid third-party debt
        # collection by SMS: once an account is placed with an agency, texting stops.
        placed = next(
            (i for i, s in enumerate(self.steps) if s.kind is StepKind.AGENCY_REFERRAL), None
        )
        if placed is None:
            return
        for i, step in enumerate(self.steps[placed + 1 :], start=placed + 1):
            if Channel.SMS in step.channels:
                raise ValueError(
                    f"steps.{i}.channels: no SMS after the agency referral (steps.{placed});"
                    " carriers forbid third-party debt collection by text"
                )

    def _check_third_party(self) -> None:
        """Regulation F (12 CFR part 1006) binds a third-party collector in full."""
        first = self.steps[0]
        if first.kind is not StepKind.VALIDATION_NOTICE:
            raise ValueError(
                "steps.0.kind: a third-party policy must start with a validation_notice step"
                " (12 CFR 1006.34)"
            )
        if not set(first.channels) & WRITTEN_CHANNELS:
            raise ValueError("steps.0.channels: the validation notice must be a letter or email")
        if first.day > 5:
            raise ValueError(
                f"steps.0.day: the validation notice is due within 5 days of first contact,"
                f" not on day {first.day} (12 CFR 1006.34)"
            )
        for i, step in enumerate(self.steps):
            if Channel.SMS in step.channels:
                raise ValueError(
                    f"steps.{i}.channels: a third-party collector may not text about a debt"
                    " (CTIA messaging principles)"
                )
        if any(Channel.CALL in s.channels for s in self.steps):
            allowed = self.contact.cap_for(Channel.CALL, 7)
            if allowed is None or allowed > 7:
                raise ValueError(
                    "contact.caps: a third-party policy that calls needs a call cap of at most"
                    " 7 attempts in 7 days (12 CFR 1006.14(b)(2))"
                )

    def _check_state(self) -> None:
        state = self.state or ""
        rule = STATE_RULES.get(state)
        if rule is None or rule.contacts_per_7_days is None:
            return
        # e.g. Massachusetts, 940 CMR 7.04(1)(f): at most 2 calls, texts or voicemails per 7 days.
        limit = rule.contacts_per_7_days
        used = {c for s in self.steps for c in s.channels} & {Channel.CALL, Channel.SMS}
        total = 0
        for channel in sorted(used):
            allowed = self.contact.cap_for(channel, 7)
            if allowed is None:
                raise ValueError(
                    f"contact.caps: {STATE_NAMES.get(state, state)} allows at most {limit} calls"
                    f" or texts per 7 days; add a cap for {channel.value}"
                )
            total += allowed
        if total > limit:
            raise ValueError(
                f"contact.caps: {STATE_NAMES.get(state, state)} allows at most {limit} calls,"
                f" texts or voicemails in 7 days together; these caps allow {total}"
            )

    def _check_501r(self) -> None:
        """IRS 501(r) (26 CFR 1.501(r)-6): reasonable efforts before any ECA."""
        eca = self.eca
        if not self.practice.financial_assistance_summary:
            raise ValueError(
                "practice.financial_assistance_summary: IRS 501(r) needs a plain-language summary"
                " of the financial-assistance policy"
            )
        notices = [(i, s) for i, s in enumerate(self.steps) if s.kind is StepKind.FINAL_NOTICE]
        for i, step in enumerate(self.steps):
            if not step.is_eca:
                continue
            day = self.nominal_day(i)
            if day < eca.notification_days:
                raise ValueError(
                    f"steps.{i}.day: an extraordinary collection action on day {day} breaks"
                    f" IRS 501(r): none before day {eca.notification_days} after the first"
                    " statement"
                )
            earlier = [(j, n) for j, n in notices if j < i]
            if not earlier:
                raise ValueError(
                    f"steps.{i}: IRS 501(r) needs a final_notice step with the financial-assistance"
                    " summary before any extraordinary collection action"
                )
            j, _ = earlier[-1]
            if day - self.nominal_day(j) < eca.notice_lead_days:
                raise ValueError(
                    f"steps.{i}.day: the final notice (steps.{j}, day {self.nominal_day(j)}) must"
                    f" come at least {eca.notice_lead_days} days before an extraordinary"
                    f" collection action (IRS 501(r))"
                )
            if Channel.LETTER not in self.steps[j].channels:
                raise ValueError(f"steps.{j}.channels: the 501(r) final notice must go by letter")

    def nominal_day(self, index: int) -> int:
        """The earliest day after the first statement on which step ``index`` can fall."""
        day = 0
        for step in self.steps[: index + 1]:
            day = step.day if step.anchor is Anchor.FIRST_STATEMENT else day + step.day
        return day

    def step_index(self, step_id: str) -> int:
        for i, step in enumerate(self.steps):
            if step.id == step_id:
                return i
        raise KeyError(step_id)


STATES_BANNING_MEDICAL_REPORTING = frozenset(
    s for s, rule in STATE_RULES.items() if rule.bans_credit_reporting
)
STATE_NAMES = {"MA": "Massachusetts", "MN": "Minnesota", "NY": "New York", "CA": "California"}
STATE_NAMES |= {"CO": "Colorado", "MD": "Maryland"}


class PolicyRef(_Frozen):
    """Which exact policy version a workflow follows: its name and content hash."""

    name: str
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
