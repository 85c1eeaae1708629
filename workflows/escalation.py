"""The ``balance-escalation`` workflow: one per guarantor account balance.

``run`` reads like the policy: ask the decision core what is next, wait for it (or for a new fact),
then send it through one activity. All rules live in ``workflows.decisions``; this class only
keeps state, waits and calls activities.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.payloads import (
        BalanceState,
        ChargeSignal,
        CloseApprovalInput,
        CloseBalanceInput,
        Decision,
        EscalationInput,
        EscalationResult,
        LadderState,
        NextStepView,
        OpenApprovalInput,
        PaymentSignal,
        PendingApproval,
        PolicyMigration,
        SendStepInput,
        SendStepResult,
        StatusView,
        StepDecision,
        StepOutcome,
    )
    from models.policy import PolicyRef, TimeoutAction
    from workflows import decisions
    from workflows.decisions import Done, Planned, SendNow, Skip, WaitForChange, WaitUntil

WORKFLOW_NAME = "balance-escalation"
SEND_STEP_TIMEOUT = timedelta(minutes=2)
LEDGER_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["TemplateError", "PolicyVersionMissing"],
)
MAX_HISTORY_EVENTS = 10_000


@workflow.defn(name=WORKFLOW_NAME)
class BalanceEscalationWorkflow:
    """Follows one balance up the ladder of its pinned policy until it is paid."""

    @workflow.init
    def __init__(self, inp: EscalationInput) -> None:
        self._input = inp
        self._state = inp.state or LadderState(opened_at=inp.opened_at)
        self._changed = False
        self._next: Planned | None = None
        self._waiting_for = ""

    @workflow.run
    async def run(self, inp: EscalationInput) -> EscalationResult:
        state = self._state
        if not inp.episode_id:
            inp.episode_id = str(workflow.uuid4())
        if state.anchor_at is None:
            state.anchor_at = inp.first_statement_at or workflow.now()
        while True:
            decision = decisions.decide(inp.policy, state, inp.profile, workflow.now())
            self._next, self._waiting_for = None, ""
            match decision:
                case Done(reason):
                    if state.balance_cents > 0:
                        self._waiting_for = reason
                        await self._wait_for_change()
                        continue
                    break
                case WaitUntil(planned):
                    self._next = planned
                    await self._wait_for_change(planned.at - workflow.now())
                case WaitForChange(reason):
                    self._waiting_for = reason
                    await self._wait_for_change()
                case Skip():
                    decisions.record_skip(state, decision, workflow.now())
                case SendNow(planned):
                    if planned.step.approval is not None and not await self._approved(planned):
                        continue
                    await self._send(planned)
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                inp.state = state
                workflow.continue_as_new(inp)
        await workflow.wait_condition(workflow.all_handlers_finished)
        final = BalanceState.PAID
        await workflow.execute_activity(
            "close_balance",
            CloseBalanceInput(
                account_id=inp.account_id, state=final, balance_cents=state.balance_cents
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        return EscalationResult(
            account_id=inp.account_id,
            state=final,
            balance_cents=state.balance_cents,
            contacts=len(state.contacts()),
        )

    # -- signals, updates, queries -------------------------------------------------------

    @workflow.signal(name="record_payment")
    def record_payment(self, payment: PaymentSignal) -> None:
        """A payment posted in the ledger. Duplicates (same reference) change nothing."""
        if decisions.apply_payment(self._state, payment.reference, payment.amount_cents):
            self._changed = True

    @workflow.signal(name="add_charge")
    def add_charge(self, charge: ChargeSignal) -> None:
        """A new charge on the account joins the running ladder (sent with signal-with-start)."""
        if decisions.apply_charge(self._state, charge.reference, charge.amount_cents):
            self._changed = True

    @workflow.update(name="decide_step")
    def decide_step(self, answer: StepDecision) -> str:
        """A person approves or denies the gated step the ladder is waiting on."""
        pending = self._state.pending_approval
        assert pending is not None  # guaranteed by the validator
        pending.decision = answer.decision
        pending.decided_by = answer.decided_by
        pending.reason = answer.reason
        self._changed = True
        return f"{answer.decision.value}d {pending.step_id}"

    @decide_step.validator
    def _validate_decision(self, answer: StepDecision) -> None:
        pending = self._state.pending_approval
        if self._state.balance_cents <= 0:
            raise ApplicationError("the balance is closed", type="BalanceClosed")
        if pending is None or pending.task_id != answer.task_id:
            raise ApplicationError(f"no open approval task {answer.task_id}", type="UnknownTask")
        if pending.decision is not None:
            raise ApplicationError("this task is already decided", type="AlreadyDecided")
        if answer.role not in pending.approvers:
            raise ApplicationError(
                f"role {answer.role!r} may not decide this step; approvers: "
                + ", ".join(pending.approvers),
                type="NotAnApprover",
            )

    @workflow.update(name="migrate_policy")
    def migrate_policy(self, migration: PolicyMigration) -> PolicyRef:
        """Follow another policy version from the first of its steps that has not run yet."""
        inp, state = self._input, self._state
        inp.policy, inp.policy_hash = migration.policy, migration.policy_hash
        state.next_index = decisions.resume_index(migration.policy, state)
        self._changed = True
        return PolicyRef(name=migration.policy.name, hash=migration.policy_hash)

    @migrate_policy.validator
    def _validate_migration(self, migration: PolicyMigration) -> None:
        if self._state.balance_cents <= 0:
            raise ApplicationError("the balance is closed", type="BalanceClosed")
        if self._state.pending_approval is not None:
            raise ApplicationError(
                "a step is waiting for approval; decide it before migrating", type="ApprovalPending"
            )
        if migration.policy_hash == self._input.policy_hash:
            raise ApplicationError("already on this policy version", type="SameVersion")

    @workflow.query(name="get_status")
    def get_status(self) -> StatusView:
        state, inp = self._state, self._input
        nxt = self._next
        return StatusView(
            account_id=inp.account_id,
            state=self._balance_state(),
            balance_cents=state.balance_cents,
            paid_cents=state.paid_cents,
            policy=PolicyRef(name=inp.policy.name, hash=inp.policy_hash),
            next_step=NextStepView(
                step_id=nxt.step.id,
                channels=list(nxt.channels),
                at=nxt.at,
                reasons=list(nxt.reasons),
            )
            if nxt
            else None,
            waiting_for=self._waiting_for,
            history=list(state.history),
        )

    # -- phases ----------------------------------------------------------------------------

    async def _wait_for_change(self, delay: timedelta | None = None) -> None:
        """Sleep until ``delay`` has passed or a signal or update changed something."""
        self._changed = False
        if delay is not None and delay <= timedelta(0):
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._changed, timeout=delay)

    async def _send(self, planned: Planned) -> None:
        state, inp = self._state, self._input
        step = planned.step
        result: SendStepResult = await workflow.execute_activity(
            "send_step",
            SendStepInput(
                account_id=inp.account_id,
                idempotency_key=f"{inp.account_id}/{inp.episode_id}/{step.id}",
                policy_hash=inp.policy_hash,
                step_id=step.id,
                kind=step.kind,
                channels=list(planned.channels),
                template=step.template,
                tone=step.tone,
                balance_cents=state.balance_cents,
                due_at=planned.at,
            ),
            result_type=SendStepResult,
            start_to_close_timeout=SEND_STEP_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        decisions.record_sent(
            state,
            planned,
            workflow.now(),
            result.channel,
            result.communication_id,
            result.outcome,
            result.reasons,
        )

    async def _approved(self, planned: Planned) -> bool:
        """Open an approval task for a gated step and wait for a person, or for the timeout.

        Returns True when the step may run now. False means the step was skipped, or the ladder
        must re-decide (a payment may have closed the balance while it waited).
        """
        gate = planned.step.approval
        assert gate is not None
        state = self._state
        pending = state.pending_approval
        if pending is None or pending.step_id != planned.step.id:
            due = workflow.now() + timedelta(days=gate.wait_days)
            task_id: str = await workflow.execute_activity(
                "open_approval",
                OpenApprovalInput(
                    account_id=self._input.account_id,
                    step_id=planned.step.id,
                    title=f"Approve {planned.step.kind.value} ({planned.step.id})",
                    approvers=list(gate.approvers),
                    due_at=due,
                ),
                result_type=str,
                start_to_close_timeout=LEDGER_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            pending = PendingApproval(
                step_id=planned.step.id,
                task_id=task_id,
                requested_at=workflow.now(),
                approvers=list(gate.approvers),
            )
            state.pending_approval = pending
        self._waiting_for = f"approval of {planned.step.id} by " + " or ".join(gate.approvers)
        deadline = pending.requested_at + timedelta(days=gate.wait_days)
        while pending.decision is None and state.balance_cents > 0:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                if gate.on_timeout is TimeoutAction.HOLD:
                    await self._wait_for_change()
                    continue
                break
            await self._wait_for_change(remaining)
        if state.balance_cents <= 0:
            await self._close_approval(pending, None, "balance paid while waiting")
            state.pending_approval = None
            return False
        state.pending_approval = None
        if pending.decision is Decision.APPROVE:
            await self._close_approval(pending, True, pending.reason)
            return True
        if pending.decision is Decision.DENY:
            await self._close_approval(pending, False, pending.reason)
            reason = f"denied by {pending.decided_by}" + (
                f": {pending.reason}" if pending.reason else ""
            )
        else:
            await self._close_approval(pending, None, f"no decision in {gate.wait_days} days")
            if gate.on_timeout is TimeoutAction.PROCEED:
                return True
            reason = f"no decision in {gate.wait_days} days; policy says skip"
        decisions.record_skip(state, Skip(planned.index, planned.step, reason), workflow.now())
        return False

    async def _close_approval(
        self, pending: PendingApproval, approved: bool | None, reason: str
    ) -> None:
        await workflow.execute_activity(
            "close_approval",
            CloseApprovalInput(
                task_id=pending.task_id,
                approved=approved,
                decided_by=pending.decided_by,
                reason=reason,
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )

    def _balance_state(self) -> BalanceState:
        state = self._state
        if state.balance_cents <= 0:
            return BalanceState.PAID
        if state.pending_approval is not None:
            return BalanceState.AWAITING_APPROVAL
        if state.next_index >= len(self._input.policy.steps):
            return BalanceState.LADDER_COMPLETE
        if state.balance_cents < self._input.policy.thresholds.minimum_balance:
            return BalanceState.BELOW_MINIMUM
        return BalanceState.ESCALATING

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > MAX_HISTORY_EVENTS
        )


__all__ = ["WORKFLOW_NAME", "BalanceEscalationWorkflow", "StepOutcome"]
