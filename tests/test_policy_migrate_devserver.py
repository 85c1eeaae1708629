"""``dunning policy migrate`` against the real Temporal dev server and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from cli.main import app
from config.loader import load_policy
from config.settings import Settings
from models.orm import Account, AuditEvent
from models.orm.policy_version import PolicyVersion
from models.payloads import StepOutcome
from starter import Intake, get_status
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.identities import signed_in
from tests.support.cli import invoke_in_thread
from tests.support.waits import eventually
from worker import build_worker

pytestmark = pytest.mark.devserver


async def test_migrate_shows_the_change_then_moves_the_balance(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    zone = midday_zone()
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    v1 = instant_policy(tmp_path / "v1", zone)
    v2 = instant_policy(tmp_path / "v2", zone)
    # The new version renames the notice and brings the second statement forward.
    v2.write_text(
        v2.read_text()
        .replace("{id: notice-1, day: 4", "{id: notice-2, day: 6")
        .replace("{id: statement-2, day: 30", "{id: statement-2, day: 20"),
        encoding="utf-8",
    )
    new_hash = load_policy(v2).hash
    assert new_hash != load_policy(v1).hash

    assert settings.database.url is not None
    monkeypatch.setenv("DUNNING_DATABASE__URL", settings.database.url.get_secret_value())
    monkeypatch.setenv(
        "DUNNING_TEMPORAL__ADDRESS", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("DUNNING_TEMPORAL__NAMESPACE", dev_env.client.namespace)
    monkeypatch.setenv("DUNNING_TEMPORAL__TASK_QUEUE", settings.temporal.task_queue)
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    token, lead = signed_in(session_factory, "billing_lead")
    monkeypatch.setenv("DUNNING_TOKEN", token)

    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    row = balance_row(time_zone=zone, policy=policy_in(settings, v1))
    number = row["account_number"]
    async with build_worker(client, settings, session_factory):
        await intake.import_balances(write_csv(tmp_path / "a.csv", [row]))
        account_id = intake.account_id(number)

        async def statement_sent() -> bool:
            view = await get_status(client, account_id)
            return any(
                r.step_id == "statement-1" and r.outcome is StepOutcome.SENT for r in view.history
            )

        await eventually(statement_sent)
        before = await get_status(client, account_id)
        assert before.next_step is not None and before.next_step.step_id == "notice-1"

        # Asked, and refused: nothing moves.
        refused = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["policy", "migrate", str(v2), "--account", number],
            input="n\n",
        )
        assert refused.exit_code == 1, refused.output
        assert "resumes on the new version at: notice-2" in refused.output
        assert (await get_status(client, account_id)).policy.hash == before.policy.hash

        result = await invoke_in_thread("policy", "migrate", str(v2), "--account", number, "--yes")
        assert result.exit_code == 0, result.output
        out = result.output
        assert f"{number}  balance $55.00  instant@{before.policy.hash[:12]}" in out
        assert "next on the current version: notice-1" in out
        assert "resumes on the new version at: notice-2" in out
        assert "statement-2" in out
        assert f"{number}: moved to instant@{new_hash[:12]}" in out

        after = await get_status(client, account_id)
        assert after.policy.hash == new_hash
        assert after.next_step is not None and after.next_step.step_id == "notice-2"
        assert [r.step_id for r in after.history] == ["statement-1"]

        # Again: already on this version, so nothing to do and a non-zero exit.
        again = await invoke_in_thread("policy", "migrate", str(v2), "--account", number, "--yes")
        assert again.exit_code == 4  # refused by a rule: nothing to migrate
        assert "already on this version" in again.output

    with session_factory() as session:
        assert session.get(PolicyVersion, new_hash) is not None
        account = session.scalars(select(Account).where(Account.account_number == number)).one()
        audit = session.scalars(
            select(AuditEvent).where(
                AuditEvent.account_id == account.id, AuditEvent.action == "policy_migrated"
            )
        ).one()
        assert audit.actor == lead and audit.detail["outcome"] == "done"
        assert audit.detail["to"] == f"instant@{new_hash}"
        assert audit.detail["resumes_at"] == "notice-2"


async def test_migrate_names_an_unknown_account(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.database.url is not None
    monkeypatch.setenv("DUNNING_DATABASE__URL", settings.database.url.get_secret_value())
    monkeypatch.setenv(
        "DUNNING_TEMPORAL__ADDRESS", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "billing_lead")[0])
    result = await invoke_in_thread(
        "policy", "migrate", "physician", "--account", "NO-SUCH-ACCOUNT", "--yes"
    )
    assert result.exit_code == 3  # not found
    assert "no account 'NO-SUCH-ACCOUNT'" in result.output


async def test_migrate_needs_the_policy_permission(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A supervisor decides tasks but does not own the policies: migrating is the billing lead's
    (``policy`` permission), as on the console's policy pages."""
    assert settings.database.url is not None
    monkeypatch.setenv("DUNNING_DATABASE__URL", settings.database.url.get_secret_value())
    monkeypatch.setenv(
        "DUNNING_TEMPORAL__ADDRESS", dev_env.client.service_client.config.target_host
    )
    monkeypatch.setenv("DUNNING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DUNNING_TOKEN", signed_in(session_factory, "supervisor")[0])
    result = await invoke_in_thread(
        "policy", "migrate", "physician", "--account", "NO-SUCH-ACCOUNT", "--yes"
    )
    assert result.exit_code == 6  # not allowed, before anything is looked up
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "may not do this: it needs the policy permission" in said
    assert "no account" not in result.output
