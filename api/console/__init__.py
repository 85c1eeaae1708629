"""The staff console at ``/console``: server-rendered pages over the service layer.

A thin front door like the CLI and the API: it signs people in (``services.console_auth``), checks
each page's and action's permission against the roles catalogue (``services.identity``), and calls
the same use cases (``services.staff``, ``services.facts``, ``services.queries``,
``services.reports``), which own every rule and write the audit trail. Refusals are shown on the
page they came from, never as a traceback.
"""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from api.console.sessions import COOKIE, PRE_COOKIE, ConsoleSession, SessionStore
from config.roles import Permission
from models.actions import ClosingPurpose, HoldReason
from models.payloads import CallResult, Decision
from services import audit, console_auth, facts, reports, staff
from services.audit import Outcome
from services.context import Services
from services.errors import Refused
from services.identity import Actor, permissions

HERE = Path(__file__).parent
PREFIX = "/console"
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["dollars"] = reports.dollars
router = APIRouter(prefix=PREFIX, include_in_schema=False)


class NeedSignIn(Exception):
    """No live session: go to the sign-in page."""


class Forbidden(Exception):
    def __init__(self, message: str, who: Actor | None = None) -> None:
        super().__init__(message)
        self.message, self.who = message, who


class ConsoleState:
    def __init__(self, services: Services, idle_seconds: float | None = None) -> None:
        self.services = services
        self.sessions = SessionStore() if idle_seconds is None else SessionStore(idle_seconds)


def mount(app: FastAPI, services: Services) -> None:
    """Serve the console on ``app`` (its pages, its local CSS) and its error pages."""
    app.state.console = ConsoleState(services)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    from api.console import experiments, letters, policies  # they use this module's helpers
    from api.console.account_pages import router as accounts_router  # imports this module
    from api.console.report_pages import router as reports_router  # imports this module
    from api.console.worklist_page import router as worklist_router  # imports this module

    app.include_router(worklist_router)
    app.include_router(accounts_router)
    app.include_router(reports_router)
    app.include_router(experiments.router)
    app.include_router(policies.router)
    app.include_router(letters.router)

    @app.exception_handler(NeedSignIn)
    async def need_sign_in(request: Request, exc: Exception) -> Response:
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Forbidden)
        return _page(request, "forbidden.html", {"message": exc.message, "who": exc.who}, 403)


# -- sessions, permissions, CSRF ---------------------------------------------------------------


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


class Signed:
    """The signed-in user of a request: who they are now, their session and permissions."""

    def __init__(self, who: Actor, session: ConsoleSession) -> None:
        self.who, self.session = who, session
        self.granted = permissions(who)

    def may(self, permission: str) -> bool:
        return Permission(permission) in self.granted


async def _signed(request: Request, permission: Permission) -> Signed:
    state = _state(request)
    session = state.sessions.get(request.cookies.get(COOKIE))
    if session is None:
        raise NeedSignIn
    who = await state.services.db(lambda s: console_auth.active_actor(s, session.user_id))
    if who is None:
        state.sessions.drop(session.id)
        raise NeedSignIn
    signed = Signed(who, session)
    if permission not in signed.granted:
        await state.services.db(
            lambda s: audit.record(
                s,
                who,
                "forbidden",
                None,
                Outcome.REFUSED,
                {"permission": permission.value, "route": request.url.path, "door": "console"},
            )
        )
        held = ", ".join(sorted(who.roles)) or "no role"
        raise Forbidden(f"your roles ({held}) do not allow this ({permission.value})", who)
    return signed


async def _form(request: Request, signed: Signed) -> FormData:
    """The posted form, if it carries the session's CSRF token; else refused (audited)."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not secrets.compare_digest(sent, signed.session.csrf):
        who = signed.who
        await _state(request).services.db(
            lambda s: audit.record(
                s, who, "csrf_refused", None, Outcome.REFUSED, {"route": request.url.path}
            )
        )
        raise Forbidden("this form is out of date or was not sent by the console (CSRF check)")
    return form


def _field(form: FormData, name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def _page(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    signed: Signed | None = None,
) -> HTMLResponse:
    flash: list[tuple[str, str]] = []
    if signed is not None:
        flash, signed.session.flash = signed.session.flash, []
    return templates.TemplateResponse(
        request,
        template,
        {"signed": signed, "flash": flash, "prefix": PREFIX, **context},
        status_code=status_code,
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _back(signed: Signed, url: str, kind: str, text: str) -> RedirectResponse:
    signed.session.flash.append((kind, text))
    return RedirectResponse(url, status_code=303)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# -- sign-in -------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/worklist", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(request: Request, error: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = _page(request, "sign_in.html", {"csrf": token, "error": error})
    response.set_cookie(
        PRE_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=f"{PREFIX}/sign-in",
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await request.form()
    sent, expected = form.get("csrf"), request.cookies.get(PRE_COOKIE)
    if not isinstance(sent, str) or not expected or not secrets.compare_digest(sent, expected):
        raise Forbidden("this form is out of date or was not sent by the console (CSRF check)")
    name, password = _field(form, "name"), form.get("password", "")
    svc = _state(request).services
    now = dt.datetime.now(dt.UTC)
    who = await svc.db(
        lambda s: console_auth.sign_in(s, name, password if isinstance(password, str) else "", now)
    )
    if isinstance(who, console_auth.SignInRefused):
        return RedirectResponse(f"{PREFIX}/sign-in?error={quote(who.message)}", status_code=303)
    session = _state(request).sessions.create(who.id)
    response = RedirectResponse(f"{PREFIX}/worklist", status_code=303)
    response.set_cookie(
        COOKIE, session.id, httponly=True, samesite="strict", secure=_secure(request), path=PREFIX
    )
    response.delete_cookie(PRE_COOKIE, path=f"{PREFIX}/sign-in")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    signed = await _signed(request, Permission.READ)
    await _form(request, signed)
    state = _state(request)
    state.sessions.drop(signed.session.id)
    who = signed.who
    await state.services.db(lambda s: console_auth.sign_out(s, who))
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# -- worklist ------------------------------------------------------------------------------------


def _worklist_back(form: FormData) -> str:
    """The worklist with the filters the form was sent from (only a worklist address)."""
    sent = _field(form, "back")
    return (
        sent if sent.startswith(f"{PREFIX}/worklist") and "//" not in sent else f"{PREFIX}/worklist"
    )


@router.post("/tasks/{task_id}/decide")
async def decide(request: Request, task_id: str) -> Response:
    signed = await _signed(request, Permission.DECIDE)
    form = await _form(request, signed)
    back = _worklist_back(form)
    choice = _field(form, "decision")
    if choice not in ("approve", "deny"):
        return _back(signed, back, "refused", "decision: approve or deny")
    decision = Decision.APPROVE if choice == "approve" else Decision.DENY
    done = "approved" if decision is Decision.APPROVE else "denied"
    purpose: ClosingPurpose | None = None
    if _field(form, "purpose"):
        try:
            purpose = ClosingPurpose(_field(form, "purpose"))
        except ValueError:
            return _back(signed, back, "refused", "purpose: choose what it says")
    svc = _state(request).services
    try:
        await staff.decide(
            svc, signed.who, task_id, decision, _field(form, "reason"), purpose=purpose
        )
    except Refused as exc:
        return _back(signed, back, "refused", f"Not {done}: {exc.message}")
    return _back(signed, back, "ok", f"Task {task_id[:8]} {done}.")


@router.post("/tasks/{task_id}/call")
async def call_outcome(request: Request, task_id: str) -> Response:
    signed = await _signed(request, Permission.ACT)
    form = await _form(request, signed)
    back = _worklist_back(form)
    try:
        result = CallResult(_field(form, "result"))
    except ValueError:
        return _back(signed, back, "refused", "result: choose what the call came to")
    promised: dt.date | None = None
    if result is CallResult.PROMISE_TO_PAY:
        try:
            promised = dt.date.fromisoformat(_field(form, "promised_date"))
        except ValueError:
            return _back(signed, back, "refused", "promised_date: give the promised date")
    svc = _state(request).services
    try:
        number, _ = await facts.call_outcome(
            svc, signed.who, task_id, result, promised_date=promised, note=_field(form, "note")
        )
    except Refused as exc:
        return _back(signed, back, "refused", f"Not recorded: {exc.message}")
    label = result.value.replace("_", " ")
    return _back(signed, back, "ok", f"Call on {number} recorded: {label}.")


# -- accounts ------------------------------------------------------------------------------------


@router.post("/accounts/{number}/hold")
async def hold(request: Request, number: str) -> Response:
    signed = await _signed(request, Permission.ACT)
    form = await _form(request, signed)
    url = f"{PREFIX}/accounts/{quote(number)}"
    try:
        reason = HoldReason(_field(form, "reason"))
    except ValueError:
        return _back(signed, url, "refused", "reason: choose why the account is held")
    try:
        await staff.hold(
            _state(request).services, signed.who, number, reason, note=_field(form, "note")
        )
    except Refused as exc:
        return _back(signed, url, "refused", f"Not held: {exc.message}")
    return _back(signed, url, "ok", f"Held ({reason.value.replace('_', ' ')}).")


@router.post("/accounts/{number}/resume")
async def resume(request: Request, number: str) -> Response:
    signed = await _signed(request, Permission.ACT)
    await _form(request, signed)
    url = f"{PREFIX}/accounts/{quote(number)}"
    try:
        await staff.resume(_state(request).services, signed.who, number)
    except Refused as exc:
        return _back(signed, url, "refused", f"Not resumed: {exc.message}")
    return _back(signed, url, "ok", "Resumed.")
