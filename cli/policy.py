"""``dunning policy``: the billing lead's tools for escalation policy files.

``preview`` and ``diff`` run :func:`workflows.decisions.timeline`, the very code the workflow runs
at each wake-up, and render messages with :mod:`activities.rendering` on synthetic data. ``migrate``
moves running balances to a new version after showing what changes for each of them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer

from activities.rendering import (
    RenderError,
    check_templates,
)
from cli.common import EXIT_REFUSED, console, current_actor, err_console, fail, with_services
from config.loader import PolicyBundle, PolicyFileError, load_policy
from config.roles import Permission
from models.money import format_cents, parse_cents
from models.payloads import (
    ChannelStatus,
    ContactProfile,
    PatientLocation,
)
from models.policy import Channel, Policy
from services import policy as policy_ops
from services.context import Services
from services.policy import (
    MigrationOutcome,
    MigrationPlan,
    PreviewOptions,
    preview_entries,
    preview_state_rules,
)
from services.policy import diff as policy_diff
from services.policy_library import check_file
from workflows.decisions import window_note, zone


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
        result = check_file(file)
        if result.bundle is None:
            failed = True
            for error in result.errors:
                _err(error)
            continue
        bundle = result.bundle
        _out(
            f"{file}: ok ({bundle.policy.name}, {len(bundle.policy.steps)} steps, "
            f"version {bundle.hash[:12]})",
        )
        for warning in result.warnings:
            _out(f"{file}: warning: {warning}")
    if failed:
        raise typer.Exit(1)


# -- preview ---------------------------------------------------------------------------------


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
            reachable=Channel.SMS not in unreachable,
            consent=False,
            reason="no recorded consent (TCPA)",
        )
    return ContactProfile(time_zone=name, language=language, channels=channels)


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
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="the patient's state of residence (two letters): its rules apply (caps, bans,"
            " wording, statute of limitations), the more protective of it and the policy's state",
        ),
    ] = None,
    also_tz: Annotated[
        list[str] | None,
        typer.Option(
            "--also-tz",
            help="another zone the patient may be in (the phone's area code, a second address);"
            " the allowed hours must hold in every one",
        ),
    ] = None,
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
        also_tz or [],
        state,
    )
    try:
        objects = preview_entries(bundle, options)
    except RenderError as exc:
        fail(str(exc))
    if as_json:
        print(
            json.dumps([o.model_dump(mode="json") for o in objects], indent=2, ensure_ascii=False)
        )
        return
    policy = bundle.policy
    _out(
        f"{policy.name}@{bundle.hash[:12]}: balance {format_cents(options.balance_cents)}, first"
        f" statement {options.first_statement.astimezone(zone(options.profile.time_zone))}"
        f" ({options.profile.time_zone})",
    )
    _out(window_note(policy, options.profile, options.first_statement))
    for line in preview_state_rules(policy, options.profile):
        _out(f"  {line}")
    for obj in objects:
        head = (
            f"day {obj.day:>4}  {obj.local_time}  {obj.step or 'write-off':<22}"
            f" {obj.outcome:<11} {obj.channel or '-'}"
        )
        _out(head)
        for reason in obj.reasons:
            _out(f"      why: {reason}")
        if obj.subject:
            _out(f"      subject: {obj.subject}")
        if obj.message:
            for line in obj.message.rstrip("\n").splitlines():
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
    also_tz: list[str] | None = None,
    state: str | None = None,
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
    if state is not None:
        if len(state) != 2 or not state.isalpha():
            fail(f"--state: two letters such as MN, got {state!r}")
        profile.state = state.upper()
    for name in also_tz or []:
        try:
            zone(name)
        except Exception:  # zoneinfo raises several kinds for a bad name
            fail(f"--also-tz: unknown time zone {name!r}; use an IANA name such as America/Chicago")
        profile.locations.append(PatientLocation(time_zone=name, source="other"))
    return PreviewOptions(cents, first, profile, opened_at, plan_active)


# -- diff ------------------------------------------------------------------------------------


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
    try:
        found = policy_diff(a, b, options)
    except RenderError as exc:
        fail(str(exc))
    if as_json:
        print(json.dumps(found.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    say = _out
    if a.hash == b.hash:
        say(f"{old} and {new}: the same version ({a.hash[:12]})")
        return
    say(f"{a.policy.name}@{a.hash[:12]} -> {b.policy.name}@{b.hash[:12]}")
    for change in found.changes:
        say(f"  {change}")
    say(f"for a balance of {format_cents(options.balance_cents)}:")
    for row in found.timeline:
        say(f"  {row.step:<24} {row.change}")
        for label, obj in (("old", row.old), ("new", row.new)):
            if obj is not None and row.change != "unchanged":
                say(
                    f"      {label}: {obj.outcome} {obj.local_time} {obj.channel or '-'}"
                    + (f" ({'; '.join(obj.reasons)})" if obj.reasons else ""),
                )


# -- migrate ---------------------------------------------------------------------------------


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
) -> None:
    """Move running balances to a new policy version, after showing what changes for each."""
    bundle = _load(new_file)
    if not account and not all_on:
        fail("name the balances to move: --account NUMBER (repeatable) or --all-on POLICY", 2)
    actor = current_actor(Permission.POLICY)

    async def go(svc: Services) -> list[MigrationOutcome]:
        plans = await policy_ops.migration_plans(svc, actor, bundle, account or [], all_on)
        target = f"{bundle.policy.name}@{bundle.hash[:12]}"
        for plan in plans:
            _show_plan(plan, target)
        movable = [p for p in plans if not p.problem]
        if not movable:
            fail("nothing to migrate", EXIT_REFUSED)
        question = f"Move {len(movable)} balance(s) to {target}?"
        if not yes and not await asyncio.to_thread(typer.confirm, question):
            raise typer.Exit(1)
        return await policy_ops.migrate(svc, actor, bundle, movable)

    outcomes = with_services(go)
    for outcome in outcomes:
        if outcome.moved and outcome.policy is not None:
            ref = f"{outcome.policy.name}@{outcome.policy.hash[:12]}"
            _out(f"{outcome.account_number}: moved to {ref}")
        else:
            _err(f"{outcome.account_number}: not moved: {outcome.problem}")
    if not all(o.moved for o in outcomes):
        raise typer.Exit(EXIT_REFUSED)


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
