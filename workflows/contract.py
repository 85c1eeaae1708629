"""The typed contract of the ``balance-escalation`` workflow, import-light for every caller.

Activity names are declared here once (the workflow calls them, the activities register under
them); updates answer with the small result models below, never with prose; every refusal carries
a :class:`Rejection` that each front door maps once (HTTP status, CLI exit code and message).

Names already recorded in workflow histories never change.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, Field

from models.payloads import Decision


class ActivityName(StrEnum):
    """Every activity the workflow calls, by the name it is registered under."""

    SEND_STEP = "send_step"
    OPEN_APPROVAL = "open_approval"
    ESCALATE_APPROVAL = "escalate_approval"
    CLOSE_APPROVAL = "close_approval"
    CLOSE_BALANCE = "close_balance"
    PLACE_WITH_AGENCY = "place_with_agency"


class Rejection(StrEnum):
    """Why an action was refused: the workflow's validators and the service layer's checks.

    The values of the workflow's are the ``ApplicationError.type`` it raises (stable strings).
    """

    # the workflow's validators
    INVALID_REQUEST = "InvalidRequest"
    BALANCE_CLOSED = "BalanceClosed"
    UNKNOWN_TASK = "UnknownTask"
    ALREADY_DECIDED = "AlreadyDecided"
    NOT_AN_APPROVER = "NotAnApprover"
    FOUR_EYES = "FourEyes"
    ALREADY_ON_HOLD = "AlreadyOnHold"
    NOT_ON_HOLD = "NotOnHold"
    PLAN_ACTIVE = "PlanActive"
    SETTLEMENT_OPEN = "SettlementOpen"
    TASK_OPEN = "TaskOpen"
    ECA_501R = "Eca501r"
    APPROVAL_PENDING = "ApprovalPending"
    SAME_VERSION = "SameVersion"
    CONTACT_STOPPED = "ContactStopped"
    NO_SURPRISES_DISPUTE = "NoSurprisesDispute"
    TIME_BARRED = "TimeBarred"
    CLOSING_NOTICE_USED = "ClosingNoticeUsed"
    # the service layer's checks
    ACCOUNT_UNKNOWN = "AccountUnknown"
    TASK_UNKNOWN = "TaskUnknown"
    MESSAGE_UNKNOWN = "MessageUnknown"
    TASK_DECIDED = "TaskDecided"
    NO_WORKFLOW = "NoWorkflow"
    NOT_A_CALL_TASK = "NotACallTask"
    CALL_TASK = "CallTask"
    POLICY_UNUSABLE = "PolicyUnusable"
    REFERENCE_CONFLICT = "ReferenceConflict"
    OVER_LIMIT = "OverLimit"
    TEMPORAL_UNREACHABLE = "TemporalUnreachable"
    NOT_PLACED = "NotPlaced"
    # champion and challenger experiments (services.experiments)
    EXPERIMENT_UNKNOWN = "ExperimentUnknown"
    EXPERIMENT_CLOSED = "ExperimentClosed"

    @classmethod
    def of(cls, type_name: str | None) -> Rejection:
        """The catalogue entry of an ``ApplicationError.type`` (unknown ones: invalid request)."""
        try:
            return cls(type_name or "")
        except ValueError:
            return cls.INVALID_REQUEST


class HoldResult(BaseModel):
    """The ladder is paused (until a date, or until someone resumes it)."""

    until: dt.datetime | None = Field(default=None, description="ends by itself then")
    agency: bool = Field(
        default=False,
        description="a placed account: the dispute went to the agency in its update file",
    )


class ResumeResult(BaseModel):
    held_days: int


class HardshipResult(BaseModel):
    balance_cents: int = Field(description="what is left after the discount")
    written_off_cents: int = Field(
        default=0, description="what the discount wrote off; the ledger records it too"
    )


class PlanResult(BaseModel):
    installments: int


class SettlementResult(BaseModel):
    """Offered at once (within the staff limit), or waiting for approval on a task."""

    offered: bool
    task_id: str | None = None


class TaskOpened(BaseModel):
    """A request that waits for a person: the approval task it opened."""

    task_id: str


class DecisionResult(BaseModel):
    task_id: str
    decision: Decision
    subject: str = Field(description="the step id, or the kind of staff request decided")


__all__ = [
    "ActivityName",
    "DecisionResult",
    "HardshipResult",
    "HoldResult",
    "PlanResult",
    "Rejection",
    "ResumeResult",
    "SettlementResult",
    "TaskOpened",
]
