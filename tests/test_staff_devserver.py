"""Staff actions on the real dev server: concurrent updates, and the CLI as staff use it."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.actions import WriteOffRequest
from models.payloads import BalanceState, Decision, EscalationResult, StepDecision
from services.identity import SYSTEM
from services.users import add_user, issue_token
from starter import ActionRejected, Intake, decide_step, request_write_off, workflow_id
from tests.factories import balance_row, instant_policy, midday_zone, policy_in, write_csv
from tests.support.cli import cli_env, run_dunning
from worker import build_worker
from workflows.contract import DecisionResult, Rejection, TaskOpened

pytestmark = pytest.mark.devserver


async def _import(intake: Intake, tmp_path: Path, n: int) -> list[dict[str, str]]:
    zone = midday_zone()
    policy = policy_in(intake.settings, instant_policy(tmp_path, zone))
    rows = [balance_row(time_zone=zone, policy=policy) for _ in range(n)]
    await intake.import_balances(write_csv(tmp_path / "rows.csv", rows))
    return rows


async def test_concurrent_staff_updates_one_wins(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    async with build_worker(client, settings, session_factory):
        rows = await _import(intake, tmp_path, 10)
        ids = [intake.account_id(r["account_number"]) for r in rows]

        async def attempt(account_id: str, who: str) -> TaskOpened | ActionRejected:
            try:
                return await request_write_off(
                    client, account_id, WriteOffRequest(reason="uncollectable", requested_by=who)
                )
            except ActionRejected as exc:
                return exc

        # Two clerks ask for the same write-off at once, on ten balances at once.
        outcomes = await asyncio.gather(
            *(attempt(i, who) for i in ids for who in ("clerk-1", "clerk-2"))
        )
        tasks = [o.task_id for o in outcomes if isinstance(o, TaskOpened)]
        refused = [o for o in outcomes if isinstance(o, ActionRejected)]
        assert len(tasks) == 10 and len(refused) == 10
        assert {r.kind for r in refused} == {"TaskOpen"}

        # Two supervisors decide each task at once: exactly one decision counts.
        async def decide(
            account_id: str, task_id: str, who: str
        ) -> DecisionResult | ActionRejected:
            try:
                return await decide_step(
                    client,
                    account_id,
                    StepDecision(
                        task_id=task_id,
                        decision=Decision.APPROVE,
                        decided_by=who,
                        role="supervisor",
                    ),
                )
            except ActionRejected as exc:
                return exc

        pairs = list(zip(ids, tasks, strict=True))
        answers = await asyncio.gather(
            *(decide(i, t, who) for i, t in pairs for who in ("sup-1", "sup-2"))
        )
        assert sum(isinstance(a, DecisionResult) for a in answers) == 10
        # The loser finds the task decided (or, once the winner's decision ran, gone, or the
        # balance it wrote off closed).
        losers = {a.kind for a in answers if isinstance(a, ActionRejected)}
        assert losers and losers <= {
            Rejection.ALREADY_DECIDED,
            Rejection.UNKNOWN_TASK,
            Rejection.BALANCE_CLOSED,
        }
        results = await asyncio.gather(
            *(
                client.get_workflow_handle(workflow_id(i), result_type=EscalationResult).result()
                for i in ids
            )
        )
        assert {r.state for r in results} == {BalanceState.WRITTEN_OFF}


async def test_cli_write_off_with_four_eyes(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    database_url: str,
) -> None:
    client = dev_env.client
    intake = Intake(session_factory, client, settings)
    env = cli_env(settings, database_url, client)
    tag = uuid.uuid4().hex[:6]
    # Users and their login tokens, as `dunning user add` makes them (printed once).
    tokens: dict[str, str] = {}
    with session_factory.begin() as session:
        for name, role in (("clerk", "staff"), ("sup1", "supervisor"), ("sup2", "supervisor")):
            add_user(session, f"{name}-{tag}", [role], SYSTEM)
            tokens[name] = issue_token(session, SYSTEM, user=f"{name}-{tag}")[0]

    def as_(who: str) -> dict[str, str]:
        return dict(env, DUNNING_TOKEN=tokens[who])

    async with build_worker(client, settings, session_factory):
        (row,) = await _import(intake, tmp_path, 1)
        number = row["account_number"]
        code, out = await run_dunning(env, "write-off", number, "--reason", "uncollectable")
        assert code == 6 and "not logged in" in out
        # A typed name is no identity any more: the option is gone.
        code, out = await run_dunning(
            as_("clerk"), "write-off", number, "--as", "sup2", "--reason", "x"
        )
        assert code == 2 and "No such option: --as" in out
        code, out = await run_dunning(as_("sup1"), "write-off", number, "--reason", "uncollectable")
        assert code == 0, out
        task_id = out.strip().rsplit(" ", 1)[-1]
        code, out = await run_dunning(as_("clerk"), "worklist")
        assert code == 0 and task_id[:8] in out and number in out and "uncollectable" in out
        # staff may not decide; the requester may not approve their own request (by identity)
        code, out = await run_dunning(as_("clerk"), "approve", task_id)
        assert code == 6 and "decide permission" in out
        code, out = await run_dunning(as_("sup1"), "approve", task_id)
        assert code == 4 and "FourEyes" in out and "own request" in out
        assert "Traceback" not in out
        code, out = await run_dunning(as_("sup2"), "approve", "not-a-task")
        assert code == 2 and "task:" in out
        code, out = await run_dunning(as_("sup2"), "approve", str(uuid.uuid4()))
        assert code == 3 and "no task" in out
        code, out = await run_dunning(as_("sup2"), "approve", task_id)
        assert code == 0, out
        result = await client.get_workflow_handle(
            workflow_id(intake.account_id(number)), result_type=EscalationResult
        ).result()
        assert result.state is BalanceState.WRITTEN_OFF
        code, out = await run_dunning(as_("sup2"), "status", number, "--json")
        assert code == 0, out
        status = json.loads(out[out.index("{") :])
        assert status["state"] == "written_off"
        assert "write_off_approved" in [e["kind"] for e in status["events"]["events"]]
