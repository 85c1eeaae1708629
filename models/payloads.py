"""Pydantic payloads of the workflow, its signals, queries and activities.

Nothing here may carry protected health information: workflow histories are stored by Temporal
and shown in its web UI. Accounts are named by opaque ids, amounts are cents, contact points are
reduced to flags (an address exists, consent was given). Names, addresses, services and
diagnoses stay in PostgreSQL and are read by activities only.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from models.actions import AccountState, ClosingPurpose
from models.common import REFERENCE_FIELD
from models.policy import Channel, Policy, PolicyRef, StepKind, Tone

Reference = str
"""An external reference (a payment's or a charge's id in the practice's system)."""


class ChannelStatus(BaseModel):
    """What the workflow may know about one channel of a guarantor: flags, never the address."""

    reachable: bool = Field(default=False, description="a contact point exists and is deliverable")
    consent: bool = Field(default=True, description="consent given and not revoked")
    reason: str = Field(default="", description="why not reachable or no consent")
    restricted: bool = Field(
        default=False,
        description="ruled out by a standing request of the patient (mail only, no calls at"
        " work, ...), kept apart from reachability and consent so that lifting it restores only"
        " what it alone closed",
    )


class PatientLocation(BaseModel):
    """A place the patient may be, reduced to its time zone: never the address or the number."""

    time_zone: str = Field(max_length=64)
    source: str = Field(max_length=16, description="address, phone or record")


class ContactProfile(BaseModel):
    """A guarantor's contact situation, free of protected health information."""

    time_zone: str = Field(default="", description="the zone on record; empty when unknown")
    language: str = "en"
    channels: dict[Channel, ChannelStatus] = Field(default_factory=dict)
    locations: list[PatientLocation] = Field(
        default_factory=list, description="zones of the address and the phone's area code"
    )
    state: str | None = Field(
        default=None, description="state of residence (two letters): selects the state's rules"
    )

    def status(self, channel: Channel) -> ChannelStatus:
        return self.channels.get(channel, ChannelStatus(reachable=False, reason="no contact point"))


class StepOutcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    SUPPRESSED = "suppressed"  # due, but not allowed at the moment of sending
    DEFERRED = "deferred"  # due, but the guarantor heard from another account too recently


class StepRecord(BaseModel):
    """One entry of a balance's timeline: a step that was sent or deliberately not sent."""

    step_id: str
    outcome: StepOutcome
    at: dt.datetime
    channel: Channel | None = None
    communication_id: str | None = None
    reasons: list[str] = Field(default_factory=list)


class LadderState(BaseModel):
    """All the decision core needs to know of a balance; carried across continue-as-new."""

    model_config = ConfigDict(validate_assignment=False)

    balance_cents: int = 0
    anchor_at: dt.datetime | None = Field(default=None, description="first statement, UTC")
    opened_at: dt.datetime | None = None
    next_index: int = 0
    history: list[StepRecord] = Field(default_factory=list)
    plan_active: bool = False
    fa_application_pending: bool = False
    paid_cents: int = 0
    charged_cents: int = 0
    seen_references: list[str] = Field(default_factory=list)
    call_cooldown_until: dt.datetime | None = Field(
        default=None, description="no call before this: 7 days after a conversation (Reg F)"
    )
    last_activity_at: dt.datetime | None = Field(
        default=None, description="last payment or charge, for the small-balance write-off"
    )
    person_wait_until: dt.datetime | None = Field(
        default=None,
        description="the due step waits: the guarantor's other accounts contacted them lately",
    )

    def contacts(self) -> list[StepRecord]:
        return [r for r in self.history if r.outcome is StepOutcome.SENT]


class Decision(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class StepDecision(BaseModel):
    """A staff member's answer to an approval task (the ``decide_step`` update)."""

    task_id: str = Field(min_length=1, max_length=64)
    decision: Decision
    decided_by: str = Field(min_length=1, max_length=64)
    role: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="", max_length=500)  # old histories; callers now send note_id
    note_id: str | None = Field(default=None, max_length=64)
    purpose: ClosingPurpose | None = None
    """A closing-notice task's approval names what the letter says (Reg F 1006.6(c))."""


class OpenApprovalInput(BaseModel):
    account_id: str
    step_id: str
    title: str
    approvers: list[str]
    due_at: dt.datetime


class CloseApprovalInput(BaseModel):
    task_id: str
    approved: bool | None = Field(description="None: expired without a decision")
    decided_by: str = ""
    reason: str = ""
    written_off_cents: int = Field(
        default=0, ge=0, description="an approved write-off's amount: the ledger records it"
    )


class BalanceState(StrEnum):
    """Where a balance stands."""

    ESCALATING = "escalating"
    BELOW_MINIMUM = "below_minimum"
    AWAITING_APPROVAL = "awaiting_approval"
    ON_HOLD = "on_hold"
    ON_PLAN = "on_plan"
    SETTLEMENT_OFFERED = "settlement_offered"
    LADDER_COMPLETE = "ladder_complete"
    PAID = "paid"
    SETTLED = "settled"
    WRITTEN_OFF = "written_off"
    PLACED = "placed"  # referred to a collection agency
    STOPPED = "stopped"  # bankruptcy: automatic stay
    DECEASED = "deceased"  # estate queue
    CONTACT_STOPPED = "contact_stopped"  # attorney representation or cease communication
    IN_CREDIT = "in_credit"  # the ledger owes the patient: no ladder runs (never a workflow's)
    UNREACHABLE = "unreachable"  # no usable channel at all: parked, a locate task is open
    RECALLED = "recalled"  # taken back from the agency (never a workflow's)


class ChargeSignal(BaseModel):
    """A new charge for the account: joins the running workflow (signal-with-start), or opens a
    new one in its input (``EscalationInput.charges``)."""

    reference: Reference = REFERENCE_FIELD
    amount_cents: int = Field(gt=0)
    posted_at: dt.datetime | None = None


class EscalationInput(BaseModel):
    """Input of the ``balance-escalation`` workflow."""

    account_id: str = Field(min_length=1, max_length=64)
    policy: Policy
    policy_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    profile: ContactProfile = ContactProfile()
    first_statement_at: dt.datetime | None = None
    opened_at: dt.datetime | None = None
    episode_id: str = Field(
        default="", description="set on first start; kept across continue-as-new"
    )
    state: LadderState | None = Field(default=None, description="carried across continue-as-new")
    account: AccountState | None = Field(default=None, description="carried across continue-as-new")
    history_limit: int = Field(default=10_000, ge=50, description="continue-as-new beyond this")
    features: int = Field(
        default=0,
        ge=0,
        description="how many of the workflow's patches (workflows.escalation.PATCHES) are in"
        " force from the start: the starter sets all of them; 0 (inputs recorded before) asks"
        " workflow.patched for each",
    )
    charges: list[ChargeSignal] = Field(
        default_factory=list,
        description="a new balance's first charges, applied as it starts (as ``add_charge``"
        " would, once per reference): a plain start instead of a signal-with-start per charge;"
        " emptied before continue-as-new, whose state carries them",
    )


class EscalationResult(BaseModel):
    account_id: str
    state: BalanceState
    balance_cents: int
    contacts: int


class PaymentSignal(BaseModel):
    """A payment posted in the ledger; deduplicated by its reference."""

    reference: Reference = REFERENCE_FIELD
    amount_cents: int = Field(gt=0)
    received_at: dt.datetime | None = None


class NextStepView(BaseModel):
    step_id: str
    channels: list[Channel]
    at: dt.datetime
    reasons: list[str] = Field(default_factory=list)


class LedgerEntry(BaseModel):
    """A movement of the ledger on the status timeline: a payment, an adjustment, a credit, a
    write-off. Shown in dollars; ``amount_cents`` is what it did to the balance (signed)."""

    at: dt.datetime
    kind: str = Field(
        description="payment, adjustment, insurance_payment, insurance_denial, credit, written_off"
    )
    amount_cents: int
    amount: str = Field(description='the same in dollars, e.g. "-$15.00"')
    reference: str = ""


class StatusView(BaseModel):
    """The ``get_status`` query: where the balance stands, what was sent and what comes next."""

    account_id: str
    state: BalanceState
    balance_cents: int
    paid_cents: int
    policy: PolicyRef
    next_step: NextStepView | None = None
    waiting_for: str = ""
    history: list[StepRecord] = Field(default_factory=list)
    anchor_at: dt.datetime | None = Field(default=None, description="the first statement")
    plan_active: bool = False
    credit_cents: int = Field(default=0, description="owed to the patient: the balance below zero")
    contact_window: str = Field(
        default="", description="which locations set the allowed hours, and the window left"
    )
    ledger: list[LedgerEntry] = Field(
        default_factory=list,
        description="payments, adjustments, credits and write-offs, from the ledger (in dollars)",
    )


class SendStepInput(BaseModel):
    """One escalation step to check, render, record and send, in one activity."""

    account_id: str
    idempotency_key: str = Field(max_length=190)
    """The step's outbox key; a channel's attempt adds ``:<channel>`` within the column's 200."""
    policy_hash: str
    step_id: str
    kind: StepKind
    channels: list[Channel]
    template: str
    tone: Tone
    balance_cents: int
    due_at: dt.datetime
    defer_ok: bool = False
    """The workflow waits on a ``deferred`` result (``workflows.person``); without it (histories
    from before), a step the person's rules block is retried by the activity's retry policy."""
    closing_purpose: ClosingPurpose | None = None
    """Only for the closing notice after a cease-communication request."""


class SendStepResult(BaseModel):
    communication_id: str | None
    outcome: StepOutcome
    channel: Channel | None = None
    reasons: list[str] = Field(default_factory=list)
    not_before: dt.datetime | None = None
    """A ``deferred`` step: the earliest moment the guarantor may be contacted again."""


class PolicyMigration(BaseModel):
    """Move a running balance to another policy version (``dunning policy migrate``)."""

    policy: Policy
    policy_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    requested_by: str = Field(default="billing-lead", max_length=64)


class CloseBalanceInput(BaseModel):
    account_id: str
    state: BalanceState
    balance_cents: int


class CallResult(StrEnum):
    """What a staff member's call attempt came to."""

    REACHED = "reached"  # a conversation about the debt: Reg F 7-day call cool-down starts
    VOICEMAIL = "voicemail"  # limited-content message left (12 CFR 1006.2(j))
    NO_ANSWER = "no_answer"
    WRONG_NUMBER = "wrong_number"  # the phone is marked undeliverable for calls and texts
    PROMISE_TO_PAY = "promise_to_pay"  # reached, with a promised date (and amount)


class CallOutcomeSignal(BaseModel):
    """The ``record_call_outcome`` signal: a call task's outcome, deduplicated by ``task_id``.

    Free of protected health information: no notes, only the typed result, a date and cents.
    """

    task_id: str = Field(min_length=1, max_length=64)
    step_id: str = Field(default="", max_length=48)
    result: CallResult
    called_at: dt.datetime
    promised_date: dt.date | None = Field(default=None, description="promise_to_pay only")
    promised_cents: int | None = Field(default=None, gt=0)
    recorded_by: str = Field(default="", max_length=64)

    @property
    def conversation(self) -> bool:
        """A right-party conversation: no call for 7 days after it (12 CFR 1006.14(b)(2)(ii))."""
        return self.result in (CallResult.REACHED, CallResult.PROMISE_TO_PAY)


class ReconcileResult(BaseModel):
    """What a scheduled reconciliation found and repaired: counts only, no patient data."""

    checked_accounts: int = 0
    checked_workflows: int = 0
    drifts: int = 0
    repaired: int = 0
    refund_tasks: int = 0
    pruned: int = 0
    """Delivered bookkeeping rows past ``ledger.retention_days``, deleted (services.retention)."""


class ContactTaskInput(BaseModel):
    """Open (``open=True``) or close the account's ``address`` or ``locate`` worklist task."""

    account_id: str
    kind: str = Field(pattern=r"^(address|locate)$")
    open: bool = True
    step_id: str = Field(default="", max_length=48)
    reason: str = Field(default="", max_length=300)
