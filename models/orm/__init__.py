"""SQLAlchemy 2 ORM models. Alembic migrations in ``migrations/`` build the schema they map."""

from models.orm.account import (
    Account,
    AccountStatus,
    Adjustment,
    ChargeLine,
    Payment,
)
from models.orm.agency import AgencyUpdate
from models.orm.api_token import ApiRole, ApiToken
from models.orm.approval import StaffTask, TaskKind, TaskStatus
from models.orm.audit import AuditEvent
from models.orm.base import Base
from models.orm.communication import Communication, CommunicationStatus
from models.orm.console import ConsoleLogin
from models.orm.experiment import (
    ArmStatus,
    DefaultPolicy,
    Experiment,
    ExperimentArm,
    ExperimentAssignment,
    ExperimentStatus,
)
from models.orm.guarantor import ChannelPreference, Deliverability, Guarantor
from models.orm.ledger import DriftRecord, SignalOutbox
from models.orm.note import LegalFact, StaffNote
from models.orm.policy_version import PolicyVersion
from models.orm.protections import (
    ChannelRestriction,
    ConfidentialAddress,
    Consent,
    Patient,
    ProtectionFlag,
)
from models.orm.remittance import RemittanceClaim
from models.orm.user import User
from models.orm.webhook import IdempotencyKey, WebhookEvent

__all__ = [
    "Account",
    "AccountStatus",
    "Adjustment",
    "AgencyUpdate",
    "ApiRole",
    "ApiToken",
    "ArmStatus",
    "AuditEvent",
    "Base",
    "ChannelPreference",
    "ChannelRestriction",
    "ChargeLine",
    "Communication",
    "CommunicationStatus",
    "ConfidentialAddress",
    "Consent",
    "ConsoleLogin",
    "DefaultPolicy",
    "Deliverability",
    "DriftRecord",
    "Experiment",
    "ExperimentArm",
    "ExperimentAssignment",
    "ExperimentStatus",
    "Guarantor",
    "IdempotencyKey",
    "LegalFact",
    "Patient",
    "Payment",
    "PolicyVersion",
    "ProtectionFlag",
    "RemittanceClaim",
    "SignalOutbox",
    "StaffNote",
    "StaffTask",
    "TaskKind",
    "TaskStatus",
    "User",
    "WebhookEvent",
]
