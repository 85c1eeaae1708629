"""What the ORM writes: an object knows its id and creation time when it is built or written,
so the ORM's batches need nothing back from the server (plain ``executemany``, no RETURNING)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from models.orm import Account, Base, ChargeLine, Guarantor
from models.orm.base import Timestamped


def test_every_server_default_of_a_timestamped_row_has_a_python_default_too() -> None:
    """``Timestamped`` turns the ORM's eager defaults off: a column the server alone fills would
    be left unloaded after the INSERT (and unreadable once the session is closed)."""
    for mapper in Base.registry.mappers:
        if not issubclass(mapper.class_, Timestamped):
            continue
        assert mapper.eager_defaults is False
        server_only = [
            c.key
            for c in mapper.local_table.columns
            if c.server_default is not None and c.default is None
        ]
        assert server_only == [], f"{mapper.class_.__name__}: {server_only}"


def test_a_new_row_knows_its_id_before_it_is_written() -> None:
    line = ChargeLine(external_ref="C-1", charges_cents=100)
    assert isinstance(line.id, uuid.UUID)
    assert line.nsa_protected_cents == 0  # a scalar default, as before
    assert ChargeLine(external_ref="C-2").id != line.id
    explicit = uuid.uuid4()
    assert Guarantor(id=explicit, external_ref="G", first_name="A", last_name="B").id == explicit


def test_a_batch_of_new_rows_is_one_executemany_without_returning(db_session: Session) -> None:
    seen: list[tuple[str, bool]] = []

    def watch(_c: Any, _cur: Any, statement: str, _p: Any, _ctx: Any, many: bool) -> None:
        if statement.startswith("INSERT"):
            seen.append((statement, many))

    guarantors = [
        Guarantor(
            external_ref=f"G-{uuid.uuid4().hex[:10]}",
            first_name="Testy",
            last_name="Synthetic",
        )
        for _ in range(3)
    ]
    accounts = [
        Account(
            account_number=f"T-{uuid.uuid4().hex[:10]}",
            guarantor=g,
            policy_name="physician",
            opened_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
        )
        for g in guarantors
    ]
    lines = [
        ChargeLine(
            account=a,
            external_ref=f"C-{uuid.uuid4().hex[:10]}",
            service_date=dt.date(2026, 10, 1),
            description="Office visit",
            charges_cents=5500,
        )
        for a in accounts
    ]
    db_session.add_all(lines)
    bind = db_session.get_bind()
    event.listen(bind, "before_cursor_execute", watch)
    try:
        db_session.flush()
    finally:
        event.remove(bind, "before_cursor_execute", watch)
    tables = [statement.split()[2] for statement, _ in seen]
    assert tables == ["guarantors", "accounts", "charge_lines"]
    assert all(many and "RETURNING" not in statement for statement, many in seen)
    assert all(line.created_at is not None for line in lines)
