"""Staff commands: the worklist, approvals, holds, plans, settlements, write-offs and referrals.

Each command names who acts (``--as``, or ``DUNNING_USER``) and in which role (``--role``, or
``DUNNING_ROLE``); the workflow checks the role against the policy's approvers and refuses anyone
approving their own request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy import select
from temporalio.client import Client

from cli.common import console, database, fail, parse_id, settings
from models.actions import (
    HardshipRequest,
    HoldReason,
    HoldRequest,
    Installment,
    PlanRequest,
    ReferralRequest,
    ResumeRequest,
    SettlementRequest,
    WriteOffRequest,
)
from models.money import format_cents, parse_cents
from models.orm import Account, StaffTask, TaskStatus
from models.payloads import CallResult, Decision, StepDecision
from starter import (
    ActionRejected,
    Intake,
    NotRunning,
    connect,
    decide_step,
    grant_hardship,
    hold,
    propose_settlement,
    request_referral,
    request_write_off,
    resume,
    set_payment_plan,
)

T = TypeVar("T")

User = Annotated[str, typer.Option("--as", envvar="DUNNING_USER", help="your staff id")]
Role = Annotated[str, typer.Option("--role", envvar="DUNNING_ROLE", help="your role")]
AccountArg = Annotated[str, typer.Argument(help="account number")]


def _act(account: str, action: Callable[[Client, str], Awaitable[T]]) -> T:
    """Resolve the account, connect, run the action; print a rejection as a clear error."""
    cfg = settings()

    async def go() -> T:
        with database(cfg) as db:
            try:
                account_id = Intake(db.session_factory, None, cfg).account_id(account)
            except LookupError as exc:
                fail(str(exc))
        try:
            client = await connect(cfg)
        except NotRunning as exc:
            fail(str(exc))
        try:
            return await action(client, account_id)
        except ActionRejected as exc:
            fail(f"refused ({exc.kind}): {exc}")

    return asyncio.run(go())


def _cents(field: str, text: str) -> int:
    try:
        cents = parse_cents(text)
    except ValueError as exc:
        fail(f"{field}: {exc}")
    if cents <= 0:
        fail(f"{field}: must be more than zero")
    return cents


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
    communication: Annotated[str, typer.Argument(help="the letter's communication id")],
    out: Annotated[Path, typer.Option(help="where to write the PDF")] = Path("letter.pdf"),
) -> None:
    """Compose one queued letter as the print batch will print it, into a PDF file."""
    from activities.letters import LetterError, letter_pdf
    from models.orm import Communication

    cfg = settings()
    key = parse_id("communication", communication)
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


def call_outcome(
    task: Annotated[str, typer.Argument(help="call task id (see `dunning worklist`)")],
    result: Annotated[CallResult, typer.Option(help="what the call came to")],
    user: User,
    promised_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, promise_to_pay")] = None,
    promised_amount: Annotated[str | None, typer.Option(help="dollars, promise_to_pay")] = None,
    note: Annotated[str, typer.Option(help="kept in the ledger only")] = "",
) -> None:
    """Record a call task's outcome: reached, voicemail, no answer, wrong number, promise to pay."""
    from activities.calls import CallTaskError

    cfg = settings()
    try:
        promised = dt.date.fromisoformat(promised_date) if promised_date else None
        task_id = str(uuid.UUID(task))
    except ValueError:
        fail("task or promised-date: not a task id, or not a date (YYYY-MM-DD)")
    cents = _cents("promised-amount", promised_amount) if promised_amount else None

    async def go() -> None:
        with database(cfg) as db:
            try:
                client = await connect(cfg)
            except NotRunning as exc:
                fail(str(exc))
            try:
                await Intake(db.session_factory, client, cfg).record_call_outcome(
                    task_id,
                    result,
                    recorded_by=user,
                    promised_date=promised,
                    promised_cents=cents,
                    note=note,
                )
            except (LookupError, CallTaskError) as exc:
                fail(str(exc))
        console.print(f"recorded {result.value} for task {task_id}")

    asyncio.run(go())


def worklist(
    all_tasks: Annotated[bool, typer.Option("--all", help="decided tasks too")] = False,
) -> None:
    """Open approval and call tasks, oldest first."""
    cfg = settings()
    with database(cfg) as db, db.session_factory() as session:
        query = (
            select(StaffTask, Account.account_number).join(Account).order_by(StaffTask.created_at)
        )
        if not all_tasks:
            query = query.where(StaffTask.status == TaskStatus.OPEN)
        rows = session.execute(query).all()
    table = Table("task", "account", "kind", "what", "approvers", "due", "status")
    for task, number in rows:
        table.add_row(
            str(task.id),
            number,
            task.kind.value,
            task.title,
            ", ".join(task.approvers),
            task.due_at.isoformat(timespec="minutes") if task.due_at else "-",
            task.status.value,
        )
    console.print(table)
    if not rows:
        console.print("nothing to do")


def _decide(task: str, decision: Decision, user: str, role: str, reason: str) -> None:
    cfg = settings()
    task_uuid = parse_id("task", task, " (see `dunning worklist`)")
    with database(cfg) as db, db.session_factory() as session:
        row = session.execute(
            select(StaffTask, Account.account_number).join(Account).where(StaffTask.id == task_uuid)
        ).first()
    if row is None:
        fail(f"task: no task {task}")
    number = row[1]
    answer = _act(
        number,
        lambda c, a: decide_step(
            c,
            a,
            StepDecision(
                task_id=task, decision=decision, decided_by=user, role=role, reason=reason
            ),
        ),
    )
    console.print(f"{number}: {answer}")


def approve(
    task: Annotated[str, typer.Argument(help="task id")],
    user: User,
    role: Role,
    reason: Annotated[str, typer.Option(help="a short note")] = "",
) -> None:
    """Approve a task: a gated step, a write-off, a referral or a large settlement discount."""
    _decide(task, Decision.APPROVE, user, role, reason)


def deny(
    task: Annotated[str, typer.Argument(help="task id")],
    user: User,
    role: Role,
    reason: Annotated[str, typer.Option(help="why, for the audit trail")],
) -> None:
    """Deny a task, with a reason."""
    _decide(task, Decision.DENY, user, role, reason)


def hold_cmd(
    account: AccountArg,
    reason: Annotated[HoldReason, typer.Option(help="why")],
    user: User,
    until: Annotated[str | None, typer.Option(help="YYYY-MM-DD: ends by itself")] = None,
) -> None:
    """Hold the ladder: a dispute, an itemised-bill request, insurance pending, an application."""
    end = None
    if until:
        try:
            end = dt.datetime.combine(dt.date.fromisoformat(until), dt.time(), dt.UTC)
        except ValueError:
            fail(f"until: {until!r} is not a date (YYYY-MM-DD)")
    console.print(
        _act(
            account,
            lambda c, a: hold(c, a, HoldRequest(reason=reason, until=end, requested_by=user)),
        )
    )


def resume_cmd(account: AccountArg, user: User) -> None:
    """Lift a hold; the later steps move by the time held."""
    console.print(_act(account, lambda c, a: resume(c, a, ResumeRequest(requested_by=user))))


def hardship(
    account: AccountArg,
    percent: Annotated[int, typer.Option(min=1, max=100)],
    user: User,
    program: Annotated[str, typer.Option()] = "financial-assistance",
) -> None:
    """Grant financial assistance: a discount, or 100 for a full write-off."""
    left = _act(
        account,
        lambda c, a: grant_hardship(
            c, a, HardshipRequest(program=program, discount_percent=percent, granted_by=user)
        ),
    )
    console.print(f"{account}: balance now {format_cents(left)}")


def plan(
    account: AccountArg,
    user: User,
    installment: Annotated[list[str], typer.Option(help="YYYY-MM-DD=AMOUNT, repeatable")],
) -> None:
    """Agree a payment plan; the installments must add up to the balance."""
    items = []
    for text in installment:
        day, _, amount = text.partition("=")
        try:
            due = dt.date.fromisoformat(day)
        except ValueError:
            fail(f"installment: {text!r}: expected YYYY-MM-DD=AMOUNT")
        items.append(Installment(due_on=due, amount_cents=_cents("installment", amount)))
    console.print(
        _act(
            account,
            lambda c, a: set_payment_plan(c, a, PlanRequest(installments=items, agreed_by=user)),
        )
    )


def settle(
    account: AccountArg,
    amount: Annotated[str, typer.Argument(help="dollars")],
    user: User,
    days: Annotated[int, typer.Option(min=1, max=90, help="offer valid for")] = 14,
) -> None:
    """Offer to close the balance for less; above the staff limit it needs approval."""
    request = SettlementRequest(
        amount_cents=_cents("amount", amount),
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=days),
        proposed_by=user,
    )
    console.print(_act(account, lambda c, a: propose_settlement(c, a, request)))


def write_off(
    account: AccountArg,
    user: User,
    reason: Annotated[str, typer.Option()],
    amount: Annotated[str | None, typer.Option(help="dollars; default the whole balance")] = None,
) -> None:
    """Request a write-off; the policy's approvers decide (nobody approves their own)."""
    cents = _cents("amount", amount) if amount else None
    task = _act(
        account,
        lambda c, a: request_write_off(
            c, a, WriteOffRequest(amount_cents=cents, reason=reason, requested_by=user)
        ),
    )
    console.print(f"write-off requested: task {task}")


def refer(account: AccountArg, user: User, note: Annotated[str, typer.Option()] = "") -> None:
    """Request a collection-agency referral (refused inside a 501(r) waiting period)."""
    task = _act(
        account, lambda c, a: request_referral(c, a, ReferralRequest(requested_by=user, note=note))
    )
    console.print(f"referral requested: task {task}")
