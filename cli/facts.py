"""``dunning report``: the front door for facts staff learn of (life, legal, address, consent).

Thin adapters over ``services.facts``: parse, call, render. Each fact is written to PostgreSQL
first, audited with who reported it, then the balance's workflow reacts at once.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from pydantic import ValidationError

from cli.common import EXIT_INVALID, console, current_actor, fail, with_services
from config.roles import Permission
from models.policy import Channel
from services import facts
from services.facts import Address, AttorneyContact, ConsentSource, FactRecorded

report_app = typer.Typer(
    help="Report a fact about an account: bankruptcy, death, attorney, cease communication, "
    "returned mail, corrected address, email or phone, consent.",
    no_args_is_help=True,
)
AccountArg = Annotated[str, typer.Argument(help="account number")]


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``dunning`` application."""
    app.add_typer(report_app, name="report")


def _date(field: str, text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"{field}: {text!r} is not a date (YYYY-MM-DD)", EXIT_INVALID)


def _done(recorded: FactRecorded, effect: str) -> None:
    told = effect if recorded.workflow_told else "recorded (no workflow follows the balance)"
    console.print(f"{recorded.account_number}: {recorded.fact} {told}")
    if recorded.post_petition_account:
        console.print(
            f"post-petition visits moved to {recorded.post_petition_account},"
            " collected on their own"
        )


@report_app.command("bankruptcy")
def bankruptcy(
    account: AccountArg,
    filed: Annotated[str, typer.Option(help="filing date, YYYY-MM-DD")],
    chapter: Annotated[int, typer.Option(help="7, 9, 11, 12, 13 or 15")],
    case: Annotated[str | None, typer.Option(help="the court's case number")] = None,
) -> None:
    """A bankruptcy filing: the automatic stay stops collection of pre-petition visits at once;
    visits on or after the filing date move to a balance of their own."""
    actor = current_actor(Permission.ACT)
    filed_on = _date("filed", filed)
    assert filed_on is not None
    _done(
        with_services(
            lambda svc: facts.bankruptcy(
                svc, actor, account, filed_on=filed_on, chapter=chapter, case_number=case
            )
        ),
        "recorded: collection of pre-petition visits stopped",
    )


@report_app.command("death")
def death(
    account: AccountArg,
    on: Annotated[str | None, typer.Option(help="date of death, YYYY-MM-DD")] = None,
) -> None:
    """The guarantor died: contact ends; the account goes to the estate queue."""
    actor = current_actor(Permission.ACT)
    died_on = _date("on", on)
    _done(
        with_services(lambda svc: facts.death(svc, actor, account, died_on=died_on)),
        "recorded: contact ended, estate task opened",
    )


@report_app.command("attorney")
def attorney(
    account: AccountArg,
    name: Annotated[str, typer.Option(help="the attorney's name")],
    firm: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    address: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Attorney representation: contact only the attorney, never the patient again."""
    actor = current_actor(Permission.ACT)
    try:
        contact = AttorneyContact(name=name, firm=firm, phone=phone, email=email, address=address)
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{err['loc'][0]}: {err['msg']}", EXIT_INVALID)
    _done(
        with_services(lambda svc: facts.attorney(svc, actor, account, contact)),
        "recorded: the patient is contacted no more",
    )


@report_app.command("cease-communication")
def cease_communication(
    account: AccountArg,
    received: Annotated[str | None, typer.Option(help="date received, YYYY-MM-DD")] = None,
) -> None:
    """A written request to cease communication: the ladder stops (Reg F 1006.6(c)); a task
    for the one closing notice allowed opens in the worklist."""
    actor = current_actor(Permission.ACT)
    received_on = _date("received", received)
    _done(
        with_services(
            lambda svc: facts.cease_communication(svc, actor, account, received_on=received_on)
        ),
        "recorded: the ladder stopped; a closing-notice task opens in the worklist",
    )


@report_app.command("letter-returned")
def letter_returned(account: AccountArg) -> None:
    """The post office returned a letter: letters stop until the address is corrected."""
    actor = current_actor(Permission.ACT)
    _done(
        with_services(lambda svc: facts.letter_returned(svc, actor, account)),
        "recorded: letters paused",
    )


@report_app.command("address")
def address(
    account: AccountArg,
    line1: Annotated[str, typer.Option()],
    city: Annotated[str, typer.Option()],
    state: Annotated[str, typer.Option(help="two letters, e.g. NY")],
    postal_code: Annotated[str, typer.Option(help="ZIP or ZIP+4")],
    line2: Annotated[str | None, typer.Option()] = None,
) -> None:
    """A corrected postal address: stored, and letters may go again."""
    actor = current_actor(Permission.ACT)
    try:
        corrected = Address(
            line1=line1, line2=line2, city=city, state=state, postal_code=postal_code
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        fail(f"{err['loc'][0]}: {err['msg']}", EXIT_INVALID)
    _done(
        with_services(lambda svc: facts.address_corrected(svc, actor, account, corrected)),
        "recorded: letters may go again",
    )


@report_app.command("email")
def email(account: AccountArg, address: Annotated[str, typer.Argument()]) -> None:
    """A corrected email address: stored, and email may go again."""
    actor = current_actor(Permission.ACT)
    _done(
        with_services(lambda svc: facts.email_corrected(svc, actor, account, address)),
        "recorded: email may go again",
    )


@report_app.command("phone")
def phone(account: AccountArg, number: Annotated[str, typer.Argument()]) -> None:
    """A corrected phone number: stored; calls (and texts, with consent) may go again."""
    actor = current_actor(Permission.ACT)
    _done(
        with_services(lambda svc: facts.phone_corrected(svc, actor, account, number)),
        "recorded: calls and texts may go again",
    )


@report_app.command("consent")
def consent(
    account: AccountArg,
    channel: Annotated[Channel, typer.Option(help="sms, email, call or letter")],
    via: Annotated[ConsentSource, typer.Option(help="how the patient told you")],
    withdrawn: Annotated[
        bool, typer.Option("--withdrawn", help="consent withdrawn (default: given)")
    ] = False,
) -> None:
    """Consent given or withdrawn by phone, at the front desk or in writing: effective today."""
    actor = current_actor(Permission.ACT)
    _done(
        with_services(
            lambda svc: facts.consent(svc, actor, account, channel, given=not withdrawn, via=via)
        ),
        "recorded: effective now",
    )
