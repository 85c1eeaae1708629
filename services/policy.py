"""Policy operations, each owned once: preview, diff and migration of running balances.

``preview`` and ``diff`` run :func:`workflows.decisions.timeline`, the very code the workflow runs
at each wake-up, and render messages with :mod:`activities.rendering` on synthetic data; they
answer with typed objects the CLI (or any later UI) renders. ``migrate`` moves running balances to
a new version by the workflow's typed ``migrate_policy`` update, audited per balance.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload
from temporalio.service import RPCError

import starter
from activities.rendering import (
    SAMPLE_RECIPIENT,
    Recipient,
    StatementLine,
    context,
    render,
)
from config.loader import PolicyBundle
from models.orm import Account, AccountStatus, Guarantor
from models.orm import repositories as repo
from models.payloads import (
    BalanceState,
    ContactProfile,
    LadderState,
    PolicyMigration,
    StatusView,
    StepOutcome,
)
from models.policy import Policy, PolicyRef, Step
from services import audit
from services.audit import Outcome
from services.context import Services
from services.errors import Refused
from services.identity import Actor
from workflows.contract import Rejection
from workflows.decisions import (
    TimelineEntry,
    calendar_day,
    resume_index,
    timeline,
    window_note,
    zone,
)
from workflows.protections import residence_rule, send_time_content_problems
from workflows.state_rules import STATE_RULES, describe

# -- preview ---------------------------------------------------------------------------------


class PreviewEntry(BaseModel):
    """One step of a previewed timeline (JSON: the same keys ``dunning policy preview --json``)."""

    step: str | None
    index: int
    outcome: str
    date: str
    local_time: str
    utc: str
    day: int
    channel: str | None
    template: str | None
    tone: str
    kind: str
    subject: str | None
    message: str | None
    reasons: list[str]
    window: str = ""
    """Which locations set the allowed hours at this moment, and the window left."""


@dataclass(frozen=True)
class PreviewOptions:
    """The synthetic balance a preview follows."""

    balance_cents: int
    first_statement: dt.datetime
    profile: ContactProfile
    opened_at: dt.datetime
    plan_active: bool = False


def _recipient(balance_cents: int) -> Recipient:
    """Synthetic statement lines that add up to the previewed balance."""
    if balance_cents == sum(line.balance_cents for line in SAMPLE_RECIPIENT.lines):
        return SAMPLE_RECIPIENT
    line = StatementLine(dt.date(2026, 9, 14), "Office visit", max(balance_cents, 0), 0, 0, 0)
    return Recipient(
        SAMPLE_RECIPIENT.first_name,
        SAMPLE_RECIPIENT.last_name,
        SAMPLE_RECIPIENT.account_number,
        (line,),
    )


def _gate_reason(step: Step) -> str | None:
    gate = step.approval
    if gate is None:
        return None
    return (
        f"needs approval by {' or '.join(gate.approvers)} (assumed approved; waits up to"
        f" {gate.wait_days} days, then {gate.on_timeout.value})"
    )


def preview_entries(
    bundle: PolicyBundle, options: PreviewOptions, *, with_messages: bool = True
) -> list[PreviewEntry]:
    """The timeline of a balance that never pays, as JSON-ready objects, one per step."""
    policy = bundle.policy
    state = LadderState(
        balance_cents=options.balance_cents,
        opened_at=options.opened_at,
        plan_active=options.plan_active,
    )
    entries = timeline(
        policy, options.balance_cents, options.first_statement, options.profile, state=state
    )
    tz = zone(options.profile.time_zone)
    recipient = _recipient(options.balance_cents)
    return [_entry_object(bundle, e, tz, recipient, options, with_messages) for e in entries]


def _entry_object(
    bundle: PolicyBundle,
    entry: TimelineEntry,
    tz: dt.tzinfo,
    recipient: Recipient,
    options: PreviewOptions,
    with_messages: bool,
) -> PreviewEntry:
    local = entry.at.astimezone(tz)
    step = entry.step
    reasons = list(entry.reasons)
    if entry.waiting_for:
        outcome = "waiting"
        reasons.append(entry.waiting_for)
    elif entry.written_off:
        outcome = "written_off"
    else:
        outcome = entry.outcome.value
    gate = _gate_reason(step)
    if gate and outcome == "sent":
        reasons.append(gate)
    subject: str | None = None
    message: str | None = None
    if with_messages and entry.outcome is StepOutcome.SENT and entry.channel is not None:
        variables = context(
            bundle.policy, entry.channel, recipient, options.balance_cents, step.tone, local.date()
        )
        rendered = render(bundle, step.template, options.profile.language, entry.channel, variables)
        subject, message = rendered.subject, rendered.body
        # The send-time content check, for the previewed patient's states.
        services = tuple(line.description for line in recipient.lines)
        problems = send_time_content_problems(
            bundle.policy, options.profile, entry.channel, subject, message, services
        )
        if problems:
            outcome = StepOutcome.SUPPRESSED.value
            reasons += [f"{entry.channel.value}: not sent, {p}" for p in problems]
    return PreviewEntry(
        step=None if entry.written_off else step.id,
        index=entry.index,
        outcome=outcome,
        date=local.date().isoformat(),
        local_time=local.isoformat(timespec="minutes"),
        utc=entry.at.astimezone(dt.UTC).isoformat(timespec="minutes"),
        day=calendar_day(bundle.policy, options.first_statement, entry.at),
        channel=entry.channel.value if entry.channel else None,
        template=None if entry.written_off else step.template,
        tone=step.tone.value,
        kind=step.kind.value,
        subject=subject,
        message=message,
        reasons=reasons,
        window=window_note(bundle.policy, options.profile, entry.at),
    )


def preview_state_rules(policy: Policy, profile: ContactProfile) -> list[str]:
    """Which state rules a preview applied: the patient's state of residence and the policy's
    (service) state, the more protective of both (``workflows.state_rules``)."""
    states = [s for s in (profile.state, policy.state) if s is not None]
    if not states:
        return ["no state named: federal rules only"]
    named = ", ".join(
        f"{s} ({'residence' if s == profile.state else 'service state'})"
        + ("" if s in STATE_RULES else ": none in the table")
        for s in dict.fromkeys(states)
    )
    lines = describe(residence_rule(policy, profile))
    return [f"state rules of {named}"] + (lines or ["nothing beyond the federal rules"])


# -- diff ------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: value}


def policy_changes(old: PolicyBundle, new: PolicyBundle) -> list[str]:
    """What the lead changed, field by field; steps are matched by id."""
    changes: list[str] = []
    old_doc = old.policy.model_dump(mode="json", exclude={"steps"})
    new_doc = new.policy.model_dump(mode="json", exclude={"steps"})
    a, b = _flatten(old_doc), _flatten(new_doc)
    for key in sorted(a.keys() | b.keys()):
        if a.get(key) != b.get(key):
            changes.append(f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}")
    old_steps = {s.id: (i, s) for i, s in enumerate(old.policy.steps)}
    new_steps = {s.id: (i, s) for i, s in enumerate(new.policy.steps)}
    for step_id, (i, step) in old_steps.items():
        if step_id not in new_steps:
            changes.append(f"steps: {step_id} removed (was steps.{i}, day {step.day})")
    for step_id, (i, step) in new_steps.items():
        if step_id not in old_steps:
            changes.append(f"steps: {step_id} added (steps.{i}, day {step.day})")
            continue
        before = _flatten(old_steps[step_id][1].model_dump(mode="json"))
        after = _flatten(step.model_dump(mode="json"))
        for key in sorted(before.keys() | after.keys()):
            if before.get(key) != after.get(key):
                changes.append(
                    f"steps.{step_id}.{key}: {json.dumps(before.get(key))}"
                    f" -> {json.dumps(after.get(key))}"
                )
    for key in sorted(old.templates.keys() | new.templates.keys()):
        if key not in new.templates:
            changes.append(f"template {key}.j2: no longer used")
        elif key not in old.templates:
            changes.append(f"template {key}.j2: newly used")
        elif old.templates[key] != new.templates[key]:
            changes.append(f"template {key}.j2: text changed")
    return changes


class TimelineChange(BaseModel):
    step: str
    change: str = Field(description="added, removed, unchanged, or changed: <fields>")
    old: PreviewEntry | None
    new: PreviewEntry | None


class PolicyRefView(BaseModel):
    name: str
    hash: str


class PolicyDiff(BaseModel):
    """What the lead changed, and what changes for one balance's timeline."""

    old: PolicyRefView
    new: PolicyRefView
    changes: list[str]
    timeline: list[TimelineChange]


def diff(old: PolicyBundle, new: PolicyBundle, options: PreviewOptions) -> PolicyDiff:
    return PolicyDiff(
        old=PolicyRefView(name=old.policy.name, hash=old.hash),
        new=PolicyRefView(name=new.policy.name, hash=new.hash),
        changes=policy_changes(old, new),
        timeline=timeline_changes(preview_entries(old, options), preview_entries(new, options)),
    )


def timeline_changes(old: list[PreviewEntry], new: list[PreviewEntry]) -> list[TimelineChange]:
    """Per step id: what it was and what it becomes (added, removed, changed, unchanged)."""

    def key(obj: PreviewEntry) -> str:
        return str(obj.step or "write-off")

    before = {key(o): o for o in old}
    after = {key(o): o for o in new}
    order = [key(o) for o in new] + [key(o) for o in old if key(o) not in after]
    fields = ("outcome", "local_time", "channel", "template", "subject", "message")
    rows: list[TimelineChange] = []
    for step in order:
        o, n = before.get(step), after.get(step)
        if o is None:
            change = "added"
        elif n is None:
            change = "removed"
        else:
            changed = [f for f in fields if getattr(o, f) != getattr(n, f)]
            change = "changed: " + ", ".join(changed) if changed else "unchanged"
        rows.append(TimelineChange(step=step, change=change, old=o, new=n))
    return rows


# -- migrate ---------------------------------------------------------------------------------


@dataclass
class MigrationPlan:
    """What moving one running balance to the new version changes."""

    account_number: str
    account_id: str
    balance_cents: int
    old_ref: str
    old_next: str
    new_steps: list[TimelineEntry]
    resume_at: str
    problem: str = ""


def plan_migration(
    new: PolicyBundle,
    account_number: str,
    account_id: str,
    status: StatusView,
    profile: ContactProfile,
    opened_at: dt.datetime | None,
    now: dt.datetime,
) -> MigrationPlan:
    """From a balance's ``get_status`` view, where it resumes on ``new`` and what follows."""
    old_ref = f"{status.policy.name}@{status.policy.hash[:12]}"
    old_next = (
        f"{status.next_step.step_id} at {status.next_step.at.isoformat(timespec='minutes')}"
        if status.next_step
        else (status.waiting_for or "nothing")
    )
    # The first statement goes out when the balance enters the ladder: its moment is the anchor.
    anchor = min((r.at for r in status.history), default=now)
    state = LadderState(
        balance_cents=status.balance_cents,
        anchor_at=anchor,
        opened_at=opened_at,
        history=list(status.history),
        paid_cents=status.paid_cents,
    )
    index = resume_index(new.policy, state)
    state.next_index = index
    problem = ""
    if status.policy.hash == new.hash:
        problem = "already on this version"
    elif status.balance_cents <= 0:
        problem = "balance closed"
    elif status.state is BalanceState.AWAITING_APPROVAL:
        problem = "a step waits for approval; decide it first"
    steps = timeline(new.policy, status.balance_cents, anchor, profile, state=state, now=now)
    resume = new.policy.steps[index].id if index < len(new.policy.steps) else "(ladder complete)"
    return MigrationPlan(
        account_number, account_id, status.balance_cents, old_ref, old_next, steps, resume, problem
    )


class MigrationOutcome(BaseModel):
    account_number: str
    moved: bool
    policy: PolicyRefView | None = None
    problem: str = ""


async def migration_plans(
    svc: Services,
    actor: Actor,
    bundle: PolicyBundle,
    numbers: list[str],
    all_on: str | None = None,
) -> list[MigrationPlan]:
    """Where each named balance (or every open one on ``all_on``) resumes on ``bundle``.

    Raises:
        Refused: ACCOUNT_UNKNOWN for a number the ledger does not know; NO_WORKFLOW when no
            balance is named or open on the policy.
    """

    def load(
        session: Session,
    ) -> tuple[dict[str, tuple[str, ContactProfile, dt.datetime | None]], str | None]:
        query = select(Account).options(
            selectinload(Account.guarantor).selectinload(Guarantor.channels)
        )
        found = (
            list(
                session.scalars(
                    query.where(Account.policy_name == all_on, Account.status == AccountStatus.OPEN)
                )
            )
            if all_on
            else []
        )
        for number in numbers:
            account = session.scalars(query.where(Account.account_number == number)).one_or_none()
            if account is None:
                return {}, number
            found.append(account)
        return {
            a.account_number: (
                str(a.id),
                repo.contact_profile(a.guarantor, bundle.policy.contact.sms_requires_consent),
                a.opened_at,
            )
            for a in found
        }, None

    targets, unknown = await svc.db(load)
    if unknown is not None:
        raise Refused(Rejection.ACCOUNT_UNKNOWN, f"--account: no account {unknown!r}")
    if not targets:
        raise Refused(Rejection.NO_WORKFLOW, f"no open balance on policy {all_on!r}")
    client = svc.temporal
    now = dt.datetime.now(dt.UTC)
    plans: list[MigrationPlan] = []
    for number, (account_id, profile, opened_at) in sorted(targets.items()):
        try:
            status = await starter.get_status(client, account_id)
        except RPCError:
            plans.append(
                MigrationPlan(number, account_id, 0, "-", "-", [], "-", "no running workflow")
            )
            continue
        plans.append(plan_migration(bundle, number, account_id, status, profile, opened_at, now))
    return plans


async def migrate(
    svc: Services, actor: Actor, bundle: PolicyBundle, plans: list[MigrationPlan]
) -> list[MigrationOutcome]:
    """Move each movable balance to ``bundle`` (typed ``migrate_policy``); audit each one."""
    await svc.db(lambda s: repo.store_policy_version(s, bundle))
    migration = PolicyMigration(
        policy=bundle.policy, policy_hash=bundle.hash, requested_by=actor.id
    )
    outcomes: list[MigrationOutcome] = []
    for plan in plans:
        if plan.problem:
            continue
        try:
            ref = await starter.migrate_policy(svc.temporal, plan.account_id, migration)
        except starter.ActionRejected as exc:
            problem = f"{exc.kind.value}: {exc}"
        except RPCError as exc:
            problem = f"no running workflow ({exc.status.name if exc.status else 'error'})"
        else:
            problem = ""
        if problem:

            def refused(session: Session, p: MigrationPlan = plan, why: str = problem) -> None:
                audit.record(
                    session,
                    actor,
                    "policy_migrated",
                    _account_uuid(p.account_id),
                    Outcome.REFUSED,
                    {"to": f"{bundle.policy.name}@{bundle.hash}", "problem": why},
                )

            await svc.db(refused)
            outcomes.append(
                MigrationOutcome(account_number=plan.account_number, moved=False, problem=problem)
            )
            continue

        def moved(session: Session, p: MigrationPlan = plan, ref: PolicyRef = ref) -> None:
            account = session.get(Account, _account_uuid(p.account_id))
            assert account is not None
            account.policy_name = ref.name
            audit.record(
                session,
                actor,
                "policy_migrated",
                account.id,
                Outcome.DONE,
                {"from": p.old_ref, "to": f"{ref.name}@{ref.hash}", "resumes_at": p.resume_at},
            )

        await svc.db(moved)
        outcomes.append(
            MigrationOutcome(
                account_number=plan.account_number,
                moved=True,
                policy=PolicyRefView(name=ref.name, hash=ref.hash),
            )
        )
    return outcomes


def _account_uuid(account_id: str) -> uuid.UUID:
    return uuid.UUID(account_id)
