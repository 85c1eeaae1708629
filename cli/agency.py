"""``dunning recall``: take a placed account back from the collection agency.

A thin adapter over ``services.recall``: the user's roles must allow ``act``; the recall is
audited and written to the day's agency update file.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import console, current_actor, with_services
from config.roles import Permission
from models.money import format_cents
from services import recall as recall_service
from services.recall import RECALL_REASONS


def recall(
    account: Annotated[str, typer.Argument(help="account number")],
    reason: Annotated[
        str, typer.Option(help=f"why: {', '.join(sorted(RECALL_REASONS))}")
    ] = "staff",
) -> None:
    """Recall a placed account from the agency; the agency hears of it in the update file."""
    actor = current_actor(Permission.ACT)
    done = with_services(
        lambda svc: recall_service.recall(svc, actor, account, reason), temporal=False
    )
    console.print(
        f"{done.account_number} recalled from the agency (balance"
        f" {format_cents(done.balance_cents)}); update file {done.update_file}"
    )


def register(app: typer.Typer) -> None:
    app.command()(recall)
