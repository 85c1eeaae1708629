"""Outbox rows: the claim a step's attempt commits before any provider hears of it.

Each attempt on a channel claims the unique idempotency key ``<step key>:<channel>``; a retry, a
replay or a killed worker finds the row and never sends twice.

The hot path's statements take a whole batch as one JSON array of rows: one statement, one round
trip and the same SQL text whatever the batch's size, so that neither SQLAlchemy nor psycopg
prepares a new statement for each size (``IN (...)`` and multi-row VALUES would), and encoding the
rows is one call of the C JSON encoder.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BindParameter, String, Uuid, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY

from activities.channels import OutgoingMessage
from models.orm import Communication, CommunicationStatus
from models.payloads import SendStepResult, StepOutcome
from models.policy import Channel

COUNTED = (CommunicationStatus.SENT, CommunicationStatus.UNCONFIRMED)
"""Rows that count as contacts: an unconfirmed send may have reached the patient."""

CLAIM_COLUMNS = {
    "id": "uuid",
    "idempotency_key": "text",
    "account_id": "uuid",
    "step_id": "text",
    "policy_hash": "text",
    "channel": "channel",
    "template": "text",
    "language": "text",
    "status": "communication_status",
    "reasons": "text",
    "recipient": "text",
    "subject": "text",
    "body": "text",
    "provider": "text",
    "provider_id": "text",
    "sent_at": "timestamptz",
    "due_at": "timestamptz",
    "letter": "jsonb",
}
MARK_COLUMNS = {
    "id": "uuid",
    "provider": "text",
    "provider_id": "text",
    "file_path": "text",
    "sent_at": "timestamptz",
}
AUDIT_COLUMNS = {"actor": "text", "action": "text", "account_id": "uuid", "detail": "jsonb"}


def _recordset(columns: Mapping[str, str]) -> str:
    """``jsonb_to_recordset`` of the ``:rows`` parameter, typed by ``columns``."""
    typed = ", ".join(f"{name} {kind}" for name, kind in columns.items())
    return f"jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({typed})"


CLAIM = text(
    f"INSERT INTO communications ({', '.join(CLAIM_COLUMNS)}) "
    f"SELECT {', '.join(CLAIM_COLUMNS)} FROM {_recordset(CLAIM_COLUMNS)} "
    "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key"
)
MARK_SENT = text(
    "UPDATE communications AS c SET status = 'sent', provider = r.provider, "
    "provider_id = r.provider_id, file_path = r.file_path, sent_at = r.sent_at "
    f"FROM {_recordset(MARK_COLUMNS)} WHERE c.id = r.id"
)
AUDIT = text(
    f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) "
    f"SELECT {', '.join(AUDIT_COLUMNS)} FROM {_recordset(AUDIT_COLUMNS)}"
)

WON_AUDIT_COLUMNS = {**AUDIT_COLUMNS, "claim_key": "text"}
FIRST_COLUMNS = {"account_id": "uuid", "at": "timestamptz", "claim_key": "text"}
CLAIM_BATCH = text(
    f"WITH won AS ({CLAIM.text}), "
    # The audit rows of the claims that won their key (a letter queued, a call task, a
    # suppression): written with the claims, in the same round trip.
    "audited AS ("
    f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) "
    f"SELECT {', '.join('a.' + c for c in AUDIT_COLUMNS)} "
    f"FROM {_recordset(WON_AUDIT_COLUMNS).replace(':rows', ':audits').replace(' AS r(', ' AS a(')} "
    "JOIN won ON won.idempotency_key = a.claim_key), "
    # A letter sent with its claim dates its account's first statement, if none is dated yet.
    "dated AS ("
    "UPDATE accounts SET first_statement_at = f.at FROM ("
    "SELECT f.account_id, min(f.at) AS at "
    f"FROM {_recordset(FIRST_COLUMNS).replace(':rows', ':firsts').replace(' AS r(', ' AS f(')} "
    "JOIN won ON won.idempotency_key = f.claim_key GROUP BY f.account_id) AS f "
    "WHERE accounts.id = f.account_id AND accounts.first_statement_at IS NULL) "
    "SELECT idempotency_key FROM won"
)
"""A batch's claims, the audit rows of those that won, and the first statements their letters
date: one statement. Returns the keys won."""

MARK_SENT_BATCH = text(
    f"WITH marked AS ({MARK_SENT.text}) "
    f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) "
    f"SELECT {', '.join('a.' + c for c in AUDIT_COLUMNS)} "
    f"FROM {_recordset(AUDIT_COLUMNS).replace(':rows', ':audits').replace(' AS r(', ' AS a(')}"
)
"""The SENT marks of a batch and their audit rows: one statement."""
MARK_SENT_BATCH_RELAXED = text(
    "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true) AS setting), "
    f"marked AS ({MARK_SENT.text}) "
    f"INSERT INTO audit_events ({', '.join(AUDIT_COLUMNS)}) "
    f"SELECT {', '.join('a.' + c for c in AUDIT_COLUMNS)} "
    f"FROM {_recordset(AUDIT_COLUMNS).replace(':rows', ':audits').replace(' AS r(', ' AS a(')} "
    "CROSS JOIN relaxed"
)
""":data:`MARK_SENT_BATCH`, its transaction's commit asynchronous (``SET LOCAL
synchronous_commit TO OFF``, as ``set_config`` of the statement)."""


def rows(
    items: Sequence[Mapping[str, Any]], columns: Mapping[str, str], name: str = "rows"
) -> dict[str, str]:
    """The ``:rows`` parameter (or ``name``) of a recordset statement: the rows' columns as a
    JSON array."""
    return {name: json.dumps([{c: row[c] for c in columns} for row in items], default=_json)}


def _json(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} in an outbox row")


def array(values: list[Any], item: type[String] | type[Uuid[Any]]) -> BindParameter[Any]:
    """A list as one array parameter (``= ANY(...)``): the same SQL for any number of values."""
    return bindparam(None, values, type_=ARRAY(item()))


def attempt_key(step_key: str, channel: Channel) -> str:
    """The outbox key of one channel's attempt at a step."""
    return f"{step_key}:{channel.value}"


def sent_audit(
    account_id: uuid.UUID, communication_id: uuid.UUID, step_id: str, channel: Channel | None
) -> dict[str, Any]:
    return {
        "actor": "system",
        "action": "message_sent",
        "account_id": account_id,
        "detail": {
            "communication_id": str(communication_id),
            "step": step_id,
            "channel": channel.value if channel else None,
        },
    }


def values(row: Communication) -> dict[str, Any]:
    """A stored outbox row as the values of a claim, for the helpers below."""
    return {
        "id": row.id,
        "idempotency_key": row.idempotency_key,
        "channel": row.channel,
        "status": row.status,
        "reasons": row.reasons,
        "recipient": row.recipient,
        "subject": row.subject,
        "body": row.body,
    }


def result(row: Communication) -> SendStepResult:
    return claim_result(values(row))


def outgoing(claim: Mapping[str, Any], sender_name: str = "") -> OutgoingMessage:
    """The message a claim hands to its provider; ``sender_name`` is the policy's practice."""
    return OutgoingMessage(
        str(claim["id"]),
        claim["idempotency_key"],
        claim["channel"],
        claim["recipient"] or "",
        claim["subject"],
        claim["body"] or "",
        sender_name=sender_name,
    )


def claim_result(claim: Mapping[str, Any]) -> SendStepResult:
    suppressed = claim["status"] is CommunicationStatus.SUPPRESSED
    return SendStepResult(
        communication_id=str(claim["id"]),
        outcome=StepOutcome.SUPPRESSED if suppressed else StepOutcome.SENT,
        channel=claim["channel"],
        reasons=claim["reasons"].split("; ") if claim["reasons"] else [],
    )


def join(reasons: list[str], extra: str) -> str:
    return "; ".join([*reasons, extra])
