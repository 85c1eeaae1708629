"""The console's experiment pages (read-only): every experiment, and one experiment's per-arm
outcomes, effects and chart. Starting, stopping and promoting stay with the CLI and the API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup

from api.console import PREFIX, _page, _signed, _state
from config.roles import Permission
from services.errors import Refused
from services.experiments import chart
from services.experiments import service as experiments

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/experiments", response_class=HTMLResponse)
async def experiment_list(request: Request) -> Response:
    signed = await _signed(request, Permission.READ)
    found = await experiments.list_experiments(_state(request).services)
    return _page(request, "experiments.html", {"experiments": found}, signed=signed)


@router.get("/experiments/{key}", response_class=HTMLResponse)
async def experiment_page(request: Request, key: str) -> Response:
    signed = await _signed(request, Permission.READ)
    try:
        report = await experiments.status(
            _state(request).services, signed.who, key, with_forecast=False
        )
    except Refused as exc:
        return _page(request, "experiment.html", {"missing": exc.message}, 404, signed=signed)
    return _page(
        request,
        "experiment.html",
        {"report": report, "chart": Markup(chart.svg(report)), "missing": None},
        signed=signed,
    )
