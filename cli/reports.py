"""``dunning reports NAME [--csv]``: the console's reports from the live ledger, in a terminal.

(``reports``, plural: ``dunning report`` is taken by the facts one reports about an account.)
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, current_actor, fail, with_services
from config.roles import Permission
from services import reports
from services.context import Services


def register(app: typer.Typer) -> None:
    app.command(name="reports")(report)


def report(
    name: Annotated[str, typer.Argument(help="the report: " + ", ".join(reports.REPORTS))],
    csv: Annotated[bool, typer.Option("--csv", help="formula-safe CSV on standard output")] = False,
) -> None:
    """A report from the live ledger (the same as the console's), as a table or as CSV."""
    if name not in reports.REPORTS:
        fail(f"name: unknown report {name!r}; the reports are " + ", ".join(reports.REPORTS), 2)
    current_actor(Permission.READ)
    now = dt.datetime.now(dt.UTC)

    async def load(svc: Services) -> list[reports.AgingBucket]:
        return await svc.db(lambda s: reports.aging(s, now))

    rows = reports.aging_rows(with_services(load, temporal=False))
    if csv:
        sys.stdout.write(reports.to_csv(rows))
        return
    table = Table(*rows[0], title=f"aging of open balances, {now:%Y-%m-%d %H:%M} UTC")
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
