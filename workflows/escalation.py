"""The ``balance-escalation`` workflow: one per guarantor account balance.

``run`` reads like the policy: settle what is due (decisions of people, timeouts, holds, plans,
offers), ask the decision core what the ladder does next, then wait for the earliest deadline or a
new fact. All rules live in ``workflows.decisions`` and ``workflows.account_rules``; this class
keeps state, waits and calls activities.

Facts (payments, charges, bounces, STOP, bankruptcy) arrive as signals, deduplicated by their
reference. Staff actions are updates with validators: a rejected action writes nothing to history.

No ``from __future__ import annotations`` here, unlike elsewhere: the sandbox executes this module
afresh for every workflow it starts, and the SDK reads each handler's type hints; evaluated once
at definition they cost a third of what resolving them from strings does.
"""

import contextlib
import dataclasses
import datetime as dt
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.actions import (
        ENDING_EVENTS,
        AccountEvent,
        AccountState,
        AdjustmentSignal,
        ApprovalKind,
        ApprovalTask,
        ChannelEventSignal,
        ClosingNotice,
        ClosingNoticeRequest,
        ClosingNoticeStatus,
        ClosingPurpose,
        ExportInput,
        HardshipRequest,
        Hold,
        HoldReason,
        HoldRequest,
        LifeEventKind,
        LifeEventSignal,
        Plan,
        PlanRequest,
        ReferralRequest,
        ResumeRequest,
        Settlement,
        SettlementRequest,
        TaskRecordInput,
        WriteOffRequest,
    )
    from models.payloads import (
        BalanceState,
        CallOutcomeSignal,
        CallResult,
        ChargeSignal,
        CloseApprovalInput,
        CloseBalanceInput,
        ContactTaskInput,
        Decision,
        EscalationInput,
        EscalationResult,
        LadderState,
        NextStepView,
        OpenApprovalInput,
        PaymentSignal,
        PolicyMigration,
        SendStepInput,
        SendStepResult,
        StatusView,
        StepDecision,
        StepOutcome,
        StepRecord,
    )
    from models.policy import Channel, PolicyRef, Step, StepKind, TimeoutAction
    from workflows import account_rules as rules
    from workflows import decisions, protections
    from workflows.contract import (
        ActivityName,
        DecisionResult,
        HardshipResult,
        HoldResult,
        PlanResult,
        Rejection,
        ResumeResult,
        SettlementResult,
        TaskOpened,
    )
    from workflows.decisions import Done, Planned, SendNow, Skip, WaitForChange, WaitUntil

WORKFLOW_NAME = "balance-escalation"
# Above the providers' 20 s request timeout; short, because a worker that dies mid-send is noticed
# only when it expires.
SEND_STEP_TIMEOUT = timedelta(seconds=45)
# A step waiting on its batch heartbeats (activities.batching): a worker that died mid-send is
# noticed after this, and the step retried on another worker, well before SEND_STEP_TIMEOUT.
SEND_STEP_HEARTBEAT = timedelta(seconds=15)
LEDGER_TIMEOUT = timedelta(seconds=30)
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(minutes=10),
    non_retryable_error_types=["TemplateError", "PolicyVersionMissing"],
)
PROMISE_GRACE_DAYS = 3
# Changes of the command sequence since histories were recorded (tests/histories/*.json).
PATCH_NO_CHANNEL = "edges2-no-channel"  # a step with no usable channel waits, then on_no_channel
PATCH_CONTACT_TASKS = "edges2-contact-tasks"  # returned mail / unreachable open worklist tasks
PATCH_REENTRY = "edges2-reentry-collapse"  # steps due while paused collapse into the last one
PATCH_PERSON = "family-person-wait"  # a step the guarantor's other accounts block waits here
PATCH_RESTRICTION_KEEPS_OPT_OUT = "protect-restriction-keeps-opt-out"  # lifting never clears it
PATCH_CLOSING_NOTICE = "front-closing-notice"  # a cease request opens the closing-notice task
CLOSING_NOTICE_STEP = "closing-notice"
PATCH_SEND_HEARTBEAT = "ledger-send-heartbeat"  # send_step has a heartbeat timeout
PATCH_NSA_PLAN = "nsa-dispute-pauses-plan"  # no plan reminder while an NSA dispute is pending
PATCH_LEDGER_WRITE_OFF = "ledger-write-off"  # an approved write-off reaches the ledger with it
PATCHES = (
    PATCH_NO_CHANNEL,
    PATCH_CONTACT_TASKS,
    PATCH_REENTRY,
    PATCH_PERSON,
    PATCH_RESTRICTION_KEEPS_OPT_OUT,
    PATCH_CLOSING_NOTICE,
    PATCH_SEND_HEARTBEAT,
    PATCH_NSA_PLAN,
    PATCH_LEDGER_WRITE_OFF,
)
"""Every patch so far, oldest first: a run started with ``EscalationInput.features == n`` has the
first ``n`` in force from its first event, without asking ``workflow.patched`` (whose marker
would cost each new balance an event and a command per patch). Append new patches at the end."""
FEATURES = len(PATCHES)


@workflow.defn(name=WORKFLOW_NAME)
class BalanceEscalationWorkflow:
    """Follows one balance up the ladder of its pinned policy until it is paid or ended."""

    @workflow.init
    def __init__(self, inp: EscalationInput) -> None:
        self._input = inp
        self._state = inp.state or LadderState(opened_at=inp.opened_at)
        self._account = inp.account or AccountState()
        self._changed = False
        self._next: Planned | None = None
        self._waiting_for = ""
        self._decisions: dict[str, StepDecision] = {}
        self._opening: set[ApprovalKind] = set()  # staff requests whose task is being opened
        self._contact_tasks: set[str] = set()  # address / locate tasks this run has open
        for charge in inp.charges:  # a new balance's first charges came with its start
            decisions.apply_charge(
                self._state, charge.reference, charge.amount_cents, charge.posted_at
            )

    def _has(self, patch: str) -> bool:
        """Whether ``patch`` is in force: from the start for runs started with it (their input's
        ``features``), else as ``workflow.patched`` says (histories recorded before it existed
        replay without it; a run of code that has it records its marker and takes it)."""
        return PATCHES.index(patch) < self._input.features or workflow.patched(patch)

    @workflow.run
    async def run(self, inp: EscalationInput) -> EscalationResult:
        state = self._state
        if not inp.episode_id:
            inp.episode_id = str(workflow.uuid4())
        if state.anchor_at is None:
            state.anchor_at = inp.first_statement_at or workflow.now()
        while not self._finished():
            if await self._settle_due_work():
                continue
            if self._should_continue_as_new():
                # Only here: every decision and due piece of work has been consumed.
                await workflow.wait_condition(workflow.all_handlers_finished)
                inp.state, inp.account = state, self._account
                inp.charges = []  # in the state already
                # The next run starts with this code: every patch so far is in force there.
                inp.features = FEATURES
                workflow.continue_as_new(inp)
            deadline = self._next_deadline()
            self._next, self._waiting_for = None, self._blocked_by()
            if not self._waiting_for:
                decision = decisions.decide(
                    inp.policy,
                    state,
                    inp.profile,
                    workflow.now(),
                    no_channel_rule=self._has(PATCH_NO_CHANNEL),
                )
                match decision:
                    case Done(reason, write_off=True):
                        self._write_off(state.balance_cents, reason, "policy")
                        continue
                    case Done(reason) | WaitForChange(reason):
                        self._waiting_for = reason
                    case WaitUntil(planned):
                        self._next = planned
                        deadline = _earliest(deadline, planned.at)
                    case Skip():
                        decisions.record_skip(state, decision, workflow.now())
                        continue
                    case SendNow(planned) if self._person_waits():
                        # The guarantor heard from another of their accounts lately.
                        wait = state.person_wait_until
                        assert wait is not None
                        self._next = dataclasses.replace(planned, at=wait)
                        self._waiting_for = "the guarantor's other accounts: contacted lately"
                        deadline = _earliest(deadline, wait)
                    case SendNow(planned):
                        await self._run_step(planned)
                        continue
            if self._has(PATCH_CONTACT_TASKS) and await self._sync_contact_tasks():
                continue
            await self._wait_for_change(deadline)
        await workflow.wait_condition(workflow.all_handlers_finished)
        for task in self._account.tasks:
            # Nothing is left to decide: the worklist must not show the task any more.
            await self._close_task_record(task, None, "", "balance closed")
        for kind in sorted(self._contact_tasks):  # only workflows that opened one (patched)
            await self._contact_task(kind, False, "", "balance closed")
        final = self._final_state()
        await workflow.execute_activity(
            ActivityName.CLOSE_BALANCE,
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

    # -- facts: signals --

    @workflow.signal(name="record_payment")
    def record_payment(self, payment: PaymentSignal) -> None:
        """A payment posted in the ledger. Duplicates (same reference) change nothing."""
        at = payment.received_at or workflow.now()
        if decisions.apply_payment(self._state, payment.reference, payment.amount_cents, at):
            self._changed = True

    @workflow.signal(name="add_charge")
    def add_charge(self, charge: ChargeSignal) -> None:
        """A new charge on the account joins the running ladder (sent with signal-with-start)."""
        at = charge.posted_at or workflow.now()
        if decisions.apply_charge(self._state, charge.reference, charge.amount_cents, at):
            self._changed = True

    @workflow.signal(name="post_adjustment")
    def post_adjustment(self, adjustment: AdjustmentSignal) -> None:
        """An adjustment, insurance payment (lowers) or insurance denial (raises)."""
        if self._first_time(f"adj:{adjustment.reference}"):
            self._state.balance_cents += adjustment.amount_cents
            self._event(adjustment.kind.value, f"{adjustment.amount_cents:+d} cents")

    @workflow.signal(name="channel_event")
    def channel_event(self, event: ChannelEventSignal) -> None:
        """A bounce, an undeliverable number, returned mail, STOP or consent: reroutes at once."""
        if self._first_time(f"chan:{event.reference}"):
            keep = event.kind in rules.RESTRICTION_EVENTS and self._has(
                PATCH_RESTRICTION_KEEPS_OPT_OUT
            )
            rules.apply_channel_event(self._input.profile, event, keep_opt_out=keep)
            assert event.channel is not None
            self._event(event.kind.value, event.channel.value)

    @workflow.signal(name="life_event")
    def life_event(self, event: LifeEventSignal) -> None:
        """Bankruptcy (automatic stay) or death: all contact ends immediately.

        Attorney representation or a cease-communication request: the patient is contacted no
        more, and the balance stays open for the attorney or the practice's other remedies.
        """
        if not self._first_time(f"life:{event.reference}") or self._account.ended:
            return
        if event.kind in ENDING_EVENTS:
            self._account.ended = event.kind.value
            self._event(event.kind.value, "all contact ended")
        elif not self._account.contact_stopped:
            self._account.contact_stopped = event.kind.value
            self._event(event.kind.value, "no more contact with the patient")

    @workflow.signal(name="record_call_outcome")
    def record_call_outcome(self, outcome: CallOutcomeSignal) -> None:
        """What staff recorded for a call task; a wrong number stops calls and texts to it."""
        if not self._first_time(f"call:{outcome.task_id}"):
            return
        detail = outcome.result.value
        if outcome.conversation:
            # 12 CFR 1006.14(b)(2)(ii): no call within 7 days after a conversation about the debt.
            self._state.call_cooldown_until = outcome.called_at + timedelta(days=7)
        if outcome.result is CallResult.WRONG_NUMBER:
            for channel in (Channel.CALL, Channel.SMS):
                rules.mark_unreachable(self._input.profile, channel, "wrong number")
        elif outcome.result is CallResult.PROMISE_TO_PAY and outcome.promised_date:
            until = dt.datetime.combine(
                outcome.promised_date + timedelta(days=PROMISE_GRACE_DAYS), dt.time(), dt.UTC
            )
            if self._account.hold is None and until > workflow.now():
                self._account.hold = Hold(
                    reason=HoldReason.PROMISE_TO_PAY,
                    since=workflow.now(),
                    until=until,
                    requested_by="call",
                )
            detail += f" by {outcome.promised_date.isoformat()}"
        self._event("call_outcome", detail)

    # -- staff actions: updates --

    @workflow.update(name="decide_step")
    def decide_step(self, answer: StepDecision) -> DecisionResult:
        """A person approves or denies an open approval task (a gated step or a staff request)."""
        task = self._task(answer.task_id)
        assert task is not None  # guaranteed by the validator
        self._decisions[task.task_id] = answer
        notice = self._account.closing_notice
        if task.kind is ApprovalKind.CLOSING_NOTICE and notice is not None:
            notice.purpose = answer.purpose
        self._changed = True
        return DecisionResult(
            task_id=task.task_id,
            decision=answer.decision,
            subject=task.step_id or task.kind.value,
        )

    @decide_step.validator
    def _validate_decision(self, answer: StepDecision) -> None:
        self._require_open()
        task = self._task(answer.task_id)
        if task is None:
            raise ApplicationError(
                f"no open approval task {answer.task_id}", type=Rejection.UNKNOWN_TASK
            )
        if task.task_id in self._decisions:
            raise ApplicationError("this task is already decided", type=Rejection.ALREADY_DECIDED)
        if answer.role not in task.roles:
            raise ApplicationError(
                f"role {answer.role!r} may not decide this task now; approvers: "
                + ", ".join(task.roles),
                type=Rejection.NOT_AN_APPROVER,
            )
        if answer.decided_by == task.requested_by:
            raise ApplicationError(
                "nobody approves their own request (four eyes)", type=Rejection.FOUR_EYES
            )
        if answer.decision is Decision.APPROVE and self._places_with_agency(task):
            self._require_no_nsa_dispute()
            self._require_not_time_barred()
        self._validate_closing_purpose(task, answer)

    def _validate_closing_purpose(self, task: ApprovalTask, answer: StepDecision) -> None:
        closing = task.kind is ApprovalKind.CLOSING_NOTICE
        if answer.purpose is not None and not closing:
            raise ApplicationError(
                "purpose: only a closing notice has one", type=Rejection.INVALID_REQUEST
            )
        if closing and answer.decision is Decision.APPROVE and answer.purpose is None:
            raise ApplicationError(
                "purpose: approving a closing notice names what it says",
                type=Rejection.INVALID_REQUEST,
            )
        notice = self._account.closing_notice
        if closing and (
            notice is None or notice.status is not ClosingNoticeStatus.AWAITING_APPROVAL
        ):
            raise ApplicationError(
                "the closing notice was already decided; no second one",
                type=Rejection.CLOSING_NOTICE_USED,
            )

    @workflow.update(name="hold")
    def hold(self, request: HoldRequest) -> HoldResult:
        """Pause the ladder: dispute, itemised-bill request, insurance pending, FA application."""
        self._account.hold = Hold(
            reason=request.reason,
            since=workflow.now(),
            until=request.until,
            requested_by=request.requested_by,
        )
        if request.reason is HoldReason.FINANCIAL_ASSISTANCE:
            self._state.fa_application_pending = True
        self._event("hold", request.reason.value, request.requested_by)
        return HoldResult(until=request.until)

    @hold.validator
    def _validate_hold(self, request: HoldRequest) -> None:
        self._require_open()
        if self._account.hold is not None:
            raise ApplicationError(
                "already on hold; resume it first", type=Rejection.ALREADY_ON_HOLD
            )
        if request.until is not None and request.until <= workflow.now():
            raise ApplicationError("until: must be in the future", type=Rejection.INVALID_REQUEST)

    @workflow.update(name="resume")
    def resume(self, request: ResumeRequest) -> ResumeResult:
        days = rules.end_hold(self._state, self._account, workflow.now())
        self._event("resume", f"held {days} days", request.requested_by)
        self._reenter("hold lifted")
        return ResumeResult(held_days=days)

    @resume.validator
    def _validate_resume(self, request: ResumeRequest) -> None:
        self._require_open()
        if self._account.hold is None:
            raise ApplicationError("not on hold", type=Rejection.NOT_ON_HOLD)

    @workflow.update(name="grant_hardship")
    def grant_hardship(self, request: HardshipRequest) -> HardshipResult:
        """Financial assistance: write off a share (100% ends it). Returns the cents left."""
        state = self._state
        amount = state.balance_cents * request.discount_percent // 100
        if request.write_off_cents is not None:
            # Recomputed from the visits' patient responsibility (501(r)): payments above it
            # are refunded by staff, so at most what is left is written off.
            amount = min(request.write_off_cents, state.balance_cents)
        self._write_off(
            amount, f"{request.program} {request.discount_percent}%", request.granted_by
        )
        state.fa_application_pending = False
        if (
            self._account.hold is not None
            and self._account.hold.reason is HoldReason.FINANCIAL_ASSISTANCE
        ):
            rules.end_hold(state, self._account, workflow.now())
        return HardshipResult(balance_cents=state.balance_cents, written_off_cents=amount)

    @grant_hardship.validator
    def _validate_hardship(self, request: HardshipRequest) -> None:
        self._require_open()

    @workflow.update(name="set_payment_plan")
    def set_payment_plan(self, request: PlanRequest) -> PlanResult:
        self._account.plan = Plan(
            installments=request.installments,
            agreed_at=workflow.now(),
            paid_at_start_cents=self._state.paid_cents,
        )
        self._account.plans_agreed += 1
        self._state.plan_active = True
        self._event("plan_agreed", f"{len(request.installments)} installments", request.agreed_by)
        return PlanResult(installments=len(request.installments))

    @set_payment_plan.validator
    def _validate_plan(self, request: PlanRequest) -> None:
        self._require_open()
        self._require_not_ceased("a payment plan")
        limit = self._input.policy.staff.plans.max_installments
        if self._account.plan is not None:
            raise ApplicationError("a payment plan is already active", type=Rejection.PLAN_ACTIVE)
        if len(request.installments) > limit:
            raise ApplicationError(
                f"installments: at most {limit} under this policy", type=Rejection.INVALID_REQUEST
            )
        if request.total_cents != self._state.balance_cents:
            raise ApplicationError(
                f"installments: must add up to the balance of {self._state.balance_cents} cents,"
                f" not {request.total_cents}",
                type=Rejection.INVALID_REQUEST,
            )
        if request.installments[0].due_on < workflow.now().date():
            raise ApplicationError(
                "installments: the first due date is in the past", type=Rejection.INVALID_REQUEST
            )

    @workflow.update(name="propose_settlement")
    async def propose_settlement(self, request: SettlementRequest) -> SettlementResult:
        """Offer to close the balance for less; above the staff limit a second person approves."""
        state, policy = self._state, self._input.policy
        discount = rules.discount_percent(state.balance_cents, request.amount_cents)
        if discount > policy.staff.settlement_discount_limit_percent:
            task = await self._open_task(
                ApprovalKind.SETTLEMENT,
                policy.staff.settlement.approvers,
                policy.staff.settlement.wait_days,
                request.proposed_by,
                f"Approve a settlement at {discount:.0f}% discount",
                settlement=request,
            )
            return SettlementResult(offered=False, task_id=task.task_id)
        self._offer(request)
        return SettlementResult(offered=True)

    @propose_settlement.validator
    def _validate_settlement(self, request: SettlementRequest) -> None:
        self._require_open()
        self._require_not_ceased("a settlement offer")
        if request.amount_cents >= self._state.balance_cents:
            raise ApplicationError(
                "amount_cents: a settlement must be less than the balance",
                type=Rejection.INVALID_REQUEST,
            )
        if request.expires_at <= workflow.now():
            raise ApplicationError(
                "expires_at: must be in the future", type=Rejection.INVALID_REQUEST
            )
        if self._account.settlement is not None or self._request_open(ApprovalKind.SETTLEMENT):
            raise ApplicationError(
                "a settlement offer is already open", type=Rejection.SETTLEMENT_OPEN
            )

    @workflow.update(name="request_write_off")
    async def request_write_off(self, request: WriteOffRequest) -> TaskOpened:
        """Ask for a write-off; the policy's approvers decide. Returns the task id."""
        approval = self._input.policy.staff.write_off
        task = await self._open_task(
            ApprovalKind.WRITE_OFF,
            approval.approvers,
            approval.wait_days,
            request.requested_by,
            "Approve a write-off" + (f": {request.reason}" if request.reason else ""),
            amount_cents=request.amount_cents,
            reason=request.reason,
        )
        return TaskOpened(task_id=task.task_id)

    @request_write_off.validator
    def _validate_write_off(self, request: WriteOffRequest) -> None:
        self._require_open()
        if request.amount_cents is not None and request.amount_cents > self._state.balance_cents:
            raise ApplicationError(
                "amount_cents: more than the balance", type=Rejection.INVALID_REQUEST
            )
        if self._request_open(ApprovalKind.WRITE_OFF):
            raise ApplicationError("a write-off request is already open", type=Rejection.TASK_OPEN)

    @workflow.update(name="request_referral")
    async def request_referral(self, request: ReferralRequest) -> TaskOpened:
        """Ask to place the account with a collection agency. Returns the task id."""
        approval = self._input.policy.staff.agency_referral
        task = await self._open_task(
            ApprovalKind.AGENCY_REFERRAL,
            approval.approvers,
            approval.wait_days,
            request.requested_by,
            "Approve an agency referral",
            reason=request.note,
        )
        return TaskOpened(task_id=task.task_id)

    @request_referral.validator
    def _validate_referral(self, request: ReferralRequest) -> None:
        self._require_open()
        self._require_referral_allowed()
        if self._request_open(ApprovalKind.AGENCY_REFERRAL):
            raise ApplicationError("a referral request is already open", type=Rejection.TASK_OPEN)

    @workflow.update(name="request_closing_notice")
    async def request_closing_notice(self, request: ClosingNoticeRequest) -> TaskOpened:
        """Open the closing-notice task of a cease request recorded before it opened by itself."""
        task_id = await self._open_closing_notice(request.requested_by)
        return TaskOpened(task_id=task_id)

    @request_closing_notice.validator
    def _validate_closing_request(self, request: ClosingNoticeRequest) -> None:
        self._require_open()
        if self._account.contact_stopped != LifeEventKind.CEASE_COMMUNICATION.value:
            raise ApplicationError(
                "no cease-communication request on this account: there is no closing notice",
                type=Rejection.INVALID_REQUEST,
            )
        notice = self._account.closing_notice
        if notice is not None and notice.status is ClosingNoticeStatus.AWAITING_APPROVAL:
            raise ApplicationError("the closing notice is already open", type=Rejection.TASK_OPEN)
        if notice is not None:
            raise ApplicationError(
                f"the closing notice was already {notice.status.value.replace('_', ' ')};"
                " at most one, ever (Reg F 1006.6(c))",
                type=Rejection.CLOSING_NOTICE_USED,
            )

    @workflow.update(name="migrate_policy")
    def migrate_policy(self, migration: PolicyMigration) -> PolicyRef:
        """Follow another policy version from the first of its steps that has not run yet."""
        inp, state = self._input, self._state
        inp.policy, inp.policy_hash = migration.policy, migration.policy_hash
        state.next_index = decisions.resume_index(migration.policy, state)
        self._event("policy_migrated", migration.policy_hash[:12], migration.requested_by)
        return PolicyRef(name=migration.policy.name, hash=migration.policy_hash)

    @migrate_policy.validator
    def _validate_migration(self, migration: PolicyMigration) -> None:
        self._require_open()
        if self._open_tasks(ApprovalKind.STEP):
            raise ApplicationError(
                "a step is waiting for approval; decide it before migrating",
                type=Rejection.APPROVAL_PENDING,
            )
        if migration.policy_hash == self._input.policy_hash:
            raise ApplicationError("already on this policy version", type=Rejection.SAME_VERSION)

    @workflow.query(name="get_status")
    def get_status(self) -> StatusView:
        state, inp = self._state, self._input
        finished = self._finished()
        # A finished balance has no next step, whatever the last wake-up had planned.
        nxt = None if finished else self._next
        return StatusView(
            account_id=inp.account_id,
            state=self._balance_state(),
            balance_cents=state.balance_cents,
            credit_cents=max(0, -state.balance_cents),
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
            waiting_for="" if finished else self._waiting_for,
            history=list(state.history),
            anchor_at=state.anchor_at,
            plan_active=state.plan_active,
            contact_window=decisions.window_note(inp.policy, inp.profile, workflow.now()),
        )

    @workflow.query(name="get_account")
    def get_account(self) -> AccountState:
        """Holds, plan, offer, open approval tasks and the account's events."""
        return self._account

    # -- the loop's phases --

    async def _settle_due_work(self) -> bool:
        """Act on everything that is due now. True if anything changed (the loop decides again)."""
        now = workflow.now()
        account, state = self._account, self._state
        if self._closing_notice_wanted():
            await self._open_closing_notice()
            return True
        for task in list(account.tasks):
            answer = self._decisions.pop(task.task_id, None)
            if answer is not None:
                await self._finish_task(
                    task, answer.decision is Decision.APPROVE, answer.decided_by, answer.reason
                )
                return True
            if now >= task.deadline and not (
                task.level + 1 >= len(task.approvers)
                and self._timeout_action(task) is TimeoutAction.HOLD
            ):
                await self._task_timed_out(task)
                return True
        if (
            account.hold is not None
            and account.hold.until is not None
            and now >= account.hold.until
        ):
            days = rules.end_hold(state, account, now)
            self._event("hold_ended", f"after {days} days")
            self._reenter("hold lifted")
            return True
        if account.settlement is not None:
            if rules.settlement_met(state, account.settlement):
                account.settled = True
                self._write_off(state.balance_cents, "settled", "system")
                return True
            if now >= account.settlement.expires_at:
                account.settlement = None
                self._event("settlement_expired", "the ladder goes on")
                self._reenter("settlement lapsed")
                return True
        if account.plan is not None and not self._plan_paused():
            return await self._plan_due(now)
        return False

    def _plan_paused(self) -> bool:
        """No plan reminder goes out while a No Surprises Act dispute is pending."""
        return protections.nsa_dispute_pending(self._account) and self._has(PATCH_NSA_PLAN)

    async def _plan_due(self, now: dt.datetime) -> bool:
        plan, state, policy = self._account.plan, self._state, self._input.policy
        assert plan is not None
        event = rules.next_plan_event(policy, plan, state, self._input.profile.time_zone)
        if event is None or event.at > now:
            return False
        if event.kind is rules.PlanEventKind.REMIND:
            plan.reminded.append(event.index)
            installment = plan.installments[event.index]
            step = Step(
                id=f"plan{self._account.plans_agreed}-{event.index + 1}",
                day=0,
                channels=policy.staff.plans.reminder_channels,
                template=policy.staff.plans.reminder_template,
            )
            channels, _ = decisions.allowed_channels(policy, step, self._input.profile)
            if channels and not self._account.contact_stopped:
                await self._send_extra(step, channels, installment.amount_cents)
            return True
        self._account.plan = None
        state.plan_active = False
        state.next_index = rules.reentry_index(policy, state)
        self._event("plan_broken", f"installment {event.index + 1} missed; ladder re-entered")
        self._reenter("plan broken")
        return True

    def _next_deadline(self) -> dt.datetime | None:
        account = self._account
        deadline: dt.datetime | None = None
        for task in account.tasks:
            if not (
                task.level + 1 >= len(task.approvers)
                and self._timeout_action(task) is TimeoutAction.HOLD
            ):
                deadline = _earliest(deadline, task.deadline)
        if account.hold is not None and account.hold.until is not None:
            deadline = _earliest(deadline, account.hold.until)
        if account.settlement is not None:
            deadline = _earliest(deadline, account.settlement.expires_at)
        if account.plan is not None and not self._plan_paused():
            event = rules.next_plan_event(
                self._input.policy, account.plan, self._state, self._input.profile.time_zone
            )
            if event is not None:
                deadline = _earliest(deadline, event.at)
        return deadline

    def _blocked_by(self) -> str:
        """Why the ladder may not move now, or an empty string."""
        account = self._account
        if account.contact_stopped:
            return f"contact stopped: {account.contact_stopped}"
        if account.hold is not None:
            return f"on hold: {account.hold.reason.value}"
        if account.plan is not None:
            return "on a payment plan"
        if account.settlement is not None:
            return "settlement offered"
        step_tasks = self._open_tasks(ApprovalKind.STEP)
        if step_tasks:
            return f"approval of {step_tasks[0].step_id} by " + " or ".join(step_tasks[0].roles)
        return ""

    async def _wait_for_change(self, deadline: dt.datetime | None) -> None:
        """Sleep until ``deadline`` or until a signal or update changed something."""
        self._changed = False
        delay = None if deadline is None else deadline - workflow.now()
        if delay is not None and delay <= timedelta(0):
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._changed, timeout=delay)

    async def _run_step(self, planned: Planned) -> None:
        step = planned.step
        if step.approval is not None and step.id not in self._account.approved_steps:
            await self._open_task(
                ApprovalKind.STEP,
                step.approval.approvers,
                step.approval.wait_days,
                "system",
                f"Approve {step.kind.value} ({step.id})",
                step_id=step.id,
            )
            return
        # The contact counts from the moment the step ran, not from when the activity returned:
        # spacing and caps then depend on the schedule alone, as in the preview and simulation.
        ran_at = workflow.now()
        result = await self._execute_send(
            step,
            planned.channels,
            self._state.balance_cents,
            planned.at,
            defer_ok=self._has(PATCH_PERSON),
        )
        if result.outcome is StepOutcome.DEFERRED:
            # Not sent: the step waits for the person's spacing (workflows.person), then retries.
            # At least a minute: a worker clock behind the server's must not spin the step.
            self._state.person_wait_until = max(
                result.not_before or ran_at, ran_at + timedelta(minutes=1)
            )
            return
        self._state.person_wait_until = None
        decisions.record_sent(
            self._state,
            planned,
            ran_at,
            result.channel,
            result.communication_id,
            result.outcome,
            result.reasons,
        )
        if step.kind is StepKind.AGENCY_REFERRAL and result.outcome is StepOutcome.SENT:
            await self._place_with_agency("policy step")

    async def _send_extra(
        self, step: Step, channels: tuple[Channel, ...], amount_cents: int
    ) -> None:
        """A message outside the ladder (a plan reminder): recorded; the ladder does not move."""
        ran_at = workflow.now()
        try:
            result = await self._execute_send(step, channels, amount_cents, ran_at)
        except ActivityError as err:
            self._event("message_failed", f"{step.id}: {err.cause or err}")
            return
        self._state.history.append(
            StepRecord(
                step_id=step.id,
                outcome=result.outcome,
                at=ran_at,
                channel=result.channel,
                communication_id=result.communication_id,
                reasons=result.reasons,
            )
        )

    async def _execute_send(
        self,
        step: Step,
        channels: tuple[Channel, ...] | list[Channel],
        amount_cents: int,
        due_at: dt.datetime,
        *,
        defer_ok: bool = False,
        closing_purpose: ClosingPurpose | None = None,
    ) -> SendStepResult:
        inp = self._input
        result: SendStepResult = await workflow.execute_activity(
            ActivityName.SEND_STEP,
            SendStepInput(
                account_id=inp.account_id,
                idempotency_key=f"{inp.account_id}/{inp.episode_id}/{step.id}",
                policy_hash=inp.policy_hash,
                step_id=step.id,
                kind=step.kind,
                channels=list(channels),
                template=step.template,
                tone=step.tone,
                balance_cents=amount_cents,
                due_at=due_at,
                defer_ok=defer_ok,
                closing_purpose=closing_purpose,
            ),
            result_type=SendStepResult,
            start_to_close_timeout=SEND_STEP_TIMEOUT,
            heartbeat_timeout=SEND_STEP_HEARTBEAT if self._has(PATCH_SEND_HEARTBEAT) else None,
            retry_policy=ACTIVITY_RETRY,
        )
        return result

    # -- approval tasks --

    async def _open_task(
        self,
        kind: ApprovalKind,
        approvers: list[str],
        wait_days: int,
        requested_by: str,
        title: str,
        *,
        step_id: str | None = None,
        amount_cents: int | None = None,
        reason: str = "",
        settlement: SettlementRequest | None = None,
    ) -> ApprovalTask:
        now = workflow.now()
        self._opening.add(kind)
        try:
            task_id = await self._open_task_record(
                kind, step_id, title, approvers, now + timedelta(days=wait_days)
            )
        finally:
            self._opening.discard(kind)
        task = ApprovalTask(
            task_id=task_id,
            kind=kind,
            approvers=list(approvers),
            wait_days=wait_days,
            requested_by=requested_by,
            requested_at=now,
            level_started_at=now,
            step_id=step_id,
            amount_cents=amount_cents,
            reason=reason,
            settlement=settlement,
        )
        self._account.tasks.append(task)
        self._event("approval_requested", f"{kind.value} {step_id or ''}".strip(), requested_by)
        return task

    async def _open_task_record(
        self,
        kind: ApprovalKind,
        step_id: str | None,
        title: str,
        approvers: list[str],
        due: dt.datetime,
    ) -> str:
        task_id: str = await workflow.execute_activity(
            ActivityName.OPEN_APPROVAL,
            OpenApprovalInput(
                account_id=self._input.account_id,
                step_id=step_id or kind.value,
                title=title,
                approvers=list(approvers),
                due_at=due,
            ),
            result_type=str,
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        return task_id

    async def _task_timed_out(self, task: ApprovalTask) -> None:
        if task.level + 1 < len(task.approvers):
            task.level += 1
            task.level_started_at = workflow.now()
            await workflow.execute_activity(
                ActivityName.ESCALATE_APPROVAL,
                TaskRecordInput(
                    account_id=self._input.account_id,
                    task_id=task.task_id,
                    kind=task.kind,
                    approvers=task.roles,
                    level=task.level,
                    due_at=task.deadline,
                ),
                start_to_close_timeout=LEDGER_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
            )
            self._event("approval_escalated", f"{task.kind.value} to {task.approvers[task.level]}")
            return
        action = self._timeout_action(task)
        await self._finish_task(
            task,
            True if action is TimeoutAction.PROCEED else None,
            "",
            f"no decision in {task.wait_days} days",
        )

    def _timeout_action(self, task: ApprovalTask) -> TimeoutAction:
        policy = self._input.policy
        if task.kind is ApprovalKind.STEP:
            assert task.step_id is not None
            gate = policy.steps[policy.step_index(task.step_id)].approval
            return gate.on_timeout if gate else TimeoutAction.SKIP
        approval = {
            ApprovalKind.WRITE_OFF: policy.staff.write_off,
            ApprovalKind.AGENCY_REFERRAL: policy.staff.agency_referral,
            ApprovalKind.SETTLEMENT: policy.staff.settlement,
            ApprovalKind.CLOSING_NOTICE: policy.staff.closing_notice_approval,
        }[task.kind]
        return approval.on_timeout

    async def _close_task_record(
        self,
        task: ApprovalTask,
        approved: bool | None,
        decided_by: str,
        reason: str,
        written_off_cents: int = 0,
    ) -> None:
        await workflow.execute_activity(
            ActivityName.CLOSE_APPROVAL,
            CloseApprovalInput(
                task_id=task.task_id,
                approved=approved,
                decided_by=decided_by,
                reason=reason,
                written_off_cents=written_off_cents,
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )

    async def _finish_task(
        self, task: ApprovalTask, approved: bool | None, decided_by: str, reason: str
    ) -> None:
        """Record the decision (None: nobody decided) and carry it out."""
        self._account.tasks.remove(task)
        state = self._state
        written_off = 0
        if approved and task.kind is ApprovalKind.WRITE_OFF and self._has(PATCH_LEDGER_WRITE_OFF):
            # Written off before the task's record closes, which records it in the ledger too
            # (a ledger that missed it would have the daily reconciliation bill it again).
            written_off = min(task.amount_cents or state.balance_cents, state.balance_cents)
            self._write_off(written_off, task.reason or "write-off", decided_by)
        await self._close_task_record(task, approved, decided_by, reason, written_off)
        verdict = {True: "approved", False: "denied", None: "expired"}[approved]
        self._event(f"{task.kind.value}_{verdict}", reason, decided_by)
        if task.kind is ApprovalKind.STEP:
            assert task.step_id is not None
            if approved:
                self._account.approved_steps.append(task.step_id)
            else:
                index = self._input.policy.step_index(task.step_id)
                why = (
                    f"denied by {decided_by}" + (f": {reason}" if reason else "")
                    if approved is False
                    else f"{reason}; policy says skip"
                )
                decisions.record_skip(
                    state, Skip(index, self._input.policy.steps[index], why), workflow.now()
                )
        elif task.kind is ApprovalKind.CLOSING_NOTICE:
            await self._closing_notice_decided(approved, decided_by)
        elif not approved:
            return
        elif task.kind is ApprovalKind.WRITE_OFF and not self._has(PATCH_LEDGER_WRITE_OFF):
            amount = min(task.amount_cents or state.balance_cents, state.balance_cents)
            self._write_off(amount, task.reason or "write-off", decided_by)
        elif task.kind is ApprovalKind.SETTLEMENT:
            assert task.settlement is not None
            self._offer(task.settlement)
        elif task.kind is ApprovalKind.AGENCY_REFERRAL:
            await self._place_with_agency(decided_by)

    async def _place_with_agency(self, approved_by: str) -> None:
        await workflow.execute_activity(
            ActivityName.PLACE_WITH_AGENCY,
            ExportInput(
                account_id=self._input.account_id,
                balance_cents=self._state.balance_cents,
                approved_by=approved_by or "system",
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )
        self._account.placed_at = workflow.now()
        self._account.ended = "placed"
        rules.stop_sms_after_placement(self._input.profile)
        self._event("placed_with_agency", "", approved_by)

    # -- the closing notice after a cease-communication request (Reg F 1006.6(c)) --

    def _closing_notice_wanted(self) -> bool:
        """A cease request stopped contact and no closing notice was considered yet.

        ``patched`` is asked last, only then: histories recorded before this existed replay
        without the task (their cease request stopped everything, as it did then).
        """
        account = self._account
        return (
            account.contact_stopped == LifeEventKind.CEASE_COMMUNICATION.value
            and account.closing_notice is None
            and not account.ended
            and self._has(PATCH_CLOSING_NOTICE)
        )

    async def _open_closing_notice(self, requested_by: str = "system") -> str:
        approval = self._input.policy.staff.closing_notice_approval
        # Set before the activity runs: neither the loop nor a concurrent request opens a second.
        self._account.closing_notice = notice = ClosingNotice()
        task = await self._open_task(
            ApprovalKind.CLOSING_NOTICE,
            approval.approvers,
            approval.wait_days,
            requested_by,
            "Closing notice after a cease-communication request (Reg F 1006.6(c)): "
            "approve one letter with its purpose, or deny",
        )
        notice.task_id = task.task_id
        return task.task_id

    async def _closing_notice_decided(self, approved: bool | None, decided_by: str) -> None:
        """Approved: the one letter goes, by letter only; denied or expired: nothing, ever."""
        notice = self._account.closing_notice
        assert notice is not None
        notice.decided_by = decided_by
        if not approved:
            notice.status = (
                ClosingNoticeStatus.DENIED if approved is False else ClosingNoticeStatus.EXPIRED
            )
            return
        policy = self._input.policy
        step = Step(
            id=CLOSING_NOTICE_STEP,
            day=0,
            channels=[Channel.LETTER],
            template=policy.staff.closing_notice.template,
            tone=policy.steps[-1].tone,
        )
        channels, blocked = decisions.allowed_channels(policy, step, self._input.profile)
        ran_at = workflow.now()
        if not channels:
            notice.status = ClosingNoticeStatus.NOT_SENT
            self._event("closing_notice_not_sent", "; ".join(blocked)[:200])
            return
        try:
            result = await self._execute_send(
                step, channels, self._state.balance_cents, ran_at, closing_purpose=notice.purpose
            )
        except ActivityError as err:
            notice.status = ClosingNoticeStatus.NOT_SENT
            self._event("closing_notice_not_sent", str(err.cause or err)[:200])
            return
        self._state.history.append(
            StepRecord(
                step_id=step.id,
                outcome=result.outcome,
                at=ran_at,
                channel=result.channel,
                communication_id=result.communication_id,
                reasons=result.reasons,
            )
        )
        sent = result.outcome is StepOutcome.SENT
        notice.status = ClosingNoticeStatus.SENT if sent else ClosingNoticeStatus.NOT_SENT
        notice.sent_at = ran_at if sent else None
        notice.communication_id = result.communication_id
        purpose = notice.purpose.value if notice.purpose else ""
        self._event("closing_notice_sent" if sent else "closing_notice_not_sent", purpose)

    def _require_not_ceased(self, what: str) -> None:
        if self._account.contact_stopped == LifeEventKind.CEASE_COMMUNICATION.value:
            raise ApplicationError(
                f"cease communication (Reg F 1006.6(c)): no {what} goes to the patient",
                type=Rejection.CONTACT_STOPPED,
            )

    # -- small helpers --

    def _offer(self, request: SettlementRequest) -> None:
        self._account.settlement = Settlement(
            amount_cents=request.amount_cents,
            expires_at=request.expires_at,
            offered_at=workflow.now(),
            paid_at_offer_cents=self._state.paid_cents,
        )
        self._event("settlement_offered", f"{request.amount_cents} cents", request.proposed_by)
        self._changed = True

    def _write_off(self, amount: int, reason: str, by: str) -> None:
        self._state.balance_cents -= amount
        self._account.written_off_cents += amount
        self._event("written_off", f"{amount} cents: {reason}", by)
        self._changed = True

    def _reenter(self, why: str) -> None:
        """Back on the ladder after a pause: the steps that came due meanwhile are collapsed into
        the last of them (the policy's ``contact.reentry``), never sent back to back."""
        if not self._has(PATCH_REENTRY):
            return
        now = workflow.now()
        for skip in rules.collapse_overdue(
            self._input.policy, self._state, self._input.profile, now, why
        ):
            decisions.record_skip(self._state, skip, now)

    async def _sync_contact_tasks(self) -> bool:
        """Open or close the address and locate tasks the contact situation calls for.

        True if a task was opened or closed (the loop decides again).
        """
        wanted = rules.contact_tasks(self._input.policy, self._input.profile, self._waiting_for)
        step_id = ""
        if self._state.next_index < len(self._input.policy.steps):
            step_id = self._input.policy.steps[self._state.next_index].id
        changed = False
        for kind in ("address", "locate"):
            if (kind in wanted) == (kind in self._contact_tasks):
                continue
            await self._contact_task(kind, kind in wanted, step_id, wanted.get(kind, ""))
            if kind in wanted:
                self._contact_tasks.add(kind)
                self._event(f"{kind}_task_opened", wanted[kind][:200])
            else:
                self._contact_tasks.discard(kind)
                self._event(f"{kind}_task_closed")
            changed = True
        return changed

    async def _contact_task(self, kind: str, open_it: bool, step_id: str, reason: str) -> None:
        await workflow.execute_activity(
            "sync_contact_task",
            ContactTaskInput(
                account_id=self._input.account_id,
                kind=kind,
                open=open_it,
                step_id=step_id,
                reason=reason[:300],
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
        )

    def _event(self, kind: str, detail: str = "", by: str = "") -> None:
        self._account.events.append(
            AccountEvent(at=workflow.now(), kind=kind, detail=detail, by=by)
        )
        self._changed = True

    def _person_waits(self) -> bool:
        wait = self._state.person_wait_until
        return wait is not None and wait > workflow.now()

    def _first_time(self, key: str) -> bool:
        if key in self._state.seen_references:
            return False
        self._state.seen_references.append(key)
        return True

    def _task(self, task_id: str) -> ApprovalTask | None:
        return next((t for t in self._account.tasks if t.task_id == task_id), None)

    def _open_tasks(self, kind: ApprovalKind) -> list[ApprovalTask]:
        return [t for t in self._account.tasks if t.kind is kind]

    def _request_open(self, kind: ApprovalKind) -> bool:
        """A staff request of this kind is open, or being opened by a concurrent update."""
        return kind in self._opening or bool(self._open_tasks(kind))

    def _require_open(self) -> None:
        if self._finished():
            raise ApplicationError("the balance is closed", type=Rejection.BALANCE_CLOSED)

    def _places_with_agency(self, task: ApprovalTask) -> bool:
        if task.kind is ApprovalKind.AGENCY_REFERRAL:
            return True
        if task.kind is ApprovalKind.STEP and task.step_id:
            policy = self._input.policy
            step = next((s for s in policy.steps if s.id == task.step_id), None)
            return step is not None and (step.kind is StepKind.AGENCY_REFERRAL or step.is_eca)
        return False

    def _require_no_nsa_dispute(self) -> None:
        # No Surprises Act patient-provider dispute resolution (45 CFR 149.620): while the dispute
        # is open the bill must not go to collection.
        if protections.nsa_dispute_pending(self._account):
            raise ApplicationError(
                "No Surprises Act: no agency referral while a patient-provider dispute is pending",
                type=Rejection.NO_SURPRISES_DISPUTE,
            )

    def _require_not_time_barred(self) -> None:
        barred = protections.time_barred(
            self._input.policy, self._input.profile, self._state.opened_at, workflow.now()
        )
        if barred:
            raise ApplicationError(barred, type=Rejection.TIME_BARRED)

    def _require_referral_allowed(self) -> None:
        self._require_no_nsa_dispute()
        self._require_not_time_barred()
        if self._state.fa_application_pending:
            raise ApplicationError(
                "IRS 501(r): suspended while a financial-assistance application is pending",
                type=Rejection.ECA_501R,
            )
        earliest = rules.referral_earliest(self._input.policy, self._state)
        if earliest is not None and workflow.now() < earliest:
            when = (
                "after a final notice"
                if earliest.year == dt.MAXYEAR
                else earliest.date().isoformat()
            )
            raise ApplicationError(
                f"IRS 501(r): no referral before {when}", type=Rejection.ECA_501R
            )

    def _finished(self) -> bool:
        return bool(self._account.ended) or self._state.balance_cents <= 0

    def _final_state(self) -> BalanceState:
        ended = self._account.ended
        if ended:
            return {
                "placed": BalanceState.PLACED,
                LifeEventKind.BANKRUPTCY.value: BalanceState.STOPPED,
                LifeEventKind.DECEASED.value: BalanceState.DECEASED,
            }[ended]
        if self._account.settled:
            return BalanceState.SETTLED
        if self._account.written_off_cents:
            return BalanceState.WRITTEN_OFF
        return BalanceState.PAID

    def _balance_state(self) -> BalanceState:
        state, account = self._state, self._account
        if self._finished():
            return self._final_state()
        if account.contact_stopped:
            return BalanceState.CONTACT_STOPPED
        if self._open_tasks(ApprovalKind.STEP):
            return BalanceState.AWAITING_APPROVAL
        if account.hold is not None:
            return BalanceState.ON_HOLD
        if account.plan is not None:
            return BalanceState.ON_PLAN
        if account.settlement is not None:
            return BalanceState.SETTLEMENT_OFFERED
        if self._waiting_for.startswith(decisions.UNREACHABLE):
            return BalanceState.UNREACHABLE
        if state.next_index >= len(self._input.policy.steps):
            return BalanceState.LADDER_COMPLETE
        if state.balance_cents < self._input.policy.thresholds.minimum_balance:
            return BalanceState.BELOW_MINIMUM
        return BalanceState.ESCALATING

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._input.history_limit
        )


def _earliest(a: dt.datetime | None, b: dt.datetime | None) -> dt.datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


__all__ = ["WORKFLOW_NAME", "BalanceEscalationWorkflow"]
