"""The staff console in a real browser: Chromium driven by Playwright, against the app served by
uvicorn with a worker on the dev server. Each test writes screenshots of the pages it visits."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.console.sessions import COOKIE
from config.settings import Settings
from models.orm import StaffTask, TaskKind, TaskStatus
from models.orm import repositories as repo
from models.payloads import BalanceState, EscalationResult
from services import reports
from services.console_auth import MAX_FAILURES
from services.context import Services
from starter import Intake, workflow_id
from tests.console_support import Console, assert_accessible, audit_rows, person
from tests.factories import INSTANT_POLICY, balance_row, midday_zone, policy_in, write_csv
from tests.support.waits import eventually

pytestmark = pytest.mark.devserver

CALL_POLICY = INSTANT_POLICY.replace(
    "  - {{id: notice-1, day: 4,",
    "  - {{id: call-1, day: 0, channels: [call], template: call-script}}\n"
    "  - {{id: notice-1, day: 4,",
).replace("name: instant", "name: instant-call")


async def _import(
    settings: Settings, console: Console, tmp_path: Path, n: int, *, calls: bool = False
) -> list[str]:
    zone = midday_zone()
    text = (CALL_POLICY if calls else INSTANT_POLICY).format(tz=zone)
    policy = tmp_path / ("call.yaml" if calls else "instant.yaml")
    policy.write_text(text, encoding="utf-8")
    rows = [balance_row(time_zone=zone, policy=policy_in(settings, policy)) for _ in range(n)]
    svc: Services = console.app.state.dunning.services
    await Intake(svc.session_factory, svc.client, settings).import_balances(
        write_csv(tmp_path / f"rows-{uuid.uuid4().hex[:6]}.csv", rows)
    )
    return [r["account_number"] for r in rows]


async def _accessible(page: Page) -> None:
    """Labels, keyboard, contrast and landmarks (``tests.console_support.assert_accessible``)."""
    await assert_accessible(page)


async def _csrf(page: Page) -> str:
    value = await page.locator("input[name=csrf]").first.get_attribute("value")
    assert value
    return value


async def test_sign_in_wrong_password_lock_out_and_sign_out(
    console: Console, session_factory: sessionmaker[Session]
) -> None:
    clerk = person(session_factory, "clerk", "staff")
    page = await console.page()
    await page.goto(f"{console.url}/console/worklist")
    await expect(page).to_have_url(f"{console.url}/console/sign-in")  # no session: sign in first
    await console.shot(page, "sign-in")
    await _accessible(page)
    await page.get_by_label("Name").fill(clerk.name)
    await page.get_by_label("Password").fill("not-the-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("wrong name or password")
    await page.get_by_label("Name").fill(clerk.name)
    await page.get_by_label("Password").fill(clerk.password)
    await page.keyboard.press("Enter")  # the form works from the keyboard
    await expect(page.get_by_role("heading", name="Worklist")).to_be_visible()
    cookie = next(c for c in await page.context.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert clerk.password not in await page.content()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(f"{console.url}/console/sign-in")
    await page.goto(f"{console.url}/console/worklist")
    await expect(page).to_have_url(f"{console.url}/console/sign-in")
    assert {
        e.detail["outcome"] for e in audit_rows(session_factory, "console_sign_in", clerk.user_id)
    }
    assert audit_rows(session_factory, "console_sign_out", clerk.user_id)

    # Repeated failures lock the user out, even with the right password afterwards.
    for _ in range(MAX_FAILURES):
        await page.get_by_label("Name").fill(clerk.name)
        await page.get_by_label("Password").fill("guess")
        async with page.expect_navigation():
            await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("locked for 15 minutes")
    await page.get_by_label("Name").fill(clerk.name)
    await page.get_by_label("Password").fill(clerk.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("locked until")
    await console.shot(page, "locked-out")
    refusals = [
        e.detail["why"]
        for e in audit_rows(session_factory, "console_sign_in", clerk.user_id)
        if e.detail["outcome"] == "refused"
    ]
    assert refusals.count("wrong_password") == MAX_FAILURES  # the first, then four of the five
    assert refusals.count("locked_out") == 2


async def test_csrf_refused_and_idle_timeout(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    clerk = person(session_factory, "clerk", "staff")
    (number,) = await _import(settings, console, tmp_path, 1)
    page = await console.sign_in(clerk)
    url = f"{console.url}/console/accounts/{number}/hold"
    forms: list[dict[str, str | float | bool]] = [
        {"reason": "dispute"},
        {"reason": "dispute", "csrf": "forged"},
    ]
    for form in forms:
        r = await page.request.post(url, form=form, max_redirects=0)
        assert r.status == 403 and "CSRF" in await r.text()
    assert len(audit_rows(session_factory, "csrf_refused", clerk.user_id)) == 2
    assert not audit_rows(session_factory, "hold", clerk.user_id)  # nothing was done
    # The sign-in form has its own token: a post without it is refused too.
    r = await page.request.post(
        f"{console.url}/console/sign-in",
        form={"name": clerk.name, "password": clerk.password},
        max_redirects=0,
    )
    assert r.status == 403
    # Idle too long: the session is gone and the next page asks to sign in again.
    console.app.state.console.sessions.idle_seconds = 0.5
    await page.wait_for_timeout(800)
    await page.goto(f"{console.url}/console/worklist")
    await expect(page).to_have_url(f"{console.url}/console/sign-in")


async def test_a_day_of_work_in_the_browser(
    console: Console,
    session_factory: sessionmaker[Session],
    settings: Settings,
    tmp_path: Path,
    dev_env: WorkflowEnvironment,
) -> None:
    """Two staff users and a billing lead (who is also a supervisor, the physician approver), in
    the browser only: write-offs requested, a call recorded, a hold and a resume, a payment plan,
    a write-off approved and one denied with four eyes (the lead's own request refused), the aging
    report read and downloaded."""
    clerk = person(session_factory, "clerk", "staff")
    clerk2 = person(session_factory, "clerk2", "staff")
    lead = person(session_factory, "lead", "billing_lead", "supervisor")
    called, written_off, own, denied, planned = await _import(
        settings, console, tmp_path, 5, calls=True
    )

    def open_tasks(number: str, kind: TaskKind) -> list[StaffTask]:
        with session_factory() as s:
            account = repo.account_by_number(s, number)
            assert account is not None
            return list(
                s.scalars(
                    select(StaffTask).where(
                        StaffTask.account_id == account.id,
                        StaffTask.kind == kind,
                        StaffTask.status == TaskStatus.OPEN,
                    )
                )
            )

    async def call_task_open() -> list[StaffTask]:
        return open_tasks(called, TaskKind.CALL)

    tasks = await eventually(call_task_open, timeout=30.0)
    assert isinstance(tasks, list) and len(tasks) == 1
    call_task: StaffTask = tasks[0]

    class Asked:
        def __init__(self, number: str) -> None:
            (task,) = open_tasks(number, TaskKind.APPROVAL)
            self.task_id = str(task.id)

    async def request_write_off(page: Page, number: str, reason: str) -> Asked:
        """From the account page, as the signed-in person: the request opens an approval task."""
        await page.goto(f"{console.url}/console/accounts/{number}")
        await page.locator("#act-write-off summary").click()
        await page.get_by_label("Write-off reason").fill(reason)
        await page.get_by_role("button", name="Request write-off").click()
        await expect(page.get_by_role("status").first).to_contain_text("Write-off requested")
        return Asked(number)

    # In the browser: a staff member asks for two write-offs, the lead for one of their own.
    page = await console.sign_in(clerk)
    wanted = await request_write_off(page, written_off, "uncollectable (synthetic)")
    to_deny = await request_write_off(page, denied, "too soon (synthetic)")
    page3 = await console.sign_in(lead)
    mine = await request_write_off(page3, own, "lead's own request (synthetic)")
    assert len(audit_rows(session_factory, "write_off_requested", clerk.user_id)) == 2

    # Clerk: the call, recorded from the worklist.
    await page.goto(f"{console.url}/console/worklist")
    await console.shot(page, "worklist")
    await _accessible(page)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    card = page.locator(f"#task-{call_task.id}")
    await card.get_by_label("Call outcome").select_option("promise_to_pay")
    promised = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    await card.get_by_label("Promised date").fill(promised)
    await card.get_by_label("Note").fill("will pay next week")
    await card.get_by_role("button", name="Record").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Call on {called} recorded")
    assert audit_rows(session_factory, "call_outcome", clerk.user_id)
    assert not open_tasks(called, TaskKind.CALL)

    # Clerk: the account page, found by searching its number; a hold and a resume on another.
    await page.get_by_role("link", name="Accounts").click()
    await page.get_by_label("Account number").fill(called)
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_role("heading", name=f"Account {called}")).to_be_visible()
    await expect(page.locator("#timeline")).to_contain_text("statement-1: sent")
    await expect(page.locator("#timeline")).to_contain_text("call-1")
    await expect(page.locator("#hold")).to_contain_text("promise to pay since")  # the promise
    # balance_row's visit was on 2026-10-01: the account is as old as that (today's bucket).
    days = (dt.datetime.now(dt.UTC).date() - dt.date(2026, 10, 1)).days
    await expect(page.locator("#age")).to_contain_text(f"{days} days since opened (aging ")
    await console.shot(page, "account")
    await _accessible(page)
    await page.goto(f"{console.url}/console/accounts?q={own}")
    await expect(page.get_by_role("heading", name=f"Account {own}")).to_be_visible()
    await page.get_by_label("Hold reason").select_option("dispute")
    await page.get_by_label("Note").fill("patient disputes the visit")
    await page.get_by_role("button", name="Hold", exact=True).click()
    await expect(page.get_by_role("status").first).to_have_text("Held (dispute).")
    await expect(page.locator("#hold")).to_contain_text("dispute since")
    await page.get_by_role("button", name="Resume").click()
    await expect(page.get_by_role("status").first).to_have_text("Resumed.")
    await expect(page.locator("#hold")).to_have_text("none")
    assert audit_rows(session_factory, "hold", clerk.user_id)
    assert audit_rows(session_factory, "resume", clerk.user_id)

    # Another staff member sees who may decide, and may not decide (403, audited).
    page2 = await console.sign_in(clerk2)
    card = page2.locator(f"#task-{wanted.task_id}")
    await expect(card).to_contain_text(f"requested by {clerk.name}")
    await expect(card).to_contain_text("May decide: supervisor")
    await expect(card).to_contain_text("may not decide")
    assert await card.get_by_role("button", name="Approve").count() == 0
    r = await page2.request.post(
        f"{console.url}/console/tasks/{wanted.task_id}/decide",
        form={"csrf": await _csrf(page2), "decision": "approve"},
        max_redirects=0,
    )
    assert r.status == 403 and "(decide)" in await r.text()
    assert audit_rows(session_factory, "forbidden", clerk2.user_id)

    # The other staff member agrees a payment plan on the phone, from the account page.
    await page2.goto(f"{console.url}/console/accounts/{planned}")
    await page2.locator("#act-plan summary").click()
    await page2.get_by_role("button", name="Agree plan").click()  # the suggested installments
    await expect(page2.get_by_role("status").first).to_have_text(
        "Payment plan of 3 installments agreed."
    )
    await expect(page2.locator("#plan")).to_contain_text("3 installments agreed")
    assert audit_rows(session_factory, "plan", clerk2.user_id)

    # The lead: four eyes explained and enforced on their own request; approves the clerk's.
    await page3.goto(f"{console.url}/console/worklist")
    own_card = page3.locator(f"#task-{mine.task_id}")
    await expect(own_card).to_contain_text("You requested this: four eyes")
    await own_card.get_by_role("button", name="Approve").click()
    await expect(page3.get_by_role("status")).to_have_text(
        "Not approved: nobody approves their own request (four eyes)"
    )
    card = page3.locator(f"#task-{wanted.task_id}")
    await card.get_by_label("Reason").fill("checked: uncollectable")
    await card.get_by_role("button", name="Approve").click()
    await expect(page3.get_by_role("status")).to_have_text(f"Task {wanted.task_id[:8]} approved.")
    with session_factory() as s:
        account = repo.account_by_number(s, written_off)
        assert account is not None
        account_id = str(account.id)
    # Denying needs a reason: refused without one, done with one; the balance stays followed.
    card = page3.locator(f"#task-{to_deny.task_id}")
    await card.get_by_role("button", name="Deny").click()
    await expect(page3.get_by_role("status")).to_have_text("Not denied: reason: required to deny")
    card = page3.locator(f"#task-{to_deny.task_id}")
    await card.get_by_label("Reason").fill("too early to write off")
    await card.get_by_role("button", name="Deny").click()
    await expect(page3.get_by_role("status")).to_have_text(f"Task {to_deny.task_id[:8]} denied.")

    async def deny_recorded() -> bool:
        with session_factory() as s:
            task = s.get(StaffTask, uuid.UUID(to_deny.task_id))
            return task is not None and task.status is TaskStatus.DENIED

    assert await eventually(deny_recorded, timeout=30.0)
    result = await dev_env.client.get_workflow_handle(
        workflow_id(account_id), result_type=EscalationResult
    ).result()
    assert result.state is BalanceState.WRITTEN_OFF
    await page3.reload()  # the decided task has left the worklist; the lead's own is still there
    await expect(page3.locator(f"#task-{wanted.task_id}")).to_have_count(0)
    await expect(page3.locator(f"#task-{mine.task_id}")).to_have_count(1)
    await expect(page3.locator(f"#task-{to_deny.task_id}")).to_have_count(0)
    await console.shot(page3, "worklist-lead")
    decided = audit_rows(session_factory, "approve", lead.user_id)
    assert [e.detail["outcome"] for e in decided].count("done") == 1
    assert [e.detail["kind"] for e in decided if e.detail["outcome"] == "refused"] == ["FourEyes"]

    # The lead reads the aging report from the live ledger and downloads it as CSV.
    await page3.get_by_role("link", name="Aging report").click()
    await expect(page3.locator("svg.chart rect.bar")).to_have_count(5)
    await expect(page3.locator("#aging")).to_contain_text("0-30")
    await console.shot(page3, "aging")
    await _accessible(page3)
    async with page3.expect_download() as info:
        await page3.get_by_role("link", name="Download CSV").click()
    download = await info.value
    text = Path(await download.path()).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "days,accounts,amount" and lines[1].startswith("0-30,")
    with session_factory() as s:
        ledger = reports.aging(s, dt.datetime.now(dt.UTC))
    assert lines[1:] == reports.to_csv(reports.aging_rows(ledger)).splitlines()[1:]
    total = lines[-1].split(",")
    assert total[0] == "total" and int(total[1]) >= 2  # at least the two balances still open
    assert sum(b.accounts for b in ledger) == int(total[1])

    # And what the ladder's steps collect: the reports list, then outcomes by step.
    await page3.get_by_role("link", name="Reports", exact=True).click()
    await page3.locator("#reports a[href$='/outcomes-by-step']").click()
    await expect(page3.locator("#outcomes-by-step")).to_contain_text("statement-1")
    await console.shot(page3, "day-outcomes-by-step")


async def test_a_read_only_role_reads_but_may_not_act_or_decide(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """The admin role (read, admin) sees accounts and reports; actions are not offered, and a
    posted one is refused with the permission it lacks (audited)."""
    admin = person(session_factory, "admin", "admin")
    (number,) = await _import(settings, console, tmp_path, 1)
    page = await console.sign_in(admin)
    await page.goto(f"{console.url}/console/accounts/{number}")
    await expect(page.get_by_role("heading", name=f"Account {number}")).to_be_visible()
    await expect(page.get_by_text("Your roles may only read this account.")).to_be_visible()
    assert await page.get_by_role("button", name="Hold", exact=True).count() == 0
    csrf = await _csrf(page)
    r = await page.request.post(
        f"{console.url}/console/accounts/{number}/hold",
        form={"csrf": csrf, "reason": "dispute"},
        max_redirects=0,
    )
    assert r.status == 403 and "(act)" in await r.text()
    r = await page.request.post(
        f"{console.url}/console/tasks/{uuid.uuid4()}/decide",
        form={"csrf": csrf, "decision": "approve"},
        max_redirects=0,
    )
    assert r.status == 403 and "(decide)" in await r.text()
    refused = {
        e.detail["permission"] for e in audit_rows(session_factory, "forbidden", admin.user_id)
    }
    assert refused == {"act", "decide"}
    assert not audit_rows(session_factory, "hold", admin.user_id)
    await page.goto(f"{console.url}/console/reports/aging")
    await expect(page.locator("svg.chart")).to_be_visible()
    await page.goto(f"{console.url}/console/accounts?q=NO-SUCH-{uuid.uuid4().hex[:6]}")
    await expect(page.get_by_text("No account matches")).to_be_visible()
    await page.goto(f"{console.url}/console/accounts/NO-SUCH-ACCOUNT")
    await expect(page.get_by_role("alert")).to_contain_text("account: no account")
    await console.shot(page, "read-only")


async def test_behind_https_the_session_cookie_is_secure(
    dev_env: WorkflowEnvironment, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    """Over HTTPS (a proxy terminating TLS passes the scheme on) the cookies are Secure too, and
    pages are neither cached nor framed."""
    clerk = person(session_factory, "clerk", "staff")
    app = create_app(settings, session_factory, dev_env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as http:
        form = await http.get("/console/sign-in")
        assert form.headers["x-frame-options"] == "DENY"
        assert "no-store" in form.headers["cache-control"]
        pre = form.headers["set-cookie"]
        assert "HttpOnly" in pre and "SameSite=strict" in pre and "Secure" in pre
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        r = await http.post(
            "/console/sign-in", data={"csrf": csrf, "name": clerk.name, "password": clerk.password}
        )
        assert r.status_code == 303 and r.headers["location"] == "/console/worklist"
        session = next(c for c in r.headers.get_list("set-cookie") if c.startswith(COOKIE))
        assert "HttpOnly" in session and "SameSite=strict" in session and "Secure" in session
