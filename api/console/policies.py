"""The console's policy pages: read, check, preview, compare, see who follows which version, and
migrate running balances (preview first, then confirm).

A thin door like ``dunning policy``: files and versions come from :mod:`services.policy_library`,
previews, diffs and migrations from :mod:`services.policy` (the code the CLI runs, the decision
core's ``timeline``). Reading needs ``read``; migrating needs ``policy`` (the billing lead's).
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console import PREFIX, Signed, _back, _field, _form, _page, _signed, _state
from api.console.timeline_chart import MARKS, timeline_chart
from config.loader import PolicyBundle
from config.roles import Permission
from models.money import format_cents, parse_cents
from services import policy as policy_ops
from services import policy_library as library
from services.errors import Refused, Rejection
from services.policy import preview_entries, preview_state_rules

router = APIRouter(prefix=f"{PREFIX}/policies", include_in_schema=False)

DEFAULT_BALANCE = "250.00"


def _url(name: str, tail: str = "") -> str:
    return f"{PREFIX}/policies/{quote(name)}{tail}"


@router.get("", response_class=HTMLResponse)
async def policies(request: Request) -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    found = await svc.db(lambda s: library.summaries(s, svc.settings))
    return _page(request, "policies.html", {"policies": found}, signed=signed)


@router.get("/{name}", response_class=HTMLResponse)
async def policy(request: Request, name: str, version: str = "") -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        found = await svc.db(lambda s: library.summary(s, svc.settings, name))
        shown = (
            await svc.db(lambda s: library.bundle(s, svc.settings, name, version))
            if version
            else None
        )
    except Refused as exc:
        return _missing(request, signed, exc)
    text = library.document_text(shown) if shown else (found.check.text if found.check else "")
    return _page(
        request,
        "policy.html",
        {"p": found, "shown": shown, "text": text, "url": _url(name)},
        signed=signed,
    )


def _missing(request: Request, signed: Signed, exc: Refused) -> Response:
    """An unknown policy or version (404), or a file that does not pass its check (422)."""
    status = 422 if exc.kind is Rejection.POLICY_UNUSABLE else 404
    return _page(request, "policy_missing.html", {"message": exc.message}, status, signed=signed)


@router.get("/{name}/preview", response_class=HTMLResponse)
async def preview(
    request: Request,
    name: str,
    version: str = "",
    balance: str = DEFAULT_BALANCE,
    tz: str = "",
    first: str = "",
    state: str = "",
    language: str = "",
    texts: str = "consent",
) -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        bundle = await svc.db(lambda s: library.bundle(s, svc.settings, name, version))
    except Refused as exc:
        return _missing(request, signed, exc)
    policy = bundle.policy
    form = {
        "balance": balance,
        "tz": tz or policy.contact.default_patient_time_zone,
        "first": first or dt.date.today().isoformat(),
        "version": version,
        "state": state,
        "language": language or policy.languages[0],
        "texts": texts,
    }
    context: dict[str, Any] = {"bundle": bundle, "form": form, "url": _url(name), "marks": MARKS}
    try:
        try:
            cents = parse_cents(balance)
        except ValueError as exc:
            raise Refused(Rejection.INVALID_REQUEST, f"balance: {exc}") from exc
        try:
            day = dt.date.fromisoformat(form["first"])
        except ValueError as exc:
            raise Refused(
                Rejection.INVALID_REQUEST,
                f"first statement: {form['first']!r} is not a date (YYYY-MM-DD)",
            ) from exc
        options = library.preview_options(
            policy,
            cents,
            day,
            form["tz"],
            state=state,
            language=form["language"],
            sms_consent=texts != "no-consent",
        )
    except Refused as exc:
        context["error"] = exc.message
        return _page(request, "policy_preview.html", context, 422, signed=signed)
    entries = preview_entries(bundle, options)
    context |= {
        "entries": entries,
        "rules": preview_state_rules(policy, options.profile),
        "chart": timeline_chart(
            f"Timeline of a {format_cents(cents)} balance that never pays, {policy.name}"
            f" version {bundle.hash[:12]}, patient in {options.profile.time_zone}",
            entries,
        ),
    }
    return _page(request, "policy_preview.html", context, signed=signed)


@router.get("/{name}/diff", response_class=HTMLResponse)
async def diff(
    request: Request, name: str, old: str = "", new: str = "", balance: str = DEFAULT_BALANCE
) -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        found = await svc.db(lambda s: library.summary(s, svc.settings, name))
    except Refused as exc:
        return _missing(request, signed, exc)
    versions = [v.hash for v in found.versions]
    old = old or (versions[1] if len(versions) > 1 else (versions[0] if versions else ""))
    new = new or (versions[0] if versions else "")
    context: dict[str, Any] = {
        "p": found,
        "url": _url(name),
        "form": {"old": old, "new": new, "balance": balance},
    }
    try:
        a = await svc.db(lambda s: library.bundle(s, svc.settings, name, old))
        b = await svc.db(lambda s: library.bundle(s, svc.settings, name, new))
        try:
            cents = parse_cents(balance)
        except ValueError as exc:
            raise Refused(Rejection.INVALID_REQUEST, f"balance: {exc}") from exc
        options = library.preview_options(
            b.policy, cents, dt.date.today(), b.policy.contact.default_patient_time_zone
        )
    except Refused as exc:
        context["error"] = exc.message
        return _page(request, "policy_diff.html", context, 422, signed=signed)
    context["diff"] = policy_ops.diff(a, b, options)
    return _page(request, "policy_diff.html", context, signed=signed)


@router.get("/{name}/versions/{version}", response_class=HTMLResponse)
async def pinned(request: Request, name: str, version: str) -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    try:
        bundle = await svc.db(lambda s: library.bundle(s, svc.settings, name, version))
    except Refused as exc:
        return _missing(request, signed, exc)
    accounts = await svc.db(lambda s: library.pinned_accounts(s, name, bundle.hash))
    return _page(
        request,
        "policy_pinned.html",
        {"name": name, "bundle": bundle, "accounts": accounts, "url": _url(name)},
        signed=signed,
    )


# -- migrate -----------------------------------------------------------------------------------


async def _plans(
    request: Request, signed: Signed, name: str, to: str, numbers: list[str]
) -> tuple[PolicyBundle, list[policy_ops.MigrationPlan]]:
    svc = _state(request).services
    bundle = await svc.db(lambda s: library.bundle(s, svc.settings, name, to))
    plans = await policy_ops.migration_plans(
        svc, signed.who, bundle, numbers, None if numbers else name
    )
    return bundle, plans


@router.get("/{name}/migrate", response_class=HTMLResponse)
async def migrate_preview(request: Request, name: str, to: str = "") -> Response:
    """What moving every open balance on the policy to version ``to`` (default its file) changes;
    nothing moves until the lead confirms."""
    signed = await _signed(request, Permission.POLICY)
    try:
        bundle, plans = await _plans(request, signed, name, to, [])
    except Refused as exc:
        return _page(
            request,
            "policy_migrate.html",
            {"name": name, "url": _url(name), "error": exc.message, "plans": []},
            422,
            signed=signed,
        )
    return _page(
        request,
        "policy_migrate.html",
        {
            "name": name,
            "url": _url(name),
            "bundle": bundle,
            "plans": plans,
            "movable": [p for p in plans if not p.problem],
        },
        signed=signed,
    )


@router.post("/{name}/migrate")
async def migrate(request: Request, name: str) -> Response:
    """Move the balances the lead saw in the preview, if the target is still the version shown."""
    signed = await _signed(request, Permission.POLICY)
    form = await _form(request, signed)
    to = _field(form, "to")
    numbers = [n for n in form.getlist("account") if isinstance(n, str) and n]
    back = _url(name, f"/migrate?to={quote(to)}")
    if not numbers:
        return _back(signed, back, "refused", "account: nothing to migrate was confirmed")
    svc = _state(request).services
    try:
        bundle, plans = await _plans(request, signed, name, to, numbers)
    except Refused as exc:
        return _back(signed, back, "refused", f"Not migrated: {exc.message}")
    if bundle.hash != to:
        return _back(
            signed, back, "refused", "to: the version changed since the preview; check it again"
        )
    movable = [p for p in plans if not p.problem]
    outcomes = await policy_ops.migrate(svc, signed.who, bundle, movable) if movable else []
    moved = [o.account_number for o in outcomes if o.moved]
    refused = [f"{o.account_number} ({o.problem})" for o in outcomes if not o.moved]
    refused += [f"{p.account_number} ({p.problem})" for p in plans if p.problem]
    target = f"{bundle.policy.name}@{bundle.hash[:12]}"
    if moved:
        signed.session.flash.append(("ok", f"Moved {len(moved)} balance(s) to {target}."))
    if refused:
        signed.session.flash.append(("refused", "Not moved: " + "; ".join(refused)))
    return RedirectResponse(_url(name), status_code=303)
