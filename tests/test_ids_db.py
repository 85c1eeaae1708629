"""Ids as staff type them: a whole id or a unique prefix, resolved once in ``services.ids``."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.orm import Session, sessionmaker

from config.loader import load_policy
from models.orm import StaffTask, TaskKind
from services.errors import Refused
from services.ids import resolve, short
from tests.fakes.accounts import make_account
from workflows.contract import Rejection


def _tasks(session: Session, account_id: str, prefix: str, n: int) -> list[uuid.UUID]:
    """``n`` tasks whose ids all start with ``prefix`` (8 hex digits) and differ after it."""
    made = []
    for _ in range(n):
        key = uuid.UUID(prefix + uuid.uuid4().hex[8:])
        session.add(
            StaffTask(
                id=key,
                account_id=uuid.UUID(account_id),
                kind=TaskKind.APPROVAL,
                title="Synthetic task",
            )
        )
        made.append(key)
    session.flush()
    return made


def test_a_unique_prefix_an_ambiguous_one_and_an_unknown_one(
    session_factory: sessionmaker[Session], db_session: Session
) -> None:
    account_id = make_account(session_factory, load_policy("physician"))
    shared = uuid.uuid4().hex[:8]
    first, second = _tasks(db_session, account_id, shared, 2)
    (alone,) = _tasks(db_session, account_id, uuid.uuid4().hex[:8], 1)

    def task(text: str) -> uuid.UUID:
        return resolve(db_session, StaffTask.id, text, "task", Rejection.TASK_UNKNOWN)

    # The whole id, its short form (as lists show it), any unique prefix, in any case.
    assert task(str(alone)) == alone
    assert task(short(alone)) == alone
    assert task(str(alone)[:5].upper()) == alone
    assert task(str(first)[:13]) == first  # a prefix with its hyphen
    assert task(str(second)) == second

    # The prefix the two share: an error naming how many ids it starts.
    with pytest.raises(Refused) as ambiguous:
        task(shared)
    assert ambiguous.value.kind is Rejection.INVALID_REQUEST
    assert f"'{shared}' is the start of 2 ids" in ambiguous.value.message

    # No id starts with it: not found (exit 3, HTTP 404), naming what was typed.
    for unknown in (str(uuid.uuid4()), str(uuid.uuid4())[:13]):
        with pytest.raises(Refused) as missing:
            task(unknown)
        assert missing.value.kind is Rejection.TASK_UNKNOWN
        assert missing.value.message == f"task: no task {unknown}"

    # Not an id at all.
    for bad in ("", "not-a-task", "12345678-1234-1234-1234-1234567890123", "ab cd"):
        with pytest.raises(Refused) as invalid:
            task(bad)
        assert invalid.value.kind is Rejection.INVALID_REQUEST
        assert invalid.value.message.startswith("task: ")
