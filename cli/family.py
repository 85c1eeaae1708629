"""``dunning pay-family``: a payment against a family statement. Thin: parse, call
``services.family``, render."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import EXIT_INVALID, console, current_actor, fail, with_services
from config.roles import Permission
from models.money import format_cents, parse_cents
from services import family


def pay_family(
    account: Annotated[str, typer.Argument(help="any account number of the family")],
    amount: Annotated[str, typer.Argument(help="dollars, e.g. 120.00")],
    ref: Annotated[str, typer.Option("--ref", help="the payment's reference; repeats are ignored")],
    method: Annotated[str, typer.Option(help="card, cash, check, ...")] = "other",
) -> None:
    """Post a payment made against a family statement, spread over the guarantor's accounts."""
    try:
        cents = parse_cents(amount)
    except ValueError as exc:
        fail(f"amount: {exc}", EXIT_INVALID)
    actor = current_actor(Permission.ACT)
    posted = with_services(
        lambda svc: family.pay_family(svc, actor, account, cents, ref, method=method)
    )
    console.print(
        f"{format_cents(posted.amount_cents)} spread over {len(posted.parts)} account(s),"
        f" {posted.rule.replace('_', ' ')}:"
    )
    for part in posted.parts:
        state = "posted" if part.new else "already posted"
        console.print(
            f"  {part.account_number}: {format_cents(part.amount_cents)} {state};"
            f" balance {format_cents(part.balance_cents)}"
        )


def register(app: typer.Typer) -> None:
    app.command("pay-family")(pay_family)
