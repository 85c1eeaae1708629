"""What happens to a balance while it escalates: facts (signals) and staff actions (updates).

Facts arrive on their own and are deduplicated by their external reference. Staff actions need an
answer or a rejection, so they are updates with validators. Like every workflow payload, none of
these carries protected health information: reasons are enums or short staff notes, people are
named by staff user ids.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

from models.common import REFERENCE_FIELD
from models.policy import Channel

STAFF_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
ROLE = Field(min_length=1, max_length=32, pattern=r"^[a-z_-]+$")
NOTE = Field(default="", max_length=300)
NOTE_ID = Field(
    default=None,
    max_length=64,
    description="a staff note kept in PostgreSQL (services.notes); its text never enters history",
)


# -- facts ---------------------------------------------------------------------------------


class AdjustmentKind(StrEnum):
    ADJUSTMENT = "adjustment"  # a correction posted by the billing system
    INSURANCE_PAYMENT = "insurance_payment"  # lowers what the patient owes
    INSURANCE_DENIAL = "insurance_denial"  # raises what the patient owes
    # The ledger's record of what a workflow wrote off itself (never sent as a signal):
    FINANCIAL_ASSISTANCE = "financial_assistance"  # hardship granted: a discount or all of it
    WRITE_OFF = "write_off"  # a write-off request approved by a person


WORKFLOW_WRITE_OFFS = frozenset({AdjustmentKind.FINANCIAL_ASSISTANCE, AdjustmentKind.WRITE_OFF})
"""Adjustments the ledger records after the workflow applied them (``services.write_offs``)."""


class AdjustmentSignal(BaseModel):
    """A change of the patient's responsibility: positive raises it, negative lowers it."""

    reference: str = REFERENCE_FIELD
    kind: AdjustmentKind
    amount_cents: int

    @model_validator(mode="after")
    def _signed(self) -> AdjustmentSignal:
        if self.amount_cents == 0:
            raise ValueError("amount_cents: an adjustment of zero changes nothing")
        if self.kind in WORKFLOW_WRITE_OFFS:
            raise ValueError(
                f"kind: {self.kind.value} is recorded by the action itself: grant hardship,"
                " or request a write-off for a person to approve"
            )
        if self.kind is AdjustmentKind.INSURANCE_PAYMENT and self.amount_cents > 0:
            raise ValueError("amount_cents: an insurance payment lowers the balance (negative)")
        if self.kind is AdjustmentKind.INSURANCE_DENIAL and self.amount_cents < 0:
            raise ValueError("amount_cents: an insurance denial raises the balance (positive)")
        return self


class ChannelEventKind(StrEnum):
    EMAIL_BOUNCED = "email_bounced"
    SMS_UNDELIVERABLE = "sms_undeliverable"
    LETTER_RETURNED = "letter_returned"  # the post office returned it: stop letters to it
    OPTED_OUT = "opted_out"  # STOP, unsubscribe or any other revocation of consent
    CONSENT_GIVEN = "consent_given"  # START, or consent recorded by staff
    ADDRESS_CORRECTED = "address_corrected"  # a corrected address, number or email makes it usable
    WRONG_NUMBER = "wrong_number"  # the number is not the patient's: no texts or calls to it
    RESTRICTED = "restricted"  # the patient asked not to be contacted this way (HIPAA 164.522)
    RESTRICTION_LIFTED = "restriction_lifted"  # that request was withdrawn


CHANNEL_OF_EVENT = {
    ChannelEventKind.EMAIL_BOUNCED: Channel.EMAIL,
    ChannelEventKind.SMS_UNDELIVERABLE: Channel.SMS,
    ChannelEventKind.LETTER_RETURNED: Channel.LETTER,
    ChannelEventKind.WRONG_NUMBER: Channel.SMS,  # and calls: the number is the same
}


class ChannelEventSignal(BaseModel):
    """Deliverability or consent of one channel changed."""

    reference: str = REFERENCE_FIELD
    kind: ChannelEventKind
    channel: Channel | None = None

    @model_validator(mode="after")
    def _channel(self) -> ChannelEventSignal:
        implied = CHANNEL_OF_EVENT.get(self.kind)
        if implied is not None:
            if self.channel not in (None, implied):
                raise ValueError(f"channel: {self.kind.value} concerns {implied.value}")
            self.channel = implied
        elif self.channel is None:
            raise ValueError(f"channel: required for {self.kind.value}")
        return self


class LifeEventKind(StrEnum):
    DECEASED = "deceased"  # the account goes to the estate queue
    BANKRUPTCY = "bankruptcy"  # automatic stay: stop at once, whoever reports it
    ATTORNEY = "attorney"  # Reg F 1006.6(b)(2): contact only the attorney, never the patient
    CEASE_COMMUNICATION = "cease_communication"  # Reg F 1006.6(c): the ladder stops for good


ENDING_EVENTS = frozenset({LifeEventKind.DECEASED, LifeEventKind.BANKRUPTCY})
"""Life events that end the balance's follow-up; the others stop contact and keep the balance."""


class LifeEventSignal(BaseModel):
    reference: str = REFERENCE_FIELD
    kind: LifeEventKind


# -- staff actions ----------------------------------------------------------------------------


class HoldReason(StrEnum):
    DISPUTE = "dispute"
    ITEMIZED_BILL = "itemized_bill"
    INSURANCE_PENDING = "insurance_pending"
    FINANCIAL_ASSISTANCE = "financial_assistance"  # an application: ECAs stay suspended
    NO_SURPRISES_DISPUTE = "no_surprises_dispute"
    PROMISE_TO_PAY = "promise_to_pay"
    OTHER = "other"


class HoldRequest(BaseModel):
    reason: HoldReason
    until: dt.datetime | None = Field(default=None, description="ends by itself then")
    note: str = NOTE  # histories before notes moved to PostgreSQL; callers now send note_id
    note_id: str | None = NOTE_ID
    requested_by: str = STAFF_ID


class Hold(BaseModel):
    reason: HoldReason
    since: dt.datetime
    until: dt.datetime | None = None
    requested_by: str


class ResumeRequest(BaseModel):
    requested_by: str = STAFF_ID


class HardshipRequest(BaseModel):
    """Financial assistance granted under the practice's policy: a discount or a full write-off."""

    program: str = Field(default="financial-assistance", max_length=64)
    discount_percent: int = Field(ge=1, le=100)
    granted_by: str = STAFF_ID
    write_off_cents: int | None = Field(
        default=None,
        ge=0,
        description="the exact amount to write off, recomputed from the visits by the ledger"
        " (services.protections); default: the discount of what is left",
    )


class Installment(BaseModel):
    due_on: dt.date
    amount_cents: int = Field(gt=0)


class PlanRequest(BaseModel):
    installments: list[Installment] = Field(min_length=1)
    agreed_by: str = STAFF_ID

    @model_validator(mode="after")
    def _ordered(self) -> PlanRequest:
        dates = [i.due_on for i in self.installments]
        if dates != sorted(dates) or len(set(dates)) != len(dates):
            raise ValueError("installments: due dates must be distinct and in order")
        return self

    @property
    def total_cents(self) -> int:
        return sum(i.amount_cents for i in self.installments)


class Plan(BaseModel):
    installments: list[Installment]
    agreed_at: dt.datetime
    paid_at_start_cents: int = Field(description="paid_cents of the ladder when the plan began")
    reminded: list[int] = Field(default_factory=list, description="installments reminded of")


class SettlementRequest(BaseModel):
    amount_cents: int = Field(gt=0)
    expires_at: dt.datetime
    proposed_by: str = STAFF_ID


class Settlement(BaseModel):
    amount_cents: int
    expires_at: dt.datetime
    offered_at: dt.datetime
    paid_at_offer_cents: int


class WriteOffRequest(BaseModel):
    amount_cents: int | None = Field(default=None, gt=0, description="None: the whole balance")
    reason: str = Field(default="", max_length=200)  # old histories; callers now send note_id
    note_id: str | None = NOTE_ID
    requested_by: str = STAFF_ID


class ClosingNoticeRequest(BaseModel):
    """Ask for the closing notice of an account whose patient asked to cease communication
    (opened by itself for cease requests recorded since; this is for those before)."""

    requested_by: str = STAFF_ID


class ReferralRequest(BaseModel):
    requested_by: str = STAFF_ID
    note: str = NOTE  # old histories; callers now send note_id
    note_id: str | None = NOTE_ID


class ApprovalKind(StrEnum):
    """What an approval task asks a person to decide."""

    STEP = "step"  # a gated step of the ladder
    WRITE_OFF = "write_off"
    AGENCY_REFERRAL = "agency_referral"
    SETTLEMENT = "settlement"
    CLOSING_NOTICE = "closing_notice"  # the one letter allowed after a cease request


class ClosingPurpose(StrEnum):
    """What the one closing notice after a cease-communication request may say (Reg F
    1006.6(c)(1)-(3)); the approver chooses it."""

    TERMINATE = "terminate"  # (1) further collection efforts are being terminated
    MAY_INVOKE_REMEDIES = "may_invoke_remedies"  # (2) remedies ordinarily invoked may be invoked
    INTENDS_REMEDY = "intends_remedy"  # (3) a specified remedy is intended to be invoked


class ClosingNoticeStatus(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"
    SENT = "sent"  # the letter went to the outbox (or print batch); nothing more ever
    NOT_SENT = "not_sent"  # approved, but no letter could go (no usable address)
    DENIED = "denied"
    EXPIRED = "expired"  # nobody decided in time: nothing sent


class ClosingNotice(BaseModel):
    """The closing notice a cease-communication request allows: at most one, approved first."""

    status: ClosingNoticeStatus = ClosingNoticeStatus.AWAITING_APPROVAL
    task_id: str = ""
    purpose: ClosingPurpose | None = None
    decided_by: str = ""
    sent_at: dt.datetime | None = None
    communication_id: str | None = None


class ApprovalTask(BaseModel):
    """An open request that waits for a person; escalates along ``approvers`` on timeout."""

    task_id: str
    kind: ApprovalKind
    approvers: list[str]
    level: int = 0
    wait_days: int
    requested_by: str
    requested_at: dt.datetime
    level_started_at: dt.datetime
    step_id: str | None = None
    amount_cents: int | None = None
    reason: str = ""
    settlement: SettlementRequest | None = None

    @property
    def roles(self) -> list[str]:
        """Who may decide now: every approver the task has reached so far."""
        return self.approvers[: self.level + 1]

    @property
    def deadline(self) -> dt.datetime:
        return self.level_started_at + dt.timedelta(days=self.wait_days)


class AccountState(BaseModel):
    """What staff and outside facts did to a balance; carried across continue-as-new."""

    hold: Hold | None = None
    held_days_total: int = 0
    plan: Plan | None = None
    settlement: Settlement | None = None
    tasks: list[ApprovalTask] = Field(default_factory=list)
    written_off_cents: int = 0
    ended: str = Field(default="", description="why all contact ended (bankruptcy, deceased, ...)")
    contact_stopped: str = Field(
        default="", description="attorney or cease_communication: no contact with the patient"
    )
    settled: bool = False
    plans_agreed: int = 0
    approved_steps: list[str] = Field(default_factory=list)
    placed_at: dt.datetime | None = None
    events: list[AccountEvent] = Field(default_factory=list)
    closing_notice: ClosingNotice | None = None


class AccountEvent(BaseModel):
    """One line of the account's timeline besides sent steps: who did what, when."""

    at: dt.datetime
    kind: str
    detail: str = ""
    by: str = ""


AccountState.model_rebuild()


class ExportInput(BaseModel):
    account_id: str
    balance_cents: int
    approved_by: str


class TaskRecordInput(BaseModel):
    """Persist an approval task (open, escalate or close) in the staff worklist."""

    account_id: str
    task_id: str
    kind: ApprovalKind
    title: str = ""
    approvers: list[str] = Field(default_factory=list)
    level: int = 0
    requested_by: str = "system"
    due_at: dt.datetime | None = None
    status: str = "open"
    decided_by: str = ""
    reason: str = ""
