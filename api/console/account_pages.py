"""The console's accounts: search (number, guarantor name, phone), the account page, and every
account action a person takes on the phone or at the front desk.

Each action is a thin adapter: the act permission, the session's CSRF token, the form read into
the service's arguments (a bad field is said back naming it), then the one use case that owns the
rule and writes the audit row (``services.staff`` for hardship, plan, settlement, write-off and
referral requests; ``services.facts`` for life and legal events, returned mail, address, email,
phone and consent changes). Hold and resume are in ``api.console``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from activities.letters import LetterError, letter_pdf
from api.console import PREFIX, _back, _field, _form, _page, _signed, _state
from config.roles import Permission
from models.actions import HoldReason, Installment
from models.money import format_cents, parse_cents
from models.orm import Communication
from models.policy import Channel
from services import accounts, audit, facts, queries, reports, staff
from services.audit import Outcome
from services.context import Services
from services.errors import Refused
from services.identity import Actor

router = APIRouter(prefix=PREFIX, include_in_schema=False)


class BadField(ValueError):
    """A form field the console could not read: its message starts with the field's name."""


def _cents(form: FormData, name: str, *, required: bool = True) -> int | None:
    text = _field(form, name)
    if not text:
        if required:
            raise BadField(f"{name}: required")
        return None
    try:
        cents = parse_cents(text)
    except ValueError:
        raise BadField(f"{name}: {text!r} is not an amount in dollars (such as 25.00)") from None
    if cents <= 0:
        raise BadField(f"{name}: must be more than zero")
    return cents


def _date(form: FormData, name: str, *, required: bool = True) -> dt.date | None:
    text = _field(form, name)
    if not text:
        if required:
            raise BadField(f"{name}: required (YYYY-MM-DD)")
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise BadField(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None


def _int(form: FormData, name: str, low: int, high: int) -> int:
    text = _field(form, name)
    try:
        value = int(text)
    except ValueError:
        raise BadField(f"{name}: a whole number from {low} to {high}") from None
    if not low <= value <= high:
        raise BadField(f"{name}: a whole number from {low} to {high}")
    return value


def installments(text: str) -> list[Installment]:
    """Installments typed one a line, "YYYY-MM-DD AMOUNT" (or "=", "," between), in dollars."""
    items: list[Installment] = []
    for n, line in enumerate((x.strip() for x in text.splitlines()), start=1):
        if not line:
            continue
        day, _, amount = line.replace("=", " ").replace(",", " ", 1).partition(" ")
        try:
            due = dt.date.fromisoformat(day.strip())
            cents = parse_cents(amount.strip())
        except ValueError:
            raise BadField(
                f"installments: line {n} {line!r}: expected YYYY-MM-DD AMOUNT (2027-01-15 25.00)"
            ) from None
        if cents <= 0:
            raise BadField(f"installments: line {n}: the amount must be more than zero")
        items.append(Installment(due_on=due, amount_cents=cents))
    if not items:
        raise BadField("installments: give at least one line YYYY-MM-DD AMOUNT")
    return items


def _validation(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "form"
    return f"{where}: {first['msg']}"


def _url(number: str, anchor: str = "") -> str:
    return f"{PREFIX}/accounts/{quote(number)}" + (f"#{anchor}" if anchor else "")


Work = Callable[[Services, Actor, FormData], Awaitable[str]]


async def _act(request: Request, number: str, undone: str, work: Work) -> Response:
    """Run one account action: permission, CSRF, the form, the service; the outcome is shown on
    the account page ("Not <undone>: <field>: <why>" when refused)."""
    signed = await _signed(request, Permission.ACT)
    form = await _form(request, signed)
    url = _url(number)
    try:
        done = await work(_state(request).services, signed.who, form)
    except (BadField, ValidationError, Refused) as exc:
        if isinstance(exc, Refused):
            why = exc.message
        elif isinstance(exc, ValidationError):
            why = _validation(exc)
        else:
            why = str(exc)
        action = request.url.path.rsplit("/", 1)[-1]
        typed = {k: v for k, v in form.multi_items() if k != "csrf" and isinstance(v, str)}
        # Shown again in its form on this account's page: nothing typed is lost.
        signed.session.kept = {f"{action} {number}": typed}
        return _back(signed, url, "refused", f"Not {undone}: {why}")
    return _back(signed, url, "ok", done)


# -- reading ---------------------------------------------------------------------------------


@router.get("/accounts", response_class=HTMLResponse)
async def search(request: Request, q: str = "") -> Response:
    signed = await _signed(request, Permission.READ)
    found = await _state(request).services.db(lambda s: accounts.search(s, q))
    if len(found) == 1 and found[0].number.lower() == q.strip().lower():
        return RedirectResponse(_url(found[0].number), status_code=303)
    return _page(request, "search.html", {"q": q, "found": found}, signed=signed)


def suggested_plan(balance_cents: int, today: dt.date, months: int = 3) -> str:
    """A starting point for the plan form: ``months`` monthly installments adding up to the
    balance (the service checks whatever is sent)."""
    if balance_cents <= 0:
        return ""
    months = max(1, min(months, balance_cents // 100 or 1))
    share, rest = divmod(balance_cents, months)
    lines = []
    for i in range(months):
        due = today + dt.timedelta(days=7 + 30 * i)
        cents = share + (rest if i == months - 1 else 0)
        lines.append(f"{due.isoformat()} {format_cents(cents).lstrip('$').replace(',', '')}")
    return "\n".join(lines)


@router.get("/accounts/{number}", response_class=HTMLResponse)
async def account(request: Request, number: str) -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        view = await queries.account_status(svc, signed.who, number)
    except Refused as exc:
        return _page(
            request,
            "search.html",
            {"q": number, "found": [], "error": exc.message},
            404,
            signed=signed,
        )
    number = view.account_number
    stash, signed.session.kept = signed.session.kept, {}
    kept = {
        action: typed
        for key, typed in stash.items()
        for action, _, of in [key.partition(" ")]
        if of == number
    }

    def kept_value(action: str, name: str, default: str = "") -> str:
        return kept.get(action, {}).get(name, default)

    lines = await svc.db(lambda s: accounts.ledger_lines(s, number))
    found = await svc.db(lambda s: accounts.search(s, number))
    sent = await svc.db(lambda s: accounts.sent(s, number))
    who = await svc.db(lambda s: accounts.contact(s, number))
    by_age = await svc.db(lambda s: accounts.aging(s, number, dt.date.today()))
    opened = next((f.opened_at for f in found if f.number == number), None)
    days = (dt.datetime.now(dt.UTC) - opened).days if opened else None
    credits = [e for e in view.status.ledger if e.kind in ("credit", "written_off")]
    timeline: list[dict[str, Any]] = [
        {
            "at": h.at,
            "what": f"{h.step_id}: {h.outcome.value}",
            "channel": h.channel.value if h.channel else "",
            "why": "; ".join(h.reasons),
        }
        for h in view.status.history
    ] + [
        {"at": e.at, "what": e.kind.replace("_", " "), "channel": "", "why": e.detail}
        for e in view.actions.events
    ]
    timeline.sort(key=lambda row: row["at"])
    return _page(
        request,
        "account.html",
        {
            "view": view,
            "lines": lines,
            "credits": credits,
            "timeline": timeline,
            "sent": sent,
            "contact": who,
            "by_age": by_age,
            "kept": kept,
            "kept_value": kept_value,
            "hold_reasons": list(HoldReason),
            "channels": list(Channel),
            "consent_sources": list(facts.ConsentSource),
            "chapters": sorted(facts.BANKRUPTCY_CHAPTERS),
            "plan_text": suggested_plan(view.status.balance_cents, dt.date.today()),
            "today": dt.date.today(),
            "age_days": days,
            "age_bucket": reports.bucket_of(days) if days is not None else "",
        },
        signed=signed,
    )


@router.get("/accounts/{number}/letters/{communication_id}.pdf")
async def letter(request: Request, number: str, communication_id: str) -> Response:
    """A letter sent for this account, composed again as the print batch printed it."""
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        key = uuid.UUID(communication_id)
    except ValueError:
        return _back(signed, _url(number), "refused", "letter: not a letter id")
    try:
        ref = await svc.account(number)
    except Refused as exc:
        return _back(signed, f"{PREFIX}/accounts", "refused", exc.message)

    def compose(session: Any) -> bytes | str:
        row = session.get(Communication, key)
        if row is None or row.account_id != ref.id:
            return f"letter: no letter {communication_id} on account {number}"
        try:
            return letter_pdf(row)
        except LetterError as exc:
            return f"letter: {exc}"

    pdf = await svc.db(compose)
    who = signed.who
    outcome = Outcome.DONE if isinstance(pdf, bytes) else Outcome.REFUSED
    await svc.db(
        lambda s: audit.record(
            s, who, "letter_viewed", ref.id, outcome, {"communication_id": communication_id}
        )
    )
    if isinstance(pdf, str):
        return _back(signed, _url(number), "refused", pdf)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="letter-{communication_id[:8]}.pdf"',
            "Cache-Control": "no-store",
        },
    )


# -- actions -----------------------------------------------------------------------------------


@router.post("/accounts/{number}/hardship")
async def hardship(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        percent = _int(form, "discount_percent", 1, 100)
        program = _field(form, "program") or "financial-assistance"
        done = await staff.hardship(svc, who, number, percent, program=program)
        return f"Hardship granted ({percent}%): balance now ${reports.dollars(done.balance_cents)}."

    return await _act(request, number, "granted", work)


@router.post("/accounts/{number}/plan")
async def plan(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        items = installments(_field(form, "installments"))
        income = _cents(form, "monthly_income", required=False)
        done = await staff.plan(svc, who, number, items, monthly_income_cents=income)
        return f"Payment plan of {done.installments} installments agreed."

    return await _act(request, number, "agreed", work)


@router.post("/accounts/{number}/settlement")
async def settlement(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        cents = _cents(form, "amount")
        assert cents is not None
        days = _int(form, "days", 1, 90) if _field(form, "days") else 14
        done = await staff.settle(svc, who, number, cents, days=days)
        if done.offered:
            return f"Settlement of {format_cents(cents)} offered for {days} days."
        return f"Settlement of {format_cents(cents)} needs approval: task {done.task_id}."

    return await _act(request, number, "offered", work)


@router.post("/accounts/{number}/write-off")
async def write_off(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        cents = _cents(form, "amount", required=False)
        opened = await staff.write_off(svc, who, number, _field(form, "reason"), amount_cents=cents)
        return f"Write-off requested: task {opened.task_id[:8]} waits for another person."

    return await _act(request, number, "requested", work)


@router.post("/accounts/{number}/referral")
async def referral(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        opened = await staff.refer(svc, who, number, _field(form, "note"))
        return f"Referral requested: task {opened.task_id[:8]} waits for another person."

    return await _act(request, number, "requested", work)


@router.post("/accounts/{number}/closing-notice")
async def closing_notice(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        opened = await staff.request_closing_notice(svc, who, number)
        return f"Closing notice requested: task {opened.task_id[:8]}."

    return await _act(request, number, "requested", work)


@router.post("/accounts/{number}/death")
async def death(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        died_on = _date(form, "died_on", required=False)
        await facts.death(svc, who, number, died_on=died_on)
        return "Death recorded: contact ends and the account goes to the estate queue."

    return await _act(request, number, "recorded", work)


@router.post("/accounts/{number}/bankruptcy")
async def bankruptcy(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        filed_on = _date(form, "filed_on")
        assert filed_on is not None
        chapter = _int(form, "chapter", 1, 15)
        case = _field(form, "case_number") or None
        if case and len(case) > 64:
            raise BadField("case_number: at most 64 characters")
        done = await facts.bankruptcy(
            svc, who, number, filed_on=filed_on, chapter=chapter, case_number=case
        )
        later = (
            f"; visits from the filing date go on as account {done.post_petition_account}"
            if done.post_petition_account
            else ""
        )
        return f"Bankruptcy (chapter {chapter}) recorded: collection stops{later}."

    return await _act(request, number, "recorded", work)


@router.post("/accounts/{number}/attorney")
async def attorney(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        try:
            contact = facts.AttorneyContact(
                name=_field(form, "attorney_name"),
                firm=_field(form, "firm") or None,
                phone=_field(form, "attorney_phone") or None,
                email=_field(form, "attorney_email") or None,
            )
        except ValidationError as exc:  # said with the form's names of the fields
            first = exc.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "attorney"
            field = name if name == "firm" else f"attorney_{name}"
            raise BadField(f"{field}: {first['msg']}") from None
        await facts.attorney(svc, who, number, contact)
        return "Attorney representation recorded: only the attorney is contacted."

    return await _act(request, number, "recorded", work)


@router.post("/accounts/{number}/cease-communication")
async def cease(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        received = _date(form, "received_on", required=False)
        await facts.cease_communication(svc, who, number, received_on=received)
        return "Cease-communication request recorded: the ladder stops."

    return await _act(request, number, "recorded", work)


@router.post("/accounts/{number}/letter-returned")
async def letter_returned(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        await facts.letter_returned(svc, who, number)
        return "Returned mail recorded: letters stop until the address is corrected."

    return await _act(request, number, "recorded", work)


@router.post("/accounts/{number}/address")
async def address(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        corrected = facts.Address(
            line1=_field(form, "line1"),
            line2=_field(form, "line2") or None,
            city=_field(form, "city"),
            state=_field(form, "state").upper(),
            postal_code=_field(form, "postal_code"),
        )
        await facts.address_corrected(svc, who, number, corrected)
        return "Address corrected: letters may go again."

    return await _act(request, number, "corrected", work)


@router.post("/accounts/{number}/email")
async def email(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        await facts.email_corrected(svc, who, number, _field(form, "email"))
        return "Email corrected: email may go again."

    return await _act(request, number, "corrected", work)


@router.post("/accounts/{number}/phone")
async def phone(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        await facts.phone_corrected(svc, who, number, _field(form, "phone"))
        return "Phone corrected: calls (and texts, with consent) may go again."

    return await _act(request, number, "corrected", work)


@router.post("/accounts/{number}/consent")
async def consent(request: Request, number: str) -> Response:
    async def work(svc: Services, who: Actor, form: FormData) -> str:
        try:
            channel = Channel(_field(form, "channel"))
        except ValueError:
            raise BadField("channel: choose sms, email, call or letter") from None
        try:
            via = facts.ConsentSource(_field(form, "via"))
        except ValueError:
            raise BadField("via: choose how the patient told you") from None
        change = _field(form, "change")
        if change not in ("given", "withdrawn"):
            raise BadField("change: consent given or withdrawn")
        await facts.consent(svc, who, number, channel, given=change == "given", via=via)
        return (
            f"Consent {change} for {channel.value} ({via.value.replace('_', ' ')}): effective now."
        )

    return await _act(request, number, "recorded", work)
