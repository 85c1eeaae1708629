"""SQLAlchemy 2 ORM models. Alembic migrations in ``migrations/`` build the schema they map."""

from models.orm.account import Account, AccountStatus, ChargeLine, Payment
from models.orm.approval import StaffTask, TaskKind, TaskStatus
from models.orm.audit import AuditEvent
from models.orm.base import Base
from models.orm.communication import Communication, CommunicationStatus
from models.orm.guarantor import ChannelPreference, Deliverability, Guarantor
from models.orm.policy_version import PolicyVersion

__all__ = [
    "Account",
    "AccountStatus",
    "AuditEvent",
    "Base",
    "ChannelPreference",
    "ChargeLine",
    "Communication",
    "CommunicationStatus",
    "Deliverability",
    "Guarantor",
    "Payment",
    "PolicyVersion",
    "StaffTask",
    "TaskKind",
    "TaskStatus",
]
