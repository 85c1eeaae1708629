"""``dunning reconcile [--fix]``: the ledger against the workflows, printed and recorded."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, database, fail, settings
from models.money import format_cents
from services.reconcile import Reconciler
from starter import NotRunning, connect


def reconcile(
    fix: Annotated[
        bool, typer.Option("--fix", help="repair: re-signal balances, start missing workflows")
    ] = False,
) -> None:
    """Compare every open balance with its workflow (balance, state, existence); --fix repairs."""
    cfg = settings()

    async def go() -> int:
        try:
            client = await connect(cfg)
        except (NotRunning, RuntimeError) as exc:
            fail(f"cannot reach Temporal: {exc}")
        with database(cfg) as db:
            report = await Reconciler(db.session_factory, client, cfg).run(fix=fix)
        drifts = report.drifts or []
        console.print(
            f"checked {report.checked_accounts} open balances and "
            f"{report.checked_workflows} running workflows: {len(drifts)} drift(s)"
        )
        if drifts:
            table = Table("kind", "workflow", "ledger", "workflow balance", "repaired")
            for d in drifts:
                table.add_row(
                    d.kind,
                    d.workflow_id,
                    format_cents(d.ledger_cents) if d.ledger_cents is not None else "-",
                    format_cents(d.workflow_cents) if d.workflow_cents is not None else "-",
                    "yes" if d.repaired else ("no" if fix else "run with --fix"),
                )
            console.print(table)
        if report.refund_tasks:
            console.print(f"opened {report.refund_tasks} refund task(s) for accounts in credit")
        if report.pruned and report.pruned.total:
            console.print(
                f"pruned {report.pruned.signal_outbox} delivered outbox message(s) and "
                f"{report.pruned.webhook_events} webhook claim(s) older than "
                f"{cfg.ledger.retention_days} days"
            )
        return 1 if any(not d.repaired for d in drifts) else 0

    raise typer.Exit(asyncio.run(go()))


def register(app: typer.Typer) -> None:
    app.command()(reconcile)
