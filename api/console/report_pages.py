"""The console's report pages: an index, one page per report, its CSV and its print view.

Thin like the rest of the console: the figures come from ``services.reports`` (one SQL pass per
report over the live ledger); this module checks the read permission, parses the page's filters
(policy, months, days), draws the chart as SVG on the server and renders the page or the CSV.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.console import PREFIX, Signed, _page, _signed, _state
from api.console.charts import bar_chart
from config.roles import Permission
from services import reports

router = APIRouter(prefix=f"{PREFIX}/reports", include_in_schema=False)


@router.get("", response_class=HTMLResponse)
async def index(request: Request) -> Response:
    signed = await _signed(request, Permission.READ)
    listed = [(name, reports.TITLES[name]) for name in reports.REPORTS]
    return _page(request, "reports_index.html", {"listed": listed}, signed=signed)


def _options(
    request: Request, policy: str, months: str, days: str
) -> tuple[reports.Options | None, str]:
    """The page's filters as report options, or a message naming the field that is wrong."""
    try:
        n_months = int(months or "6")
    except ValueError:
        return None, f"months: {months!r} is not a whole number"
    try:
        n_days = int(days or "90")
    except ValueError:
        return None, f"days: {days!r} is not a whole number"
    try:
        options = reports.Options(dt.datetime.now(dt.UTC), n_months, n_days, policy.strip() or None)
    except ValueError as exc:
        return None, str(exc).replace("period_days", "days")
    return options, ""


def _query(options: reports.Options) -> str:
    query = {"months": str(options.months), "days": str(options.period_days)}
    if options.policy:
        query["policy"] = options.policy
    return urlencode(query)


@router.get("/{name}.csv")
async def report_csv(
    request: Request, name: str, policy: str = "", months: str = "", days: str = ""
) -> Response:
    signed = await _signed(request, Permission.READ)
    if name not in reports.REPORTS:
        return _unknown(request, signed, name)
    options, error = _options(request, policy, months, days)
    if options is None:
        return Response(error, status_code=400, media_type="text/plain; charset=utf-8")
    who = signed.who
    found = await _state(request).services.db(
        lambda s: reports.export(s, who, name, options, door="console")
    )
    return Response(
        reports.to_csv(found.rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}-{options.as_of:%Y-%m-%d}.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/{name}", response_class=HTMLResponse)
async def report_page(
    request: Request, name: str, policy: str = "", months: str = "", days: str = ""
) -> Response:
    signed = await _signed(request, Permission.READ)
    if name not in reports.REPORTS:
        return _unknown(request, signed, name)
    options, error = _options(request, policy, months, days)
    context: dict[str, Any] = {
        "name": name,
        "title": reports.TITLES[name],
        "policy": policy,
        "months": months or "6",
        "days": days or "90",
        "error": error,
        "found": None,
        "chart": None,
        "query": "",
    }
    if options is None:
        return _page(request, "report.html", context, 400, signed=signed)
    found = await _state(request).services.db(lambda s: reports.build(s, name, options))
    chart = found.chart
    context |= {
        "found": found,
        "as_of": options.as_of,
        "query": _query(options),
        "chart": bar_chart(chart.title, chart.labels, chart.values, chart.shown) if chart else None,
        "numeric": numeric_columns(found.rows),
    }
    return _page(request, "report.html", context, signed=signed)


NUMBER = re.compile(r"-?[\d.,]+%?|n/a|")


def numeric_columns(rows: list[list[str]]) -> list[bool]:
    """Which columns hold figures (aligned right, as figures are), from the rows' text."""
    return [all(NUMBER.fullmatch(row[i]) for row in rows[1:]) for i in range(len(rows[0]))]


def _unknown(request: Request, signed: Signed, name: str) -> Response:
    listed = [(n, reports.TITLES[n]) for n in reports.REPORTS]
    error = f"report: no report named {name!r}"
    return _page(
        request, "reports_index.html", {"listed": listed, "error": error}, 404, signed=signed
    )
