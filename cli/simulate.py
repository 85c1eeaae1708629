"""``dunning simulate``: run a policy over a whole portfolio in-process; compare two policies."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import console, fail
from config.loader import PolicyBundle, PolicyFileError, load_policy
from models.imports import CsvImportError
from models.policy import Policy
from simulation import report
from simulation.portfolio import from_csv
from simulation.response import ResponseModel
from simulation.runner import Job, Portfolio, default_workers, run
from workflows.decisions import zone


def start_moment(text: str | None, policy: Policy) -> dt.datetime:
    """``--start``: a date (09:00 at the practice) or a date and time there; default today 09:00."""
    tz = zone(policy.contact.practice_time_zone)
    if not text:
        day = dt.datetime.now(tz).date()
        return dt.datetime.combine(day, dt.time(9), tzinfo=tz).astimezone(dt.UTC)
    parsed = dt.datetime.fromisoformat(text)
    if len(text) <= 10:
        parsed = parsed.replace(hour=9)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(dt.UTC)


def _load(name: str) -> PolicyBundle:
    try:
        return load_policy(name)
    except PolicyFileError as exc:
        fail(f"policy {name}:\n{exc}")


def simulate(
    policy: Annotated[str, typer.Argument(help="policy name (config/policies) or YAML file")],
    balances: Annotated[
        Path | None,
        typer.Option(
            "--balances",
            exists=True,
            dir_okay=False,
            help="a balances CSV, as `import balances` reads",
        ),
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option(
            "--synthetic", min=1, help="a synthetic portfolio of N balances instead of a CSV"
        ),
    ] = None,
    response_model: Annotated[
        Path | None,
        typer.Option(
            "--response-model", exists=True, dir_okay=False, help="YAML; see docs for the defaults"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed: same seed, same result")] = 0,
    compare: Annotated[
        str | None,
        typer.Option(
            "--compare", help="a second policy, run over the same portfolio with the same luck"
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="when the portfolio is imported: YYYY-MM-DD[THH:MM], practice time; default today"
        ),
    ] = None,
    horizon_days: Annotated[int, typer.Option(min=1, max=3650, help="days simulated")] = 365,
    chart: Annotated[Path, typer.Option(help="PNG written here")] = Path("simulation.png"),
    json_out: Annotated[Path | None, typer.Option("--json", help="totals as JSON")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="processes; default: one per core")
    ] = None,
) -> None:
    """Simulate a policy over a portfolio: what is sent, when, at what cost, what comes in."""
    if (balances is None) == (synthetic is None):
        fail("give exactly one of --balances FILE.csv and --synthetic N")
    bundles = [_load(policy)] + ([_load(compare)] if compare else [])
    try:
        response = ResponseModel.load(response_model)
    except (ValidationError, ValueError, OSError) as exc:
        fail(f"response model {response_model}: {exc}")
    first = bundles[0].policy
    begin = start_moment(start, first)
    if balances is not None:
        try:
            portfolio = Portfolio(start=begin, balances=from_csv(balances, first, begin))
        except CsvImportError as exc:
            fail(f"{balances}: {exc}")
    else:
        portfolio = Portfolio(start=begin, synthetic=synthetic or 0, seed=seed)
    total = len(portfolio)
    procs = workers or default_workers(total)
    summaries = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        for bundle in bundles:
            task = bar.add_task(f"simulating {bundle.policy.name}", total=total)
            job = Job(bundle.policy, bundle.policy.name, portfolio, response, seed, horizon_days)
            summaries.append(run(job, workers=procs, progress=lambda n, t=task: bar.advance(t, n)))  # type: ignore[misc]
    console.print(report.summary_table(summaries, response))
    for summary in summaries:
        console.print(report.steps_table(summary))
    console.print(f"chart: {report.chart(summaries, chart)}")
    if json_out is not None:
        json_out.write_text(json.dumps([s.to_dict(response) for s in summaries], indent=2))
        console.print(f"totals: {json_out}")
