"""The report pages in a real browser: Chromium driven by Playwright against the console served
by uvicorn (with a worker on the dev server). A hand-computed ledger on a policy of its own is
read through each page (``?policy=``), so the figures are exact whatever else the database holds.
Each page is written as a screenshot, its print view too."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from config.roles import Permission, load_catalogue
from config.settings import Settings
from models.orm import Account, AuditEvent, Communication, CommunicationStatus
from services import reports
from services.context import Services
from starter import Intake
from tests.console_support import Console, person
from tests.factories import INSTANT_POLICY, balance_row, midday_zone, policy_in, write_csv
from tests.support.report_ledger import Ledger, build_ledger
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver

CELLS = """(id) => [...document.getElementById(id).querySelectorAll('tr')]
    .map(tr => [...tr.querySelectorAll('th, td')].map(c => c.textContent.trim()))"""
UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.name)"""
HAND_COMPUTED = {
    "aging": ["91-120", "1", "160.00"],
    "days-in-ar": ["days in A/R", "55.3"],
    "over-90": ["over 90 days", "1", "160.00", "76.2%"],
    "outcomes-by-step": ["reminder", "3", "2", "66.7%", "237.00", "0"],
    "cost-by-channel": ["letter", "4", "0.75", "3.00", "30.00", "0.1000"],
}
"""A row of each report that does not depend on the calendar (the others are compared whole with
the service's figures, and their totals checked)."""
TOTALS = {
    "opt-outs": "210.00",  # $160 (a2's guarantor) + $50 (a1's)
    "disputes": "200.00",  # $150 + $50
    "write-offs": "55.00",  # $50 + $5
    "placements": "260.00",
}


@pytest.fixture
def ledger(session_factory: sessionmaker[Session]) -> Ledger:
    """The ledger of ``tests.support.report_ledger`` dated from now (the pages read it now)."""
    with session_factory.begin() as session:
        return build_ledger(session, dt.datetime.now(dt.UTC))


def _service(session_factory: sessionmaker[Session], ledger: Ledger, name: str) -> reports.Report:
    options = reports.Options(dt.datetime.now(dt.UTC), 3, 90, ledger.policy)
    with session_factory() as s:
        return reports.build(s, name, options)


async def _rows(page: Page, name: str) -> list[list[str]]:
    rows: list[list[str]] = await page.evaluate(CELLS, name)
    return rows


async def test_each_report_page_shows_its_figures_and_its_chart(
    console: Console, session_factory: sessionmaker[Session], ledger: Ledger
) -> None:
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    await page.get_by_role("link", name="Reports", exact=True).click()
    await expect(page.get_by_role("heading", name="Reports")).to_be_visible()
    await expect(page.locator("#reports li")).to_have_count(len(reports.REPORTS))
    await console.shot(page, "reports")
    query = {"policy": ledger.policy, "months": "3"}
    for name in reports.REPORTS:
        await page.goto(f"{console.url}/console/reports/{name}?" + urlencode(query))
        await expect(page.get_by_role("heading", name=reports.TITLES[name])).to_be_visible()
        await expect(page.locator("#scope")).to_contain_text(f"policy {ledger.policy}")
        shown = await _rows(page, name)
        expected = _service(session_factory, ledger, name)
        assert shown == expected.rows, name
        assert expected.chart is not None
        await expect(page.locator("svg.chart rect.bar")).to_have_count(len(expected.chart.labels))
        await expect(page.locator("svg.chart title")).to_have_text(expected.chart.title)
        if name in HAND_COMPUTED:
            assert HAND_COMPUTED[name] in [row[-len(HAND_COMPUTED[name]) :] for row in shown]
        if name in TOTALS:
            header = shown[0]
            last = header.index(header[-1])
            assert reports.dollars(sum(_cents(row[last]) for row in shown[1:])) == TOTALS[name], (
                name
            )
        assert await page.evaluate(UNLABELLED) == []
        await console.shot(page, f"report-{name}")


def _cents(text: str) -> int:
    whole, _, part = text.partition(".")
    return int(whole) * 100 + int(part or 0)


async def test_csv_download_is_formula_safe_and_audited(
    console: Console, session_factory: sessionmaker[Session], ledger: Ledger
) -> None:
    lead = person(session_factory, "lead", "billing_lead")
    page = await console.sign_in(lead)
    await page.goto(f"{console.url}/console/reports/outcomes-by-step")
    await page.get_by_label("Policy").fill(ledger.policy)
    await page.get_by_label("Months").fill("3")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#outcomes-by-step")).to_contain_text("statement-1")
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download CSV").click()
    download = await info.value
    assert download.suggested_filename.startswith("outcomes-by-step-")
    text = Path(await download.path()).read_bytes().decode("utf-8")
    # The policy's name starts with '=': a spreadsheet must show it, never run it.
    assert text.splitlines()[1].startswith(f"'{ledger.policy},statement-1,4,0,0.0%,0.00,1")
    assert text == reports.to_csv(_service(session_factory, ledger, "outcomes-by-step").rows)
    with session_factory() as s:
        exported = s.scalars(
            select(AuditEvent).where(
                AuditEvent.actor == lead.user_id, AuditEvent.action == "report_exported"
            )
        ).all()
    assert [(e.detail["report"], e.detail["door"], e.detail["policy"]) for e in exported] == [
        ("outcomes-by-step", "console", ledger.policy)
    ]


async def test_print_view_shows_the_report_without_the_console_around_it(
    console: Console, session_factory: sessionmaker[Session], ledger: Ledger, tmp_path: Path
) -> None:
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    await page.goto(
        f"{console.url}/console/reports/placements?" + urlencode({"policy": ledger.policy})
    )
    await expect(page.get_by_role("button", name="Print")).to_be_visible()
    await page.emulate_media(media="print")
    await expect(page.locator("header")).to_be_hidden()
    await expect(page.get_by_role("link", name="Download CSV")).to_be_hidden()
    await expect(page.get_by_role("button", name="Print")).to_be_hidden()
    await expect(page.get_by_label("Policy")).to_be_hidden()
    await expect(page.locator("#placements")).to_be_visible()
    await expect(page.locator("svg.chart")).to_be_visible()
    await expect(page.locator("#definition")).to_be_visible()
    await console.shot(page, "report-print")
    pdf = tmp_path / "placements.pdf"
    await page.pdf(path=str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF")
    await page.emulate_media(media="screen")
    await expect(page.locator("header")).to_be_visible()


async def test_bad_filters_and_unknown_reports_are_named(
    console: Console, session_factory: sessionmaker[Session]
) -> None:
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    response = await page.goto(f"{console.url}/console/reports/disputes?months=abc")
    assert response is not None and response.status == 400
    await expect(page.get_by_role("alert")).to_have_text("months: 'abc' is not a whole number")
    response = await page.goto(f"{console.url}/console/reports/disputes?days=0")
    assert response is not None and response.status == 400
    await expect(page.get_by_role("alert")).to_have_text("days: between 1 and 3660")
    response = await page.goto(f"{console.url}/console/reports/no-such-report")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("alert")).to_have_text("report: no report named 'no-such-report'")
    response = await page.goto(f"{console.url}/console/reports/aging.csv?months=-1")
    assert response is not None and response.status == 400


async def test_every_role_that_may_read_reads_the_reports(
    console: Console, session_factory: sessionmaker[Session]
) -> None:
    catalogue = load_catalogue()
    readers = [r for r, spec in catalogue.roles.items() if Permission.READ in spec.permissions]
    assert set(readers) == set(catalogue.roles)  # every role reads today: all are checked
    for role in readers:
        page = await console.sign_in(person(session_factory, "reader", role))
        await page.goto(f"{console.url}/console/reports/over-90")
        await expect(page.locator("svg.chart")).to_be_visible()
        await expect(page.locator("#over-90")).to_contain_text("over 90 days")
        await page.context.close()
    anonymous = await console.page()
    await anonymous.goto(f"{console.url}/console/reports/over-90")
    await expect(anonymous).to_have_url(f"{console.url}/console/sign-in")


async def test_a_dispute_held_in_the_console_and_a_sent_statement_show_in_the_reports(
    console: Console, settings: Settings, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    """End to end: a balance imported on a policy of its own, its first statement sent by the
    workflow, a dispute hold by a clerk on the account page; the reports count both."""
    zone, policy_name = midday_zone(), f"instant-rpt{uuid.uuid4().hex[:6]}"
    policy = tmp_path / "instant.yaml"
    policy.write_text(
        INSTANT_POLICY.format(tz=zone).replace("name: instant", f"name: {policy_name}"),
        encoding="utf-8",
    )
    row = balance_row(time_zone=zone, policy=policy_in(settings, policy))  # owes $55.00
    svc: Services = console.app.state.dunning.services
    await Intake(svc.session_factory, svc.client, settings).import_balances(
        write_csv(tmp_path / "rows.csv", [row])
    )

    async def statement_sent() -> bool:
        with session_factory() as s:
            return bool(
                s.scalar(
                    select(func.count())
                    .select_from(Communication)
                    .join(Account, Account.id == Communication.account_id)
                    .where(
                        Account.account_number == row["account_number"],
                        Communication.step_id == "statement-1",
                        Communication.status == CommunicationStatus.SENT,
                    )
                )
            )

    await eventually(statement_sent, 60.0)
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    await page.goto(f"{console.url}/console/accounts/{row['account_number']}")
    await page.get_by_label("Hold reason").select_option("dispute")
    await page.get_by_role("button", name="Hold", exact=True).click()
    await expect(page.locator("#hold")).to_contain_text("dispute since")
    scope = urlencode({"policy": policy_name, "months": "1"})
    month = dt.datetime.now(dt.UTC).strftime("%Y-%m")

    await page.goto(f"{console.url}/console/reports/disputes?{scope}")
    assert (await _rows(page, "disputes"))[1:] == [[month, "1", "55.00", "0", "0.00", "1", "55.00"]]
    await page.goto(f"{console.url}/console/reports/outcomes-by-step?{scope}")
    assert (await _rows(page, "outcomes-by-step"))[1:] == [
        [policy_name, "statement-1", "0", "0", "n/a", "0.00", "1"]  # its 14 days have not ended
    ]
    await page.goto(f"{console.url}/console/reports/cost-by-channel?{scope}")
    letters = ["letter", "1", "0.75", "0.75", "0.00", "n/a"]  # nothing paid yet
    assert (await _rows(page, "cost-by-channel"))[1] == letters
    await page.goto(f"{console.url}/console/reports/aging?{scope}")
    assert (await _rows(page, "aging"))[-1] == ["total", "1", "55.00"]
