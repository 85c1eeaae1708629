"""One balance on the time-skipping server, from a fixed start instant: the staff scenarios' case.

A scenario imports a synthetic $300.00 balance on a test policy at a stated instant (see
``tests.support.clock``), skips time, acts, checks, and ends by paying or by its own end state and
recording its history for the replay tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from models.orm import Account
from models.orm import repositories as repo
from models.payloads import (
    BalanceState,
    Decision,
    EscalationResult,
    StatusView,
    StepDecision,
    StepOutcome,
)
from models.policy import Channel
from starter import Intake, decide_step, get_status, workflow_id
from tests.factories import balance_row, patient_day, policy_in, write_csv
from tests.support.clock import TUESDAY_MORNING, advance_to
from worker import build_worker
from workflows.contract import DecisionResult

POLICIES = Path(__file__).parent.parent / "policies"
BALANCE_CENTS = 30000

RecordHistory = Callable[[str, WorkflowHandle[Any, Any]], Awaitable[None]]


async def no_history(name: str, handle: WorkflowHandle[Any, Any]) -> None:
    """For scenarios whose history is not one of the committed replay histories."""


@dataclass
class Case:
    env: WorkflowEnvironment
    client: Client
    intake: Intake
    number: str
    account_id: str
    start: dt.datetime
    session_factory: sessionmaker[Session]
    record_history: RecordHistory
    settings: Settings

    async def at_day(self, day: float) -> None:
        """Skip time to ``day`` days after the balance entered the ladder."""
        now = await self.env.get_current_time()
        target = self.start + dt.timedelta(days=day)
        if target > now:
            await self.env.sleep(target - now)

    async def status(self) -> StatusView:
        return await get_status(self.client, self.account_id)

    async def sent(self) -> dict[str, tuple[int, Channel | None]]:
        """Step id -> (day it went out, channel), for steps that were sent."""
        view = await self.status()
        return {
            r.step_id: (patient_day(r.at, self.start), r.channel)
            for r in view.history
            if r.outcome is StepOutcome.SENT
        }

    def handle(self) -> WorkflowHandle[object, EscalationResult]:
        return self.client.get_workflow_handle(
            workflow_id(self.account_id), result_type=EscalationResult
        )

    async def decide(self, task_id: str, decision: Decision, by: str, role: str) -> DecisionResult:
        return await decide_step(
            self.client,
            self.account_id,
            StepDecision(task_id=task_id, decision=decision, decided_by=by, role=role),
        )

    def account(self) -> Account:
        with self.session_factory() as session:
            account = repo.account_by_number(session, self.number)
            assert account is not None
            return account

    async def pay_in_full(self) -> EscalationResult:
        """Pay the whole balance and wait for the workflow to end: it must end PAID."""
        await self.intake.post_payment(self.number, BALANCE_CENTS, f"PAY-{self.number}")
        result = await self.handle().result()
        assert result.state is BalanceState.PAID, result
        return result

    async def finish(self, history: str, *, pay: bool = True) -> EscalationResult:
        """The scenarios' ending: pay in full (unless it already ended) and record its history."""
        result = await self.pay_in_full() if pay else await self.handle().result()
        await self.record_history(history, self.handle())
        return result


class StaffCase(Protocol):
    def __call__(
        self, policy: str = ..., start: dt.datetime = ..., **overrides: str
    ) -> AbstractAsyncContextManager[Case]: ...


@asynccontextmanager
async def case(
    ts_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
    record_history: RecordHistory,
    policy: str = "staff-test",
    start: dt.datetime = TUESDAY_MORNING,
    **overrides: str,
) -> AsyncIterator[Case]:
    """A $300.00 balance on ``tests/policies/<policy>.yaml`` whose first statement goes out at
    ``start`` (the server's clock is moved there first), with a worker running."""
    client = ts_env.client
    intake = Intake(session_factory, client, settings)
    row = balance_row(
        policy=policy_in(settings, POLICIES / f"{policy}.yaml"),
        charges=f"{BALANCE_CENTS / 100:.2f}",
        insurance_paid="0",
        insurance_adjustment="0",
        **overrides,
    )
    async with build_worker(client, settings, session_factory):
        start = await advance_to(ts_env, start)
        await intake.import_balances(write_csv(tmp_path / "balance.csv", [row]))
        account_id = intake.account_id(row["account_number"])
        yield Case(
            ts_env,
            client,
            intake,
            row["account_number"],
            account_id,
            start,
            session_factory,
            record_history,
            settings,
        )
