"""``dunning reports NAME`` and ``dunning report NAME``: the same figures as the console's, as a
table or as formula-safe CSV, for every role that may read; exports audited."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from cli.common import NOT_LOGGED_IN
from cli.main import app
from models.orm import AuditEvent
from services import reports
from services.identity import SYSTEM
from services.users import issue_token
from tests.identities import signed_in
from tests.support.report_ledger import Ledger, build_ledger

AS_OF = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)  # a Tuesday; months Sep, Oct, Nov 2026
runner = CliRunner()


@pytest.fixture
def cli_db(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_DATABASE__URL", database_url)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("DUNNING_LOGIN_FILE", raising=False)


@pytest.fixture
def ledger(session_factory: sessionmaker[Session]) -> Ledger:
    """The hand-computed ledger, committed (the CLI reads it in a session of its own); its
    accounts are on a policy of their own, so no other test's report sees them."""
    with session_factory.begin() as session:
        return build_ledger(session, AS_OF)


def _run(token: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"DUNNING_TOKEN": token})
    return result.exit_code, result.output


def _scope(ledger: Ledger) -> list[str]:
    return ["--policy", ledger.policy, "--as-of", AS_OF.isoformat(), "--months", "3"]


@pytest.mark.usefixtures("cli_db")
def test_reports_and_report_print_the_same_csv_as_the_service(
    session_factory: sessionmaker[Session], ledger: Ledger
) -> None:
    token, user_id = signed_in(session_factory, "staff")
    code, out = _run(token, "reports", "write-offs", "--csv", *_scope(ledger))
    assert code == 0, out
    assert out.splitlines()[-1] == "2026-11,1,50.00,1,5.00,2,55.00"
    code2, out2 = _run(token, "report", "write-offs", "--csv", *_scope(ledger))
    assert (code2, out2) == (0, out)
    code, out = _run(token, "report", "outcomes-by-step", "--csv", *_scope(ledger))
    with session_factory() as s:
        expected = reports.build(s, "outcomes-by-step", ledger.options())
    assert code == 0 and out.replace("\r\n", "\n") == reports.to_csv(expected.rows).replace(
        "\r\n", "\n"
    )
    assert out.splitlines()[1].startswith(f"'{ledger.policy},statement-1,4,0,")
    with session_factory() as s:
        exported = s.scalars(
            select(AuditEvent).where(
                AuditEvent.actor == user_id, AuditEvent.action == "report_exported"
            )
        ).all()
    assert [(e.detail["report"], e.detail["door"]) for e in exported] == [
        ("write-offs", "cli"),
        ("write-offs", "cli"),
        ("outcomes-by-step", "cli"),
    ]


@pytest.mark.usefixtures("cli_db")
def test_table_output_with_title_and_definition(
    session_factory: sessionmaker[Session], ledger: Ledger
) -> None:
    token, _ = signed_in(session_factory, "supervisor")
    code, out = _run(token, "reports", "days-in-ar", *_scope(ledger), "--days", "30")
    assert code == 0, out
    assert "Days in A/R, 2026-11-24 12:00 UTC" in out
    assert "78.8" in out and "A/R / average daily charges over the last 30 days" in out


@pytest.mark.usefixtures("cli_db")
def test_bad_names_and_options_are_named_and_facts_keep_report(
    session_factory: sessionmaker[Session],
) -> None:
    token, _ = signed_in(session_factory, "admin")
    code, out = _run(token, "reports", "nope")
    assert code == 2 and "name: unknown report 'nope'" in out
    code, out = _run(token, "reports", "aging", "--months", "0")
    assert code == 2 and "months: between 1 and 120" in out
    code, out = _run(token, "reports", "aging", "--as-of", "yesterday")
    assert code == 2 and "--as-of: 'yesterday' is not an ISO 8601" in out
    code, out = _run(token, "report", "--help")
    assert code == 0 and "bankruptcy" in out and "placements" in out


@pytest.mark.usefixtures("cli_db")
def test_an_integration_may_not_read_reports(session_factory: sessionmaker[Session]) -> None:
    """Every staff role may read; an integration's token (no role: intake only) may not."""
    with session_factory.begin() as session:
        token, _ = issue_token(session, SYSTEM, name=f"billing-system-{uuid.uuid4().hex[:6]}")
    code, out = _run(token, "reports", "aging")
    assert code == NOT_LOGGED_IN and "staff commands need a user's" in out
