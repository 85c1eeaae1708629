"""The console's policy and letters pages in a real browser, and the accessibility basics of every
console page (``assert_accessible``), at 1280x800 and on a 768x1024 tablet.

Chromium driven by Playwright against the app served by uvicorn with a worker on the dev server;
each test writes screenshots of the pages it visits (``console-policy-*.png``, ...)."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from playwright.async_api import Page, ViewportSize, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

import starter
from config.loader import load_policy
from config.settings import Settings
from models.orm import Communication, CommunicationStatus
from models.orm import repositories as repo
from models.policy import Channel
from services import reports
from services.context import Services
from starter import Intake
from tests.console_support import (
    Console,
    Person,
    assert_accessible,
    assert_fits,
    audit_rows,
    person,
)
from tests.factories import INSTANT_POLICY, balance_row, midday_zone, policy_in, write_csv
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver


def _policy(tmp_path: Path, name: str, zone: str, statement_2_day: int = 30) -> Path:
    """The instant policy under a name of this test's own (its versions and balances only)."""
    text = (
        INSTANT_POLICY.format(tz=zone)
        .replace("name: instant", f"name: {name}")
        .replace("day: 30,", f"day: {statement_2_day},")
    )
    path = tmp_path / "policies" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


async def _import(
    settings: Settings, console: Console, tmp_path: Path, policy: Path, zone: str, n: int
) -> list[str]:
    rows = [balance_row(time_zone=zone, policy=policy_in(settings, policy)) for _ in range(n)]
    svc: Services = console.app.state.dunning.services
    await Intake(svc.session_factory, svc.client, settings).import_balances(
        write_csv(tmp_path / f"rows-{uuid.uuid4().hex[:6]}.csv", rows)
    )
    return [r["account_number"] for r in rows]


async def _letters_sent(session_factory: sessionmaker[Session], numbers: list[str]) -> bool:
    with session_factory() as s:
        for number in numbers:
            account = repo.account_by_number(s, number)
            if account is None:
                return False
            sent = s.scalars(
                select(Communication.id).where(
                    Communication.account_id == account.id,
                    Communication.channel == Channel.LETTER,
                    Communication.status == CommunicationStatus.SENT,
                )
            ).first()
            if sent is None:
                return False
    return True


async def test_policies_read_preview_diff_pinned_and_migrate(
    console: Console,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
    dev_env: WorkflowEnvironment,
) -> None:
    """A billing lead reads a policy and its check, previews a balance as a timeline chart,
    compares the running version with the edited file, sees the balances pinned to each version
    and migrates them after the preview; staff may read but not migrate (403, audited)."""
    zone = midday_zone()
    name = f"instant-{uuid.uuid4().hex[:6]}"
    path = _policy(tmp_path, name, zone)
    numbers = await _import(settings, console, tmp_path, path, zone, 2)
    old = load_policy(path).hash
    assert await eventually(lambda: _letters_sent(session_factory, numbers), timeout=30.0)
    path.write_text(  # the lead edits the file: statement-2 on day 45 now
        path.read_text(encoding="utf-8").replace("day: 30,", "day: 45,"), encoding="utf-8"
    )
    new = load_policy(path).hash
    assert new != old
    lead = person(session_factory, "lead", "billing_lead")
    page = await console.sign_in(lead)

    # The list: the policy, its check, the file's version, the two open balances it carries.
    await page.get_by_role("link", name="Policies").click()
    row = page.locator("#policies tr", has=page.get_by_role("link", name=name, exact=True))
    await expect(row).to_contain_text("ok")
    await expect(row).to_contain_text(new[:12])
    await expect(row.locator("td").nth(4)).to_have_text("2")
    await console.shot(page, "policies")
    await assert_accessible(page)

    # The policy: its YAML, the check, each version with the balances following it.
    await row.get_by_role("link", name=name, exact=True).click()
    await expect(page.get_by_role("heading", name=f"Policy {name}")).to_be_visible()
    await expect(page.locator("#check")).to_contain_text(f"ok: 3 steps, version {new[:12]}")
    await expect(page.locator("#yaml")).to_contain_text("id: statement-2, day: 45")
    versions = page.locator("#versions tbody tr")
    await expect(versions).to_have_count(2)
    await expect(versions.filter(has_text=old[:12]).locator("td").nth(3)).to_have_text("2")
    await expect(versions.filter(has_text=new[:12]).locator("td").nth(3)).to_have_text("0")
    await expect(versions.filter(has_text=new[:12])).to_contain_text("not stored yet")
    await console.shot(page, "policy")
    await assert_accessible(page)
    await page.get_by_role("link", name=f"Read version {old[:12]}").click()
    await expect(page.locator("#yaml")).to_contain_text("day: 30")

    # Preview: a balance and a zone, the timeline drawn as SVG on the server.
    await page.goto(f"{console.url}/console/policies/{name}")
    await page.get_by_role("link", name="Preview a balance").click()
    await page.get_by_label("Balance ($)").fill("125.00")
    await page.get_by_label("Patient's time zone").fill("America/Chicago")
    await page.get_by_label("First statement").fill("2026-11-02")
    await page.get_by_role("button", name="Preview").click()
    chart = page.locator("svg.timeline")
    await expect(chart.locator("title")).to_contain_text("$125.00")
    await expect(chart.locator("title")).to_contain_text("America/Chicago")
    await expect(chart.locator(".mark")).to_have_count(3)
    await expect(page.locator("#preview tbody tr")).to_have_count(3)
    statement_2 = page.locator("#preview tbody tr", has_text="statement-2")
    await expect(statement_2).to_contain_text("-06:00")  # in the patient's zone
    # The day is counted on the practice's calendar (#19). This test's practice zone is one where
    # it is about 13:00 now, up to half a day from Chicago: at some hours the Chicago patient's
    # day-45 morning is the practice's day 44. The label is checked against that rule.
    found = re.search(
        r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2})(-06:00)", await statement_2.inner_text()
    )
    assert found, await statement_2.inner_text()
    sent_at = dt.datetime.fromisoformat(f"{found[1]}T{found[2]}{found[3]}")
    day = (sent_at.astimezone(ZoneInfo(zone)).date() - dt.date(2026, 11, 2)).days
    assert day in (44, 45)
    await expect(statement_2.locator("td").first).to_have_text(str(day))
    await expect(chart).to_contain_text(f"day {day} · letter · sent")
    await console.shot(page, "policy-preview")
    await assert_accessible(page)
    await page.get_by_label("Patient's time zone").fill("Mars/Olympus")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "time zone: unknown 'Mars/Olympus'; use an IANA name such as America/Chicago"
    )
    # The patient's state: its rules apply, as `dunning policy preview --state`.
    await page.get_by_label("Patient's time zone").fill("America/Chicago")
    await page.get_by_label("State", exact=True).fill("M1")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("alert")).to_have_text("state: two letters such as MN, got 'M1'")
    await page.get_by_label("State", exact=True).fill("mn")
    await page.get_by_role("button", name="Preview").click()
    await expect(page.locator("#rules")).to_contain_text("state rules of MN (residence)")
    await expect(page.locator("#preview tbody tr")).to_have_count(3)

    # Diff: the running version against the file.
    await page.goto(f"{console.url}/console/policies/{name}/diff")
    await page.get_by_label("From").select_option(old)
    await page.get_by_label("To").select_option(new)
    await page.get_by_role("button", name="Compare").click()
    await expect(page.locator("#changes")).to_have_text("steps.statement-2.day: 30 -> 45")
    changed = page.locator("#timeline-diff tr", has_text="statement-2")
    await expect(changed).to_contain_text("changed: local_time")
    await expect(page.locator("#timeline-diff tr", has_text="statement-1")).to_contain_text(
        "unchanged"
    )
    await console.shot(page, "policy-diff")
    await assert_accessible(page)

    # The balances pinned to the running version.
    await page.goto(f"{console.url}/console/policies/{name}")
    await page.get_by_role("link", name=f"2 open balances on {old[:12]}").click()
    await expect(page.locator("#pinned tbody tr")).to_have_count(2)
    for number in numbers:
        await expect(page.locator("#pinned")).to_contain_text(number)
    await assert_accessible(page)

    # Staff read policies but may not migrate: not offered, and refused when asked (audited).
    clerk = person(session_factory, "clerk", "staff")
    staff_page = await console.sign_in(clerk)
    await staff_page.goto(f"{console.url}/console/policies/{name}")
    await expect(staff_page.locator("#check")).to_contain_text("ok")
    assert await staff_page.get_by_role("link", name="Migrate balances").count() == 0
    response = await staff_page.goto(f"{console.url}/console/policies/{name}/migrate")
    assert response is not None and response.status == 403
    await expect(staff_page.get_by_role("alert")).to_contain_text("(policy)")
    refused = audit_rows(session_factory, "forbidden", clerk.user_id)
    assert [e.detail["permission"] for e in refused] == ["policy"]
    await assert_accessible(staff_page)

    # The lead: the migration preview first, then the confirmation moves both balances.
    await page.goto(f"{console.url}/console/policies/{name}")
    await page.get_by_role("link", name="Migrate balances").click()
    plans = page.locator("#plans tbody tr")
    await expect(plans).to_have_count(2)
    for number in numbers:
        plan = plans.filter(has_text=number)
        await expect(plan).to_contain_text(f"{name}@{old[:12]}")
        await expect(plan).to_contain_text("statement-2")
    await console.shot(page, "policy-migrate")
    await assert_accessible(page)
    assert not audit_rows(session_factory, "policy_migrated", lead.user_id)  # nothing moved yet
    # The file changes between the preview and the confirmation: refused, nothing moves.
    edited = path.read_text(encoding="utf-8")
    path.write_text(edited.replace("day: 45,", "day: 50,"), encoding="utf-8")
    await page.get_by_role("button", name=f"Confirm: move 2 balance(s) to {new[:12]}").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Not migrated: version: no version {new} of policy '{name}'"
    )
    assert not audit_rows(session_factory, "policy_migrated", lead.user_id)
    path.write_text(edited, encoding="utf-8")  # back to the version previewed
    await page.goto(f"{console.url}/console/policies/{name}/migrate")
    await page.get_by_role("button", name=f"Confirm: move 2 balance(s) to {new[:12]}").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"Moved 2 balance(s) to {name}@{new[:12]}."
    )
    moved = audit_rows(session_factory, "policy_migrated", lead.user_id)
    assert sorted(e.detail["to"] for e in moved) == [f"{name}@{new}"] * 2
    assert {e.detail["outcome"] for e in moved} == {"done"}
    svc: Services = console.app.state.dunning.services
    with session_factory() as s:
        ids = [str(a.id) for n in numbers if (a := repo.account_by_number(s, n)) is not None]
    assert len(ids) == 2
    for account_id in ids:
        status = await starter.get_status(svc.temporal, account_id)
        assert status.policy.hash == new
    versions = page.locator("#versions tbody tr")
    await expect(versions.filter(has_text=new[:12]).locator("td").nth(3)).to_have_text("2")
    await expect(versions.filter(has_text=old[:12]).locator("td").nth(3)).to_have_text("0")


async def test_letters_batch_manifest_and_pdf_download(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Today's print batch: the manifest lists the test's letter; staff download the PDF
    (audited, without patient information); a read-only role sees the manifest only."""
    zone = midday_zone()
    path = _policy(tmp_path, f"letters-{uuid.uuid4().hex[:6]}", zone)
    (number,) = await _import(settings, console, tmp_path, path, zone, 1)
    assert await eventually(lambda: _letters_sent(session_factory, [number]), timeout=30.0)
    today = dt.datetime.now(ZoneInfo(zone)).date()
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    await page.get_by_role("link", name="Letters").click()
    await page.get_by_label("Time zone").fill(zone)
    await page.get_by_label("Day").fill(today.isoformat())
    await page.get_by_role("button", name="Show batch").click()
    await expect(page.locator("#summary")).to_contain_text(f"{today.isoformat()} ({zone})")
    mine = page.locator("#manifest tbody tr", has_text=number)
    await expect(mine).to_have_count(1)
    await expect(mine).to_contain_text("statement-1")
    await expect(mine).to_contain_text("print")
    await console.shot(page, "letters")
    await assert_accessible(page)
    async with page.expect_download() as info:
        await page.get_by_role("link", name="Download the PDF").click()
    download = await info.value
    data = Path(await download.path()).read_bytes()
    assert data.startswith(b"%PDF") and download.suggested_filename == f"letters-{today}.pdf"
    (event,) = audit_rows(session_factory, "print_batch_downloaded", clerk.user_id)
    assert event.detail["day"] == today.isoformat() and event.detail["file"] == "pdf"
    assert event.detail["letters"] >= 1
    said = json.dumps(event.detail)
    assert "Testy" not in said and "Synthetic" not in said and number not in said  # no PHI

    # A bad day is named; a read-only role reads the manifest but may not download the letters.
    await page.goto(f"{console.url}/console/letters?day=2026-13-01&tz={quote(zone)}")
    await expect(page.get_by_role("alert")).to_have_text(
        "day: '2026-13-01' is not a date (YYYY-MM-DD)"
    )
    reader = person(session_factory, "reader", "admin")
    page2 = await console.sign_in(reader)
    await page2.goto(f"{console.url}/console/letters?day={today}&tz={quote(zone)}")
    await expect(page2.locator("#manifest")).to_contain_text(number)
    assert await page2.get_by_role("link", name="Download the PDF").count() == 0
    r = await page2.request.get(
        f"{console.url}/console/letters/batch.pdf?day={today}&tz={quote(zone)}", max_redirects=0
    )
    assert r.status == 403 and "(act)" in await r.text()
    assert not audit_rows(session_factory, "print_batch_downloaded", reader.user_id)


TABLET: ViewportSize = {"width": 768, "height": 1024}


async def test_every_page_accessible_and_fits_a_tablet(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Each console page passes ``assert_accessible`` (labels, keyboard, contrast, landmarks) and
    has no horizontal scroll at 1280x800 nor on a 768x1024 tablet."""
    zone = midday_zone()
    name = f"a11y-{uuid.uuid4().hex[:6]}"
    path = _policy(tmp_path, name, zone)
    (number,) = await _import(settings, console, tmp_path, path, zone, 1)
    lead = person(session_factory, "lead", "billing_lead")
    # Every page the console serves without a parameter (pages added later are checked too),
    # and the ones that take one, with this test's account and policy.
    served = _console_pages(console)
    assert {"/console/worklist", "/console/policies", "/console/letters"} <= set(served)
    pages = [
        *served,
        f"/console/accounts/{number}",
        f"/console/policies/{name}",
        f"/console/policies/{name}/preview",
        f"/console/policies/{name}/diff",
        f"/console/policies/{name}/migrate",
        "/console/policies/no-such-policy",
        *[f"/console/reports/{report}" for report in reports.REPORTS],
    ]
    desk = await console.sign_in(lead)
    tablet_context = await console.browser.new_context(viewport=TABLET)
    tablet = await tablet_context.new_page()
    await tablet.goto(f"{console.url}/console/sign-in")
    await assert_fits(tablet)
    await console.shot(tablet, "tablet-sign-in")
    await assert_accessible(tablet)
    await _sign_in(tablet, lead)
    checked = 0
    for url in pages:
        probe = await desk.request.get(f"{console.url}{url}")
        if not probe.headers.get("content-type", "").startswith("text/html"):
            continue  # a download (CSV, PDF), not a page
        checked += 1
        for page in (desk, tablet):
            await page.goto(f"{console.url}{url}")
            await expect(page.locator("main h1")).to_be_visible()
            await assert_fits(page)
            await assert_accessible(page)
    assert checked >= 20
    shipped = (
        "/console/policies/physician/preview?balance=180.00&tz=America/Chicago&first=2026-11-02"
    )
    await tablet.goto(f"{console.url}{shipped}")
    await console.shot(tablet, "tablet-policy-preview")
    # The shipped physician policy: eight steps, a call and the referral's approval gate.
    await desk.goto(f"{console.url}{shipped}")
    await expect(desk.locator("svg.timeline .mark")).to_have_count(8)
    await expect(desk.locator("#preview tr", has_text="agency-referral")).to_contain_text(
        "needs approval by"
    )
    await assert_accessible(desk)
    await console.shot(desk, "policy-preview-physician")
    # The forbidden page too (a staff member asking to migrate).
    clerk = person(session_factory, "clerk", "staff")
    page = await console.sign_in(clerk)
    await page.goto(f"{console.url}/console/policies/{name}/migrate")
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    await assert_accessible(page)


def _console_pages(console: Console) -> list[str]:
    """The console's GET routes without a path parameter, but the sign-in page, the redirect to
    the worklist and the static files."""

    def flat(routes: list[Any]) -> list[Any]:
        # FastAPI may keep an included router whole (``original_router``) rather than copy it.
        out: list[Any] = []
        for route in routes:
            inner = getattr(route, "original_router", None)
            out += flat(list(inner.routes)) if inner is not None else [route]
        return out

    pages: list[str] = []
    for route in flat(list(console.app.routes)):
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or set()
        if (
            path.startswith("/console/")
            and "GET" in methods
            and "{" not in path
            and path not in ("/console/sign-in",)
            and not path.startswith("/console/static")
        ):
            pages.append(path)
    return sorted(pages)


async def _sign_in(page: Page, who: Person) -> None:
    await page.get_by_label("Name").fill(who.name)
    await page.get_by_label("Password").fill(who.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console/worklist")
