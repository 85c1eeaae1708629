"""``dunning policy``: the billing lead's tools for escalation policy files.

``preview`` and ``diff`` run :func:`workflows.decisions.timeline`, the very code the workflow runs
at each wake-up, and render messages with :mod:`activities.rendering` on synthetic data. ``migrate``
moves running balances to a new version after showing what changes for each of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from activities.rendering import (
    SAMPLE_RECIPIENT,
    Recipient,
    RenderError,
    StatementLine,
    check_templates,
    context,
    render,
)
from cli.common import console, err_console, fail
from config.loader import PolicyBundle, PolicyFileError, load_policy
from models.calendars import calendar_warnings
from models.money import format_cents, parse_cents
from models.payloads import (
    BalanceState,
    ChannelStatus,
    ContactProfile,
    LadderState,
    StatusView,
    StepOutcome,
)
from models.policy import Channel, Policy, Step
from workflows.decisions import TimelineEntry, calendar_day, resume_index, timeline, zone


def _out(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _err(text: str) -> None:
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


app = typer.Typer(
    help="Check, preview, compare and migrate escalation policies.", no_args_is_help=True
)

PolicyFile = Annotated[Path, typer.Argument(help="policy file (YAML) or shipped policy name")]


def _load(file: Path) -> PolicyBundle:
    try:
        bundle = load_policy(file)
    except PolicyFileError as exc:
        for error in exc.errors:
            _err(str(error))
        raise typer.Exit(1) from exc
    errors = check_templates(bundle)
    if errors:
        for error in errors:
            _err(str(error))
        raise typer.Exit(1)
    return bundle


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="policy files (YAML)")]) -> None:
    """Validate policy files; exit non-zero naming the file, line and field of every error.

    Besides the schema and the legal rules, every template is rendered with synthetic data in
    every tone, so that an SMS or call script showing more than the minimum necessary fails here.
    """
    failed = False
    for file in files:
        try:
            bundle = load_policy(file)
        except PolicyFileError as exc:
            failed = True
            for error in exc.errors:
                _err(str(error))
            continue
        template_errors = check_templates(bundle)
        if template_errors:
            failed = True
            for error in template_errors:
                _err(str(error))
            continue
        _out(
            f"{file}: ok ({bundle.policy.name}, {len(bundle.policy.steps)} steps, "
            f"version {bundle.hash[:12]})",
        )
        for warning in calendar_warnings(bundle.policy.contact, dt.date.today()):
            _out(f"{file}: warning: {warning}")
    if failed:
        raise typer.Exit(1)


# -- preview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewOptions:
    """The synthetic balance a preview follows."""

    balance_cents: int
    first_statement: dt.datetime
    profile: ContactProfile
    opened_at: dt.datetime
    plan_active: bool = False


def _parse_when(value: str | None, policy: Policy, what: str) -> dt.datetime:
    """A date (at the policy's send time in the practice's zone) or an ISO 8601 date-time."""
    tz = zone(policy.contact.practice_time_zone)
    if value is None:
        today = dt.datetime.now(tz).date()
        return dt.datetime.combine(today, policy.contact.send_time, tzinfo=tz).astimezone(dt.UTC)
    try:
        if "T" in value or " " in value.strip():
            moment = dt.datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=tz)
            return moment.astimezone(dt.UTC)
        day = dt.date.fromisoformat(value)
    except ValueError:
        fail(f"{what}: expected a date such as 2026-11-02 or a date-time, got {value!r}")
    return dt.datetime.combine(day, policy.contact.send_time, tzinfo=tz).astimezone(dt.UTC)


def _profile(
    policy: Policy, tz: str | None, language: str, unreachable: list[Channel], sms_consent: bool
) -> ContactProfile:
    name = tz or policy.contact.default_patient_time_zone
    try:
        zone(name)
    except Exception:  # zoneinfo raises several kinds for a bad name
        fail(f"--tz: unknown time zone {name!r}; use an IANA name such as America/Chicago")
    channels = {
        c: ChannelStatus(reachable=c not in unreachable, reason="returned or bounced")
        if c in unreachable
        else ChannelStatus(reachable=True)
        for c in Channel
    }
    if not sms_consent:
        channels[Channel.SMS] = ChannelStatus(
            reachable=Channel.SMS not in unreachable, consent=False, reason="no recorded consent"
        )
    return ContactProfile(time_zone=name, language=language, channels=channels)


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
) -> list[dict[str, Any]]:
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
) -> dict[str, Any]:
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
        try:
            rendered = render(
                bundle, step.template, options.profile.language, entry.channel, variables
            )
        except RenderError as exc:
            fail(str(exc))
        subject, message = rendered.subject, rendered.body
    return {
        "step": None if entry.written_off else step.id,
        "index": entry.index,
        "outcome": outcome,
        "date": local.date().isoformat(),
        "local_time": local.isoformat(timespec="minutes"),
        "utc": entry.at.astimezone(dt.UTC).isoformat(timespec="minutes"),
        "day": calendar_day(bundle.policy, options.first_statement, entry.at),
        "channel": entry.channel.value if entry.channel else None,
        "template": None if entry.written_off else step.template,
        "tone": step.tone.value,
        "kind": step.kind.value,
        "subject": subject,
        "message": message,
        "reasons": reasons,
    }


@app.command()
def preview(
    file: PolicyFile,
    balance: Annotated[str, typer.Option("--balance", help="dollars, e.g. 125.00")],
    first_statement: Annotated[
        str | None,
        typer.Option("--first-statement", help="date (YYYY-MM-DD) or ISO date-time; default today"),
    ] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="the patient's IANA time zone")] = None,
    language: Annotated[str, typer.Option("--language", help="the patient's language")] = "en",
    opened: Annotated[
        str | None,
        typer.Option("--opened", help="date of the oldest charge; default the first statement"),
    ] = None,
    unreachable: Annotated[
        list[Channel] | None,
        typer.Option("--unreachable", help="a channel that cannot be used (returned mail, ...)"),
    ] = None,
    no_sms_consent: Annotated[
        bool, typer.Option("--no-sms-consent", help="the patient has not agreed to texts")
    ] = False,
    plan_active: Annotated[bool, typer.Option("--plan-active", help="on a payment plan")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Print the full timeline of a balance that never pays: dates, channels, messages, reasons."""
    bundle = _load(file)
    options = _options(
        bundle.policy,
        balance,
        first_statement,
        tz,
        language,
        opened,
        unreachable or [],
        no_sms_consent,
        plan_active,
    )
    objects = preview_entries(bundle, options)
    if as_json:
        print(json.dumps(objects, indent=2, ensure_ascii=False))
        return
    policy = bundle.policy
    _out(
        f"{policy.name}@{bundle.hash[:12]}: balance {format_cents(options.balance_cents)}, first"
        f" statement {options.first_statement.astimezone(zone(options.profile.time_zone))}"
        f" ({options.profile.time_zone})",
    )
    for obj in objects:
        head = (
            f"day {obj['day']:>4}  {obj['local_time']}  {obj['step'] or 'write-off':<22}"
            f" {obj['outcome']:<11} {obj['channel'] or '-'}"
        )
        _out(head)
        for reason in obj["reasons"]:
            _out(f"      why: {reason}")
        if obj["subject"]:
            _out(f"      subject: {obj['subject']}")
        if obj["message"]:
            for line in obj["message"].rstrip("\n").splitlines():
                _out(f"      | {line}")


def _options(
    policy: Policy,
    balance: str,
    first_statement: str | None,
    tz: str | None,
    language: str,
    opened: str | None,
    unreachable: list[Channel],
    no_sms_consent: bool,
    plan_active: bool,
) -> PreviewOptions:
    try:
        cents = parse_cents(balance)
    except ValueError as exc:
        fail(f"--balance: {exc}")
    first = _parse_when(first_statement, policy, "--first-statement")
    opened_at = _parse_when(opened, policy, "--opened") if opened else first
    if language not in policy.languages:
        fail(f"--language: policy {policy.name} has {', '.join(policy.languages)}, not {language}")
    profile = _profile(policy, tz, language, unreachable, not no_sms_consent)
    return PreviewOptions(cents, first, profile, opened_at, plan_active)


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


def timeline_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step id: what it was and what it becomes (added, removed, changed, unchanged)."""

    def key(obj: dict[str, Any]) -> str:
        return str(obj["step"] or "write-off")

    before = {key(o): o for o in old}
    after = {key(o): o for o in new}
    order = [key(o) for o in new] + [key(o) for o in old if key(o) not in after]
    fields = ("outcome", "local_time", "channel", "template", "subject", "message")
    rows: list[dict[str, Any]] = []
    for step in order:
        o, n = before.get(step), after.get(step)
        if o is None:
            change = "added"
        elif n is None:
            change = "removed"
        else:
            changed = [f for f in fields if o.get(f) != n.get(f)]
            change = "changed: " + ", ".join(changed) if changed else "unchanged"
        rows.append({"step": step, "change": change, "old": o, "new": n})
    return rows


@app.command()
def diff(
    old: PolicyFile,
    new: PolicyFile,
    balance: Annotated[str, typer.Option("--balance", help="dollars")] = "100.00",
    first_statement: Annotated[str | None, typer.Option("--first-statement")] = None,
    tz: Annotated[str | None, typer.Option("--tz")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show what changes between two versions of a policy, and for a balance's timeline."""
    a, b = _load(old), _load(new)
    language = a.policy.languages[0]
    options = _options(b.policy, balance, first_statement, tz, language, None, [], False, False)
    changes = policy_changes(a, b)
    rows = timeline_changes(preview_entries(a, options), preview_entries(b, options))
    if as_json:
        print(
            json.dumps(
                {
                    "old": {"name": a.policy.name, "hash": a.hash},
                    "new": {"name": b.policy.name, "hash": b.hash},
                    "changes": changes,
                    "timeline": rows,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    say = _out
    if a.hash == b.hash:
        say(f"{old} and {new}: the same version ({a.hash[:12]})")
        return
    say(f"{a.policy.name}@{a.hash[:12]} -> {b.policy.name}@{b.hash[:12]}")
    for change in changes:
        say(f"  {change}")
    say(f"for a balance of {format_cents(options.balance_cents)}:")
    for row in rows:
        say(f"  {row['step']:<24} {row['change']}")
        for label in ("old", "new"):
            obj = row[label]
            if obj is not None and row["change"] != "unchanged":
                say(
                    f"      {label}: {obj['outcome']} {obj['local_time']} {obj['channel'] or '-'}"
                    + (f" ({'; '.join(obj['reasons'])})" if obj["reasons"] else ""),
                )


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


@app.command()
def migrate(
    new_file: Annotated[Path, typer.Argument(help="the new policy version (YAML)")],
    account: Annotated[
        list[str] | None, typer.Option("--account", help="account number; repeat for several")
    ] = None,
    all_on: Annotated[
        str | None, typer.Option("--all-on", help="every open balance on this policy name")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before migrating")] = False,
    requested_by: Annotated[str, typer.Option("--requested-by")] = "billing-lead",
) -> None:
    """Move running balances to a new policy version, after showing what changes for each."""
    bundle = _load(new_file)
    if not account and not all_on:
        fail("name the balances to move: --account NUMBER (repeatable) or --all-on POLICY")
    asyncio.run(_migrate(bundle, account or [], all_on, yes, requested_by))


async def _migrate(
    bundle: PolicyBundle, numbers: list[str], all_on: str | None, yes: bool, requested_by: str
) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    import starter
    from cli.common import database, settings
    from models.orm import Account, AccountStatus, AuditEvent, Guarantor
    from models.orm import repositories as repo
    from models.payloads import PolicyMigration

    cfg = settings()
    with database(cfg) as db:
        with db.session_factory() as session:
            query = select(Account).options(
                selectinload(Account.guarantor).selectinload(Guarantor.channels)
            )
            if all_on:
                query = query.where(
                    Account.policy_name == all_on, Account.status == AccountStatus.OPEN
                )
                found = list(session.scalars(query))
            else:
                found = []
            for number in numbers:
                account = session.scalars(
                    query.where(Account.account_number == number)
                ).one_or_none()
                if account is None:
                    fail(f"--account: no account {number!r}")
                found.append(account)
            targets = {
                a.account_number: (
                    str(a.id),
                    repo.contact_profile(a.guarantor, bundle.policy.contact.sms_requires_consent),
                    a.opened_at,
                )
                for a in found
            }
        if not targets:
            fail(f"no open balance on policy {all_on!r}")
        try:
            client = await starter.connect(cfg)
        except starter.NotRunning as exc:
            fail(str(exc))
        except RuntimeError as exc:
            fail(f"cannot reach Temporal: {exc}")
        now = dt.datetime.now(dt.UTC)
        plans: list[MigrationPlan] = []
        for number, (account_id, profile, opened_at) in sorted(targets.items()):
            try:
                status = await starter.get_status(client, account_id)
            except RPCError as exc:
                _err(f"{number}: no running workflow ({exc})")
                continue
            plans.append(
                plan_migration(bundle, number, account_id, status, profile, opened_at, now)
            )
        target = f"{bundle.policy.name}@{bundle.hash[:12]}"
        for plan in plans:
            _show_plan(plan, target)
        movable = [p for p in plans if not p.problem]
        if not movable:
            fail("nothing to migrate")
        if not yes and not typer.confirm(f"Move {len(movable)} balance(s) to {target}?"):
            raise typer.Exit(1)
        with db.session_factory.begin() as session:
            repo.store_policy_version(session, bundle)
        failed = 0
        migration = PolicyMigration(
            policy=bundle.policy, policy_hash=bundle.hash, requested_by=requested_by
        )
        for plan in movable:
            try:
                ref = await starter.migrate_policy(client, plan.account_id, migration)
            except (WorkflowUpdateFailedError, RPCError) as exc:
                failed += 1
                cause = getattr(exc, "cause", None)
                _err(f"{plan.account_number}: not moved: {cause or exc}")
                continue
            with db.session_factory.begin() as session:
                account = session.scalars(
                    select(Account).where(Account.account_number == plan.account_number)
                ).one()
                account.policy_name = ref.name
                session.add(
                    AuditEvent(
                        actor=requested_by[:64],
                        action="policy_migrated",
                        account_id=account.id,
                        detail={
                            "from": plan.old_ref,
                            "to": f"{ref.name}@{ref.hash}",
                            "resumes_at": plan.resume_at,
                        },
                    )
                )
            _out(
                f"{plan.account_number}: moved to {ref.name}@{ref.hash[:12]}",
            )
    if failed:
        raise typer.Exit(1)


def _show_plan(plan: MigrationPlan, target: str) -> None:
    say = _out
    say(
        f"{plan.account_number}  balance {format_cents(plan.balance_cents)}  {plan.old_ref}"
        f" -> {target}",
    )
    if plan.problem:
        say(f"  not moved: {plan.problem}")
        return
    say(f"  next on the current version: {plan.old_next}")
    say(f"  resumes on the new version at: {plan.resume_at}")
    for entry in plan.new_steps:
        what = entry.waiting_for or "; ".join(entry.reasons)
        say(
            f"    {entry.at.isoformat(timespec='minutes')}  {entry.step.id:<22}"
            f" {'written off' if entry.written_off else entry.outcome.value:<8}"
            f" {entry.channel.value if entry.channel else '-'}" + (f"  ({what})" if what else ""),
        )
