"""``dunning protections ...``: patients' protections (issue 18). Thin: parse, call
``services.protections``, render; the acting user comes from ``cli.common.current_actor()``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from cli.common import console, current_actor, database, fail, run_async, settings
from config.roles import Permission
from models.money import format_cents
from models.orm import repositories as repo
from models.orm.protections import ConsentPurpose, RestrictionKind
from models.policy import Channel
from models.protections import parse_phone_kind
from services import protections
from services.agency import export_dir
from services.protections import AddressIn, PrivacyChange
from starter import ActionRejected, NotRunning, connect

app = typer.Typer(
    help="Patients' protections: assistance, privacy requests, flags for review.",
    no_args_is_help=True,
)

T = TypeVar("T")
AccountArg = Annotated[str, typer.Argument(help="account number")]


def _date(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"{field}: {text!r} is not a date (YYYY-MM-DD)")


async def _client() -> Client | None:
    try:
        return await connect(settings())
    except NotRunning:
        return None


def _with_workflow(action: Callable[[sessionmaker[Session], Client | None], Awaitable[T]]) -> T:
    cfg = settings()

    async def go() -> T:
        with database(cfg) as db:
            client = await _client()
            try:
                return await action(db.session_factory, client)
            except ActionRejected as exc:
                fail(f"refused ({exc.kind}): {exc}")
            except (LookupError, ValueError) as exc:
                fail(str(exc.args[0]) if exc.args else str(exc))

    return run_async(go)


def _privacy(change_of: Callable[[Session], PrivacyChange]) -> PrivacyChange:
    async def action(factory: sessionmaker[Session], client: Client | None) -> PrivacyChange:
        with factory.begin() as session:
            change = change_of(session)
        await protections.notify_privacy_change(client, change)
        return change

    return _with_workflow(action)


@app.command("flags")
def flags(account: AccountArg) -> None:
    """Open flags and tasks of an account: NSA dispute-eligible, time-barred, refund due, ..."""
    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        found = repo.account_by_number(session, account)
        if found is None:
            fail(f"account: no account {account!r}")
        table = Table("kind", "reference", "amount", "due", "opened")
        for row in protections.open_flags(session, found):
            amount = "" if row.amount_cents is None else format_cents(row.amount_cents)
            table.add_row(
                row.kind,
                row.reference,
                amount,
                row.due_on.isoformat() if row.due_on else "",
                row.created_at.date().isoformat(),
            )
        console.print(table)


@app.command("scan")
def scan(
    today: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default today")] = None,
) -> None:
    """Flag accounts for review: patients who turned 18, debts past the statute of limitations."""
    day = _date("today", today) if today else dt.date.today()
    cfg = settings()
    with database(cfg) as db, db.session_factory.begin() as session:
        adults = protections.flag_patients_reaching_majority(session, day)
        barred = protections.flag_time_barred(session, day)
    console.print(f"{adults} patient(s) reached 18; {barred} account(s) time-barred")


@app.command("assistance")
def assistance(
    account: AccountArg,
    percent: Annotated[int, typer.Option(help="the discount granted, 100 for free care")],
    program: Annotated[str, typer.Option(help="the assistance program")] = "financial-assistance",
) -> None:
    """Approve a financial-assistance application: recompute what is owed from the visits, open a
    refund task for payments above it ($5 or more), and recall a placed account from the agency."""
    actor = current_actor(Permission.ACT)

    async def action(factory: sessionmaker[Session], client: Client | None) -> None:
        outcome = await protections.approve_financial_assistance(
            factory, client, actor, account, percent, program, agency_dir=export_dir(settings())
        )
        console.print(
            f"owed after assistance {format_cents(outcome.responsibility_cents)}; paid"
            f" {format_cents(outcome.paid_cents)}; written off"
            f" {format_cents(outcome.write_off_cents)}; refund due"
            f" {format_cents(outcome.refund_cents)}"
            + ("; recalled from the agency" if outcome.recall else "")
        )

    _with_workflow(action)


@app.command("assistance-incomplete")
def assistance_incomplete(
    account: AccountArg,
    missing: Annotated[list[str], typer.Option(help="what is missing (repeat)")],
    deadline: Annotated[str, typer.Option(help="YYYY-MM-DD")],
) -> None:
    """An incomplete application: send the missing-information letter with its deadline and keep
    extraordinary collection actions suspended until then."""
    actor = current_actor(Permission.ACT)
    day = _date("deadline", deadline)

    async def action(factory: sessionmaker[Session], client: Client | None) -> None:
        await protections.financial_assistance_incomplete(
            factory, client, actor, account, missing, day
        )
        console.print(f"missing-information letter queued; actions suspended until {day}")

    _with_workflow(action)


@app.command("restrict")
def restrict(
    account: AccountArg,
    kind: Annotated[RestrictionKind, typer.Option(help="the patient's request")],
    this_account_only: Annotated[bool, typer.Option(help="only this account")] = False,
) -> None:
    """Record a channel restriction the patient asked for ("mail only", "no calls", ...)."""
    actor = current_actor(Permission.ACT)
    change = _privacy(
        lambda s: protections.restrict_channels(
            s, actor, account, kind, all_accounts=not this_account_only
        )
    )
    console.print(f"{kind.value} recorded; {len(change.events)} channel(s) changed")


@app.command("lift")
def lift(
    account: AccountArg,
    kind: Annotated[RestrictionKind, typer.Option(help="the restriction to lift")],
) -> None:
    """Lift a channel restriction; a channel the patient opted out of, or never consented to,
    stays closed."""
    actor = current_actor(Permission.ACT)
    _privacy(lambda s: protections.lift_restriction(s, actor, account, kind))
    console.print(f"{kind.value} lifted")


@app.command("phone-kind")
def phone_kind_command(
    account: AccountArg,
    kind: Annotated[str, typer.Option(help="mobile, home or work (unknown: read as work)")],
) -> None:
    """Record what kind of line the guarantor's number is: under "no calls at work" a work
    number (or one of unknown kind) gets no calls or texts."""
    try:
        parsed = parse_phone_kind(kind)
    except ValueError as exc:
        fail(f"kind: {exc}")
    actor = current_actor(Permission.ACT)
    change = _privacy(lambda s: protections.set_phone_kind(s, actor, account, parsed))
    console.print(
        f"phone kind {parsed.value or 'unknown'} recorded; {len(change.events)} channel(s) changed"
    )


@app.command("confidential-address")
def confidential_address(
    account: AccountArg,
    line1: Annotated[str, typer.Option(help="street")],
    city: Annotated[str, typer.Option()],
    state: Annotated[str, typer.Option(help="two letters")],
    zip_code: Annotated[str, typer.Option("--zip", help="ZIP code")],
    line2: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Confidential communications: letters to this address only, no email, text or call."""
    if len(state) != 2 or not state.isalpha():
        fail("state: two letters, e.g. MN")
    if not zip_code.replace("-", "").isdigit():
        fail("zip: a US ZIP code, e.g. 55401")
    actor = current_actor(Permission.ACT)
    address = AddressIn(line1, city, state.upper(), zip_code, line2)
    _privacy(lambda s: protections.set_confidential_address(s, actor, account, address))
    console.print("confidential address recorded; letters only, to that address")


@app.command("consent")
def consent(
    account: AccountArg,
    channel: Annotated[Channel, typer.Option()],
    purpose: Annotated[ConsentPurpose, typer.Option()],
    source: Annotated[str, typer.Option(help="where it came from: form, call, portal ...")],
) -> None:
    """Record a consent with its purpose and source (billing texts need billing consent)."""
    actor = current_actor(Permission.ACT)
    _privacy(lambda s: protections.record_consent(s, actor, account, channel, purpose, source))
    console.print(f"{purpose.value} consent for {channel.value} recorded")


@app.command("revoke-consent")
def revoke_consent(
    account: AccountArg,
    channel: Annotated[Channel, typer.Option()],
    purpose: Annotated[ConsentPurpose, typer.Option()],
) -> None:
    """Record that a consent was revoked."""
    actor = current_actor(Permission.ACT)
    _privacy(lambda s: protections.revoke_consent(s, actor, account, channel, purpose))
    console.print(f"{purpose.value} consent for {channel.value} revoked")
