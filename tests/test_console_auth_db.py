"""Console sign-in and the live-ledger reports, on the real database; the CLI commands that print a
console password and a report."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from cli.main import app
from models.orm import Account, AccountStatus, AuditEvent, ConsoleLogin, Guarantor
from services import reports
from services.console_auth import (
    LOCK_MINUTES,
    MAX_FAILURES,
    SignInRefused,
    active_actor,
    set_password,
    sign_in,
)
from services.identity import SYSTEM, Actor
from services.users import IdentityError, add_user, disable_user, issue_token

NOW = dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC)
runner = CliRunner()


def _user(session: Session, *roles: str) -> str:
    name = f"u-{uuid.uuid4().hex[:8]}"
    add_user(session, name, list(roles) or ["staff"], SYSTEM)
    return name


def test_password_is_stored_as_argon2_and_signs_in(db_session: Session) -> None:
    name = _user(db_session)
    password = set_password(db_session, name, SYSTEM)
    row = db_session.scalars(select(ConsoleLogin)).all()[-1]
    assert row.password_hash.startswith("$argon2id$") and password not in row.password_hash
    who = sign_in(db_session, name, password, NOW)
    assert isinstance(who, Actor) and who.name == name and who.roles == {"staff"}
    assert active_actor(db_session, who.id) == who
    assert active_actor(db_session, "not-an-id") is None


def test_wrong_password_and_unknown_name_say_the_same(db_session: Session) -> None:
    name = _user(db_session)
    set_password(db_session, name, SYSTEM)
    wrong = sign_in(db_session, name, "nope", NOW)
    unknown = sign_in(db_session, "nobody-" + uuid.uuid4().hex[:6], "nope", NOW)
    assert wrong == unknown == SignInRefused("wrong name or password")
    without_password = _user(db_session)
    assert sign_in(db_session, without_password, "", NOW) == SignInRefused("wrong name or password")


def test_lock_out_after_repeated_failures_until_it_expires_or_a_new_password(
    db_session: Session,
) -> None:
    name = _user(db_session)
    password = set_password(db_session, name, SYSTEM)
    results = [sign_in(db_session, name, "guess", NOW) for _ in range(MAX_FAILURES)]
    assert isinstance(results[-1], SignInRefused) and "locked for" in results[-1].message
    locked = sign_in(db_session, name, password, NOW + dt.timedelta(minutes=1))
    assert isinstance(locked, SignInRefused) and "locked until" in locked.message
    later = NOW + dt.timedelta(minutes=LOCK_MINUTES + 1)
    assert isinstance(sign_in(db_session, name, password, later), Actor)
    # Locked again, an administrator's new password lifts the lock at once.
    for _ in range(MAX_FAILURES):
        sign_in(db_session, name, "guess", later)
    fresh = set_password(db_session, name, SYSTEM)
    assert isinstance(sign_in(db_session, name, fresh, later), Actor)
    audited = db_session.scalars(
        select(AuditEvent).where(AuditEvent.action == "console_sign_in")
    ).all()
    assert all(password not in str(e.detail) for e in audited)


def test_a_disabled_user_cannot_sign_in_and_loses_the_session(db_session: Session) -> None:
    name = _user(db_session)
    password = set_password(db_session, name, SYSTEM)
    who = sign_in(db_session, name, password, NOW)
    assert isinstance(who, Actor)
    disable_user(db_session, name, SYSTEM)
    assert sign_in(db_session, name, password, NOW) == SignInRefused("wrong name or password")
    assert active_actor(db_session, who.id) is None
    with pytest.raises(IdentityError, match="name: no active user"):
        set_password(db_session, name, SYSTEM)


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("0-30", "0-30"),
        ("120.00", "120.00"),
    ],
)
def test_csv_cells_never_start_a_formula(cell: str, written: str) -> None:
    assert reports.safe_cell(cell) == written
    parsed = list(csv.reader(io.StringIO(reports.to_csv([["a"], [cell]]), newline="")))
    assert parsed == [["a"], [written]]


def test_aging_counts_and_amounts_by_bucket(db_session: Session) -> None:
    guarantor = Guarantor(
        external_ref=f"G-{uuid.uuid4().hex[:8]}", first_name="Testy", last_name="Synthetic"
    )
    db_session.add(guarantor)
    db_session.flush()
    before = {b.bucket: b for b in reports.aging(db_session, NOW)}
    for days, cents, status in (
        (5, 1000, AccountStatus.OPEN),
        (20, 2500, AccountStatus.OPEN),
        (45, 700, AccountStatus.OPEN),
        (200, 9900, AccountStatus.OPEN),
        (10, 0, AccountStatus.OPEN),  # nothing owed: not receivable
        (10, 5000, AccountStatus.PAID),  # not open
    ):
        db_session.add(
            Account(
                account_number=f"R-{uuid.uuid4().hex[:8]}",
                guarantor_id=guarantor.id,
                policy_name="physician",
                status=status,
                balance_cents=cents,
                opened_at=NOW - dt.timedelta(days=days),
            )
        )
    db_session.flush()
    after = {b.bucket: b for b in reports.aging(db_session, NOW)}
    grew = {
        k: (after[k].accounts - before[k].accounts, after[k].cents - before[k].cents) for k in after
    }
    assert grew == {
        "0-30": (2, 3500),
        "31-60": (1, 700),
        "61-90": (0, 0),
        "91-120": (0, 0),
        "120+": (1, 9900),
    }
    rows = reports.aging_rows(list(after.values()))
    assert rows[0] == ["days", "accounts", "amount"] and rows[-1][0] == "total"


def test_cli_user_add_prints_a_console_password_and_report_csv(
    tmp_path: Path,
    database_url: str,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DUNNING_LOGIN_FILE", raising=False)
    with session_factory.begin() as session:
        lead = _user(session, "billing_lead")
        admin_token = issue_token(session, SYSTEM, user=lead)[0]
    name = f"clerk-{uuid.uuid4().hex[:6]}"
    result = runner.invoke(
        app, ["user", "add", name, "--role", "staff"], env={"DUNNING_TOKEN": admin_token}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("dun_")  # the token stays last, for `| tail -1 | dunning login`
    password = lines[lines.index(next(x for x in lines if "console password" in x)) + 1]
    with session_factory.begin() as session:
        assert isinstance(sign_in(session, name, password, NOW), Actor)
    result = runner.invoke(app, ["user", "password", name], env={"DUNNING_TOKEN": admin_token})
    assert result.exit_code == 0, result.output
    fresh = result.output.strip().splitlines()[-1]
    with session_factory.begin() as session:
        assert sign_in(session, name, password, NOW) == SignInRefused("wrong name or password")
        assert isinstance(sign_in(session, name, fresh, NOW), Actor)

    result = runner.invoke(app, ["reports", "aging", "--csv"], env={"DUNNING_TOKEN": admin_token})
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "days,accounts,amount"
    assert result.output.splitlines()[-1].startswith("total,")
    result = runner.invoke(app, ["reports", "nope"], env={"DUNNING_TOKEN": admin_token})
    assert result.exit_code == 2 and "name: unknown report 'nope'" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (0, "0-30"),
        (30, "0-30"),
        (31, "31-60"),
        (90, "61-90"),
        (91, "91-120"),
        (121, "120+"),
        (-2, "0-30"),
    ],
)
def test_one_account_falls_in_the_bucket_the_report_counts_it_in(days: int, bucket: str) -> None:
    assert reports.bucket_of(days) == bucket
