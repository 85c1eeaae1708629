"""``dunning reports NAME [--csv]``: the console's reports from the live ledger, in a terminal.

``dunning report NAME`` works too for a report's name: ``report`` is the facts' group
(``dunning report bankruptcy ...``), and no fact kind is named like a report, so each report is
added to that group as one more command (a name in both would be refused at start-up).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, current_actor, fail, with_services
from config.roles import Permission
from services import reports
from services.context import Services

PolicyOpt = Annotated[
    str | None, typer.Option("--policy", help="only the accounts on this policy (its name)")
]
MonthsOpt = Annotated[int, typer.Option("--months", help="months shown by monthly reports")]
DaysOpt = Annotated[
    int, typer.Option("--days", help="the period of days in A/R and of the cost to collect")
]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="read the ledger as at this instant (ISO 8601; default now)"),
]
ResponsesOpt = Annotated[
    Path | None,
    typer.Option("--responses", help="response-model YAML with channel costs (cost-by-channel)"),
]
CsvOpt = Annotated[bool, typer.Option("--csv", help="formula-safe CSV on standard output")]


def register(app: typer.Typer) -> None:
    from cli.facts import report_app

    app.command(name="reports")(report)
    taken = {c.name for c in report_app.registered_commands}
    for name in reports.REPORTS:
        if name in taken:  # pragma: no cover - a guard for whoever adds a fact kind
            raise RuntimeError(f"`dunning report {name}` is both a fact and a report")
        report_app.command(name=name, help=f"{reports.TITLES[name]} (as `dunning reports {name}`)")(
            _named(name)
        )


def _named(name: str) -> Callable[..., None]:
    def one(
        csv: CsvOpt = False,
        policy: PolicyOpt = None,
        months: MonthsOpt = 6,
        days: DaysOpt = 90,
        as_of: AsOfOpt = None,
        responses: ResponsesOpt = None,
    ) -> None:
        report(name, csv, policy, months, days, as_of, responses)

    return one


def report(
    name: Annotated[str, typer.Argument(help="the report: " + ", ".join(reports.REPORTS))],
    csv: CsvOpt = False,
    policy: PolicyOpt = None,
    months: MonthsOpt = 6,
    days: DaysOpt = 90,
    as_of: AsOfOpt = None,
    responses: ResponsesOpt = None,
) -> None:
    """A report from the live ledger (the same as the console's), as a table or as CSV."""
    if name not in reports.REPORTS:
        fail(f"name: unknown report {name!r}; the reports are " + ", ".join(reports.REPORTS), 2)
    at = _instant(as_of)
    try:
        costs = reports.channel_costs(responses) if responses is not None else None
        options = reports.Options(at, months, days, policy, costs)
    except (OSError, ValueError) as exc:
        fail(str(exc), 2)
    who = current_actor(Permission.READ)

    async def load(svc: Services) -> reports.Report:
        if csv:
            return await svc.db(lambda s: reports.export(s, who, name, options, door="cli"))
        return await svc.db(lambda s: reports.build(s, name, options))

    result = with_services(load, temporal=False)
    if csv:
        sys.stdout.write(reports.to_csv(result.rows))
        return
    scope = f", policy {policy}" if policy else ""
    table = Table(*result.rows[0], title=f"{result.title}, {at:%Y-%m-%d %H:%M} UTC{scope}")
    for row in result.rows[1:]:
        table.add_row(*row)
    console.print(table)
    console.print(result.definition, highlight=False)


def _instant(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        at = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"--as-of: {value!r} is not an ISO 8601 date or instant", 2)
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
