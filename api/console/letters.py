"""The console's letters page: a day's print batch, its manifest, and the PDF to print.

The same batch as ``dunning letters batch`` (:mod:`services.print_batches`). The manifest (opaque
ids, steps, pages) needs ``read``; the PDF and the manifest file carry names, addresses and
amounts or go to the mail house, so they need ``act`` and each download is audited.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console import PREFIX, _page, _signed, _state
from config.roles import Permission
from services import print_batches
from services.errors import Refused

router = APIRouter(prefix=f"{PREFIX}/letters", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def letters(request: Request, day: str = "", tz: str = "") -> Response:
    signed = await _signed(request, Permission.READ)
    svc = _state(request).services
    form = {"day": day, "tz": tz or print_batches.DEFAULT_TIME_ZONE}
    try:
        when, zone = print_batches.batch_day(day, form["tz"])
        view = await svc.db(lambda s: print_batches.build(s, svc.settings, when, zone))
    except Refused as exc:
        return _page(
            request, "letters.html", {"form": form, "error": exc.message}, 422, signed=signed
        )
    form["day"] = when.isoformat()
    query = f"?day={when.isoformat()}&tz={quote(zone.key)}"
    return _page(
        request, "letters.html", {"form": form, "view": view, "query": query}, signed=signed
    )


@router.get("/batch.{what}")
async def download(request: Request, what: str, day: str = "", tz: str = "") -> Response:
    signed = await _signed(request, Permission.ACT)
    if what not in ("pdf", "csv"):
        return Response("file: pdf or csv", status_code=404)
    svc = _state(request).services
    who = signed.who
    try:
        when, zone = print_batches.batch_day(day, tz)
        data, filename = await svc.db(
            lambda s: print_batches.download(s, svc.settings, who, when, zone, what)
        )
    except Refused as exc:
        return Response(exc.message, status_code=422, media_type="text/plain")
    media = "application/pdf" if what == "pdf" else "text/csv; charset=utf-8"
    return Response(
        data,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
