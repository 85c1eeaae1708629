"""Staff commands: the worklist, approvals, holds, plans, settlements, write-offs and referrals.

Thin adapters over ``services.staff`` and ``services.queries``: parse, call, render. Who acts is
the authenticated user (``cli.common.current_actor``), never a name typed on the command line;
the service picks the role among the user's roles that the task's approvers name.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import console, current_actor, database, fail, settings, with_services
from config.roles import Permission
from models.actions import ClosingPurpose, HoldReason, Installment
from models.money import format_cents, parse_cents
from models.payloads import CallResult, Decision
from services import facts, ids, queries, staff
from services.context import Services

AccountArg = Annotated[str, typer.Argument(help="account number")]
Note = Annotated[str, typer.Option(help="a note for the audit trail (kept in PostgreSQL only)")]


def _cents(field: str, text: str) -> int:
    try:
        cents = parse_cents(text)
    except ValueError as exc:
        fail(f"{field}: {exc}", 2)
    if cents <= 0:
        fail(f"{field}: must be more than zero", 2)
    return cents


def _date(field: str, text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"{field}: {text!r} is not a date (YYYY-MM-DD)", 2)


def register(app: typer.Typer) -> None:
    """Add the staff commands to the ``dunning`` application."""
    for command in (
        worklist,
        approve,
        deny,
        hold_cmd,
        resume_cmd,
        hardship,
        plan,
        settle,
        write_off,
        refer,
        closing_notice,
        call_outcome,
    ):
        app.command(name=command.__name__.removesuffix("_cmd").replace("_", "-"))(command)
    app.add_typer(letters_app, name="letters")


letters_app = typer.Typer(help="Letters for the printer or mail house.", no_args_is_help=True)


@letters_app.command("batch")
def letters_batch(
    day: Annotated[str | None, typer.Option(help="YYYY-MM-DD; default today")] = None,
    tz: Annotated[str, typer.Option(help="the practice's time zone")] = "America/New_York",
) -> None:
    """Gather a day's letters into one PDF and a manifest for the printer or mail house."""
    from zoneinfo import ZoneInfo

    from activities.letters import LetterError, build_print_batch

    cfg = settings()
    try:
        when = dt.date.fromisoformat(day) if day else dt.datetime.now(ZoneInfo(tz)).date()
    except ValueError:
        fail(f"day: {day!r} is not a date (YYYY-MM-DD)")
    with database(cfg) as db, db.session_factory() as session:
        try:
            batch = build_print_batch(session, when, ZoneInfo(tz), Path(cfg.data_dir) / "print")
        except LetterError as exc:
            fail(str(exc))
    console.print(f"{batch.letters} letters, {batch.pages} pages for {batch.day.isoformat()}:")
    if batch.dropped:
        console.print(
            f"  {batch.dropped} queued letter(s) dropped: the account was paid, closed, held or"
            " ended since (see the manifest)"
        )
    console.print(f"  {batch.pdf_path}\n  {batch.manifest_path}")


@letters_app.command("show")
def letters_show(
    communication: Annotated[
        str, typer.Argument(help="the letter's communication id, or a unique prefix of it")
    ],
    out: Annotated[Path, typer.Option(help="where to write the PDF")] = Path("letter.pdf"),
) -> None:
    """Compose one queued letter as the print batch will print it, into a PDF file."""
    from activities.letters import LetterError, letter_pdf
    from models.orm import Communication

    cfg = settings()
    key = with_services(lambda svc: ids.communication_id(svc, communication), temporal=False)
    with database(cfg) as db, db.session_factory() as session:
        row = session.get(Communication, key)
        if row is None:
            fail(f"communication: no message {communication}")
        try:
            pdf = letter_pdf(row)
        except LetterError as exc:
            fail(str(exc))
    out.write_bytes(pdf)
    console.print(f"letter {communication}: {out}")


@letters_app.command("sample")
def letters_sample(
    policy: Annotated[str, typer.Argument(help="a shipped policy's name or a policy file")],
    step: Annotated[str, typer.Option(help="the letter step's id, e.g. statement-1")],
    language: Annotated[
        str | None, typer.Option(help="one the policy declares; default its first")
    ] = None,
    out: Annotated[Path, typer.Option(help="where to write the PDF")] = Path("sample.pdf"),
    date: Annotated[str | None, typer.Option(help="statement date, YYYY-MM-DD; default today")] = (
        None
    ),
) -> None:
    """Render a policy's letter for a sample account (synthetic, never stored), into a PDF file."""
    from activities.letters import LetterError
    from cli.common import refused
    from config.loader import PolicyFileError
    from services.errors import Refused
    from services.statements import sample_letter

    when = _date("date", date) if date else dt.date.today()
    try:
        sample = sample_letter(policy, step, language, when)
    except PolicyFileError as exc:
        fail(str(exc), 2)
    except Refused as exc:
        refused(exc)
    except LetterError as exc:
        fail(str(exc))
    out.write_bytes(sample.pdf)
    console.print(f"{sample.policy} {sample.step} ({sample.language}): {out}")


def call_outcome(
    task: Annotated[str, typer.Argument(help="call task id (see `dunning worklist`)")],
    result: Annotated[CallResult, typer.Option(help="what the call came to")],
    promised_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, promise_to_pay")] = None,
    promised_amount: Annotated[str | None, typer.Option(help="dollars, promise_to_pay")] = None,
    note: Annotated[str, typer.Option(help="kept in the ledger only")] = "",
) -> None:
    """Record a call task's outcome: reached, voicemail, no answer, wrong number, promise to pay."""
    actor = current_actor(Permission.ACT)
    promised = _date("promised-date", promised_date) if promised_date else None
    cents = _cents("promised-amount", promised_amount) if promised_amount else None

    async def go(svc: Services) -> None:
        await facts.call_outcome(
            svc,
            actor,
            task,
            result,
            promised_date=promised,
            promised_cents=cents,
            note=note,
        )
        console.print(f"recorded {result.value} for task {task}")

    with_services(go)


def worklist(
    all_tasks: Annotated[bool, typer.Option("--all", help="decided tasks too")] = False,
) -> None:
    """Open approval, call and estate tasks, oldest first."""
    actor = current_actor(Permission.READ)
    rows = with_services(
        lambda svc: queries.worklist(svc, actor, all_tasks=all_tasks), temporal=False
    )
    table = Table("task", "account", "kind", "what", "approvers", "due", "status", "notes")
    for task in rows:
        table.add_row(
            ids.short(task.task_id),
            task.account_number,
            task.kind,
            task.title,
            ", ".join(task.approvers),
            task.due_at.isoformat(timespec="minutes") if task.due_at else "-",
            task.status,
            "; ".join(f"{n.author}: {n.body}" for n in task.notes),
        )
    console.print(table)
    if not rows:
        console.print("nothing to do")


def _decide(
    task: str, decision: Decision, reason: str, purpose: ClosingPurpose | None = None
) -> None:
    actor = current_actor(Permission.DECIDE)
    answer = with_services(
        lambda svc: staff.decide(svc, actor, task, decision, reason, purpose=purpose)
    )
    verb = "approved" if answer.decision is Decision.APPROVE else "denied"
    console.print(f"{verb} {answer.subject} (task {answer.task_id})")


def approve(
    task: Annotated[str, typer.Argument(help="task id, or a unique prefix of it")],
    reason: Note = "",
    purpose: Annotated[
        ClosingPurpose | None,
        typer.Option(
            help="a closing notice only (Reg F 1006.6(c)): terminate (efforts end), "
            "may_invoke_remedies, or intends_remedy"
        ),
    ] = None,
) -> None:
    """Approve a task: a gated step, a write-off, a referral, a large settlement discount, or
    the closing notice after a cease-communication request (with its --purpose)."""
    _decide(task, Decision.APPROVE, reason, purpose)


def deny(
    task: Annotated[str, typer.Argument(help="task id, or a unique prefix of it")],
    reason: Annotated[str, typer.Option(help="why, for the audit trail (kept in PostgreSQL)")],
) -> None:
    """Deny a task, with a reason."""
    _decide(task, Decision.DENY, reason)


def closing_notice(account: AccountArg) -> None:
    """Open the closing-notice task of an account whose patient asked to cease communication.

    A cease request recorded now opens it by itself; at most one closing notice, ever.
    """
    actor = current_actor(Permission.ACT)
    opened = with_services(lambda svc: staff.request_closing_notice(svc, actor, account))
    console.print(f"closing notice requested: task {opened.task_id}")


def hold_cmd(
    account: AccountArg,
    reason: Annotated[HoldReason, typer.Option(help="why")],
    until: Annotated[str | None, typer.Option(help="YYYY-MM-DD: ends by itself")] = None,
    note: Note = "",
) -> None:
    """Hold the ladder: a dispute, an itemised-bill request, insurance pending, an application."""
    actor = current_actor(Permission.ACT)
    end = dt.datetime.combine(_date("until", until), dt.time(), dt.UTC) if until else None
    result = with_services(
        lambda svc: staff.hold(svc, actor, account, reason, until=end, note=note)
    )
    if result.agency:
        console.print(f"{account}: placed; the dispute goes to the agency (update file)")
        return
    console.print(
        f"{account}: on hold"
        + (f" until {result.until.date().isoformat()}" if result.until else "")
    )


def resume_cmd(account: AccountArg) -> None:
    """Lift a hold; the later steps move by the time held."""
    actor = current_actor(Permission.ACT)
    result = with_services(lambda svc: staff.resume(svc, actor, account))
    console.print(f"{account}: resumed after {result.held_days} days on hold")


def hardship(
    account: AccountArg,
    percent: Annotated[int, typer.Option(min=1, max=100)],
    program: Annotated[str, typer.Option()] = "financial-assistance",
) -> None:
    """Grant financial assistance: a discount, or 100 for a full write-off."""
    actor = current_actor(Permission.ACT)
    result = with_services(
        lambda svc: staff.hardship(svc, actor, account, percent, program=program)
    )
    console.print(f"{account}: balance now {format_cents(result.balance_cents)}")


def plan(
    account: AccountArg,
    installment: Annotated[list[str], typer.Option(help="YYYY-MM-DD=AMOUNT, repeatable")],
    monthly_income: Annotated[
        str | None,
        typer.Option(
            help="the household's monthly income, dollars (needed where a state caps plans at a"
            " share of income: Colorado, Maryland)"
        ),
    ] = None,
) -> None:
    """Agree a payment plan; the installments must add up to the balance."""
    actor = current_actor(Permission.ACT)
    items = []
    for text in installment:
        day, _, amount = text.partition("=")
        try:
            due = dt.date.fromisoformat(day)
        except ValueError:
            fail(f"installment: {text!r}: expected YYYY-MM-DD=AMOUNT", 2)
        items.append(Installment(due_on=due, amount_cents=_cents("installment", amount)))
    income = None if monthly_income is None else _cents("monthly-income", monthly_income)
    result = with_services(
        lambda svc: staff.plan(svc, actor, account, items, monthly_income_cents=income)
    )
    console.print(f"{account}: payment plan of {result.installments} installments agreed")


def settle(
    account: AccountArg,
    amount: Annotated[str, typer.Argument(help="dollars")],
    days: Annotated[int, typer.Option(min=1, max=90, help="offer valid for")] = 14,
) -> None:
    """Offer to close the balance for less; above the staff limit it needs approval."""
    actor = current_actor(Permission.ACT)
    cents = _cents("amount", amount)
    result = with_services(lambda svc: staff.settle(svc, actor, account, cents, days=days))
    if result.offered:
        console.print(f"{account}: settlement of {format_cents(cents)} offered")
    else:
        console.print(f"{account}: settlement needs approval: task {result.task_id}")


def write_off(
    account: AccountArg,
    reason: Annotated[str, typer.Option(help="why (kept in PostgreSQL only)")],
    amount: Annotated[str | None, typer.Option(help="dollars; default the whole balance")] = None,
) -> None:
    """Request a write-off; the policy's approvers decide (nobody approves their own)."""
    actor = current_actor(Permission.ACT)
    cents = _cents("amount", amount) if amount else None
    opened = with_services(
        lambda svc: staff.write_off(svc, actor, account, reason, amount_cents=cents)
    )
    console.print(f"write-off requested: task {opened.task_id}")


def refer(account: AccountArg, note: Note = "") -> None:
    """Request a collection-agency referral (refused inside a 501(r) waiting period)."""
    actor = current_actor(Permission.ACT)
    opened = with_services(lambda svc: staff.refer(svc, actor, account, note))
    console.print(f"referral requested: task {opened.task_id}")
