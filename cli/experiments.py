"""``dunning experiment check|start|status|stop|promote|guard``: champion and challenger
experiments (thin adapters over ``services.experiments.service``)."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import EXIT_INVALID, EXIT_REFUSED, console, current_actor, settings, with_services
from cli.policy import _show_plan
from config.roles import Permission
from models.experiment import Metric
from models.money import format_cents
from models.safe_csv import SafeDictWriter
from services import policy as policy_ops
from services.context import Services
from services.experiments import chart
from services.experiments import service as experiments
from services.experiments.service import ExperimentFileError, ExperimentReport, Promotion

app = typer.Typer(
    help="Champion and challenger experiments: try a policy on a share of new balances.",
    no_args_is_help=True,
)


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="experiment files (YAML)")]) -> None:
    """Validate experiment files: fields, shares, dates, and every arm's policy."""
    cfg = settings()
    bad = False
    for path in files:
        try:
            checked = experiments.check_file(path, cfg)
        except ExperimentFileError as exc:
            bad = True
            for error in exc.errors:
                typer.echo(str(error), err=True)
            continue
        arms = ", ".join(f"{a.name}={a.policy} {a.share}%" for a in checked.config.arms)
        typer.echo(f"{path}: ok ({checked.config.id}: {arms})")
    if bad:
        raise typer.Exit(EXIT_INVALID)


@app.command()
def start(file: Annotated[Path, typer.Argument(help="the experiment file (YAML)")]) -> None:
    """Start an experiment: eligible new balances get an arm from now on (billing lead)."""
    actor = current_actor(Permission.EXPERIMENT)

    async def go(svc: Services) -> experiments.ExperimentSummary:
        try:
            return await experiments.start(svc, actor, file)
        except ExperimentFileError as exc:
            for error in exc.errors:
                typer.echo(str(error), err=True)
            raise typer.Exit(EXIT_INVALID) from None

    summary = with_services(go, temporal=False)
    typer.echo(f"started {summary.key}: {summary.starts_on} to {summary.ends_on or 'open'}")
    for arm in summary.arms:
        typer.echo(f"  {arm.name:<16} {arm.policy}@{arm.policy_hash[:12]}  {arm.share_percent:g}%")


def _metric_text(metric: Metric, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if metric.is_share else f"${value:,.2f}"


def _show(report: ExperimentReport) -> None:
    e = report.experiment
    metric = report.primary_metric
    console.print(
        f"[bold]{e.key}[/bold] {e.status}  {e.starts_on} to {e.ends_on or 'open'}"
        f"  as of {report.as_of:%Y-%m-%d %H:%M} UTC  primary metric: {metric.value}",
        highlight=False,
    )
    for line in report.guard_stops:
        console.print(f"[red]guard stopped[/red] {line}", highlight=False)
    table = Table("", *[f"{a.name}\n{a.policy}" for a in report.arms])

    def row(label: str, values: list[str]) -> None:
        table.add_row(label, *values)

    arms = report.arms
    row("status", [a.status + (f" ({a.stop_reason})" if a.stop_reason else "") for a in arms])
    row("balances", [f"{a.balances:,}" for a in arms])
    row("entered with", [format_cents(a.balance_cents) for a in arms])
    row("collected so far", [format_cents(a.collected_cents) for a in arms])
    for days in (30, 60, 90):
        row(
            f"per balance, {days} days",
            [
                f"${getattr(a, f'collected_{days}d'):,.2f} (n={getattr(a, f'matured_{days}d')})"
                for a in arms
            ],
        )
    row(
        "paid in full, 90 days",
        [_metric_text(Metric.PAID_IN_FULL_90D, a.paid_in_full_90d) for a in arms],
    )
    row(
        "median days to payment",
        [
            f"{a.median_days_to_payment:.1f}" if a.median_days_to_payment is not None else "-"
            for a in arms
        ],
    )
    row("contacts per balance", [f"{a.contacts_per_balance:.2f}" for a in arms])
    row("cost per balance", [f"${a.cost_per_balance_cents / 100:,.2f}" for a in arms])
    row(
        "cost per $ collected",
        [f"${a.cost_per_dollar:.3f}" if a.cost_per_dollar is not None else "-" for a in arms],
    )
    for harm in arms[0].harms:
        row(
            harm.replace("_", "-"),
            [f"{a.harms[harm]} ({a.harm_rates[harm]:.1%})" for a in arms],
        )
    row("forecast (simulation)", [_metric_text(metric, a.forecast) for a in arms])
    console.print(table)
    for effect in report.effects:
        ci = (
            f"{_metric_text(metric, effect.ci_low)} to {_metric_text(metric, effect.ci_high)}"
            if effect.ci_low is not None and effect.ci_high is not None
            else "-"
        )
        welch = "-" if effect.p_welch is None else f"{effect.p_welch:.3g}"
        mw = "-" if effect.p_mann_whitney is None else f"{effect.p_mann_whitney:.3g}"
        console.print(
            f"{effect.challenger} - champion, {metric.value}: "
            f"{_metric_text(metric, effect.difference)}  {effect.confidence:.0%} CI {ci}"
            f"  Welch p={welch}  Mann-Whitney p={mw}"
            f"  (n={effect.n_challenger} vs {effect.n_champion})",
            highlight=False,
        )
        if effect.forecast_difference is not None:
            console.print(
                f"  the simulation forecast {_metric_text(metric, effect.forecast_difference)}",
                highlight=False,
            )
        if effect.required_per_challenger is not None:
            console.print(
                f"  to detect the stated effect: {effect.required_per_challenger:,} challenger"
                " balances",
                highlight=False,
            )
        if effect.warning:
            console.print(f"  [yellow]warning:[/yellow] {effect.warning}", highlight=False)
        elif effect.significant:
            console.print("  the interval excludes zero", highlight=False)


def _csv(report: ExperimentReport) -> str:
    out = io.StringIO()
    rows = [
        {
            "arm": a.name,
            "policy": a.policy,
            "status": a.status,
            "balances": a.balances,
            "collected_cents": a.collected_cents,
            "collected_30d": a.collected_30d,
            "collected_60d": a.collected_60d,
            "collected_90d": a.collected_90d,
            "matured_90d": a.matured_90d,
            "paid_in_full_90d": a.paid_in_full_90d,
            "median_days_to_payment": a.median_days_to_payment,
            "contacts": a.contacts,
            "cost_cents": a.cost_cents,
            **{f"{k}": v for k, v in a.harms.items()},
            "forecast": a.forecast,
        }
        for a in report.arms
    ]
    writer = SafeDictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@app.command()
def status(
    key: Annotated[str, typer.Argument(help="the experiment's id")],
    chart_file: Annotated[
        Path | None, typer.Option("--chart", help="write the chart here (.png or .svg)")
    ] = None,
    csv: Annotated[bool, typer.Option("--csv", help="per-arm figures as formula-safe CSV")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="the whole report as JSON")] = False,
    forecast: Annotated[
        bool, typer.Option("--forecast/--no-forecast", help="run the simulation's forecast")
    ] = True,
) -> None:
    """Outcomes per arm from the live ledger, effects with intervals, guards (which may stop a
    challenger) and the simulation's forecast."""
    actor = current_actor(Permission.READ)

    async def go(svc: Services) -> ExperimentReport:
        return await experiments.status(svc, actor, key, with_forecast=forecast)

    report = with_services(go, temporal=False)
    if json_out:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
    elif csv:
        sys.stdout.write(_csv(report))
    else:
        _show(report)
    if chart_file is not None:
        written = chart.write(report, chart_file)
        typer.echo(f"chart: {written}", err=json_out or csv)


@app.command()
def stop(
    key: Annotated[str, typer.Argument(help="the experiment's id")],
    reason: Annotated[str, typer.Option("--reason", help="why it stops (audited)")],
    arm: Annotated[str | None, typer.Option("--arm", help="stop this challenger only")] = None,
) -> None:
    """Stop assigning new balances (all, or to one challenger); assigned ones keep their arm."""
    actor = current_actor(Permission.EXPERIMENT)

    async def go(svc: Services) -> experiments.ExperimentSummary:
        return await experiments.stop(svc, actor, key, reason, arm)

    summary = with_services(go, temporal=False)
    what = f"arm {arm}" if arm else "experiment"
    typer.echo(f"{summary.key}: {what} stopped; status {summary.status}")


@app.command()
def promote(
    key: Annotated[str, typer.Argument(help="the experiment's id")],
    arm: Annotated[str, typer.Argument(help="the winning arm")],
    migrate: Annotated[
        bool,
        typer.Option(
            "--migrate/--no-migrate",
            help="offer to move the champion's running balances (preview first, as policy migrate)",
        ),
    ] = True,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask before migrating")] = False,
) -> None:
    """Make an arm's policy the default for new balances; offer to migrate the champion's."""
    actor = current_actor(Permission.EXPERIMENT)

    async def go(svc: Services) -> Promotion:
        promotion = await experiments.promote(svc, actor, key, arm)
        typer.echo(f"{key}: {arm} promoted; new balances now get {promotion.default_policy}")
        if not migrate or not promotion.champion_running:
            typer.echo(
                "champion balances still running on their policy:"
                f" {len(promotion.champion_running)}"
            )
            return promotion
        bundle = experiments.promoted_bundle(svc.settings, promotion)
        plans = await policy_ops.migration_plans(svc, actor, bundle, promotion.champion_running)
        target = f"{bundle.policy.name}@{bundle.hash[:12]}"
        for plan in plans:
            _show_plan(plan, target)
        movable = [p for p in plans if not p.problem]
        if not movable:
            typer.echo("no champion balance can move (see above)")
            return promotion
        question = f"Move {len(movable)} champion balance(s) to {target}?"
        if not yes and not await asyncio.to_thread(typer.confirm, question):
            typer.echo("not migrated; `dunning policy migrate` can move them later")
            return promotion
        outcomes = await policy_ops.migrate(svc, actor, bundle, movable)
        for outcome in outcomes:
            typer.echo(
                f"{outcome.account_number}: "
                + ("moved" if outcome.moved else f"not moved: {outcome.problem}")
            )
        if not all(o.moved for o in outcomes):
            raise typer.Exit(EXIT_REFUSED)
        return promotion

    with_services(go, temporal=migrate)


@app.command()
def guard() -> None:
    """One pass of every running experiment's guards (the worker runs one every 15 minutes)."""
    current_actor(Permission.READ)

    async def go(svc: Services) -> list[str]:
        return await asyncio.to_thread(experiments.guard_pass, svc.session_factory)

    stopped = with_services(go, temporal=False)
    for line in stopped:
        typer.echo(f"guard stopped {line}")
    if not stopped:
        typer.echo("no guard tripped")


@app.command(name="list")
def list_() -> None:
    """Every experiment, its status and arms."""
    current_actor(Permission.READ)

    async def go(svc: Services) -> list[experiments.ExperimentSummary]:
        return await experiments.list_experiments(svc)

    for e in with_services(go, temporal=False):
        arms = ", ".join(f"{a.name}={a.policy} {a.share_percent:g}% {a.status}" for a in e.arms)
        typer.echo(f"{e.key}  {e.status}  {e.starts_on}..{e.ends_on or ''}  {arms}")
