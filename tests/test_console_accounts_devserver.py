"""The console's account page and worklist in a real browser (Chromium driven by Playwright, the
app served by uvicorn with a worker on the dev server): each account action, each worklist
filter and call outcome, a bad field said back by its name, and the read-only role refused each
action. Screenshots of the pages are written as the other console tests do."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings
from models.orm import Account, Guarantor, StaffTask, TaskKind, TaskStatus
from models.orm import repositories as repo
from tests.console_support import Console, audit_rows, person
from tests.factories import UNLOCATED_PHONE, UNLOCATED_ZIP
from tests.support.waits import eventually
from tests.test_console_browser_devserver import _accessible, _csrf, _import

pytestmark = pytest.mark.devserver


def _tasks(
    session_factory: sessionmaker[Session], number: str, kind: TaskKind, *, open_only: bool = True
) -> list[StaffTask]:
    with session_factory() as s:
        account = repo.account_by_number(s, number)
        assert account is not None
        query = select(StaffTask).where(StaffTask.account_id == account.id, StaffTask.kind == kind)
        if open_only:
            query = query.where(StaffTask.status == TaskStatus.OPEN)
        return list(s.scalars(query))


LOW_CONTRAST = """() => {
  const rgb = s => (s.match(/[0-9.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = e => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const low = [];
  for (const e of document.querySelectorAll('body *')) {
    const text = [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('');
    if (!text.trim() || !e.getClientRects().length) continue;
    const style = getComputedStyle(e);
    if (style.visibility === 'hidden') continue;
    const [a, b] = [lum(rgb(style.color).slice(0, 3)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const large = parseFloat(style.fontSize) >= 24 ||
      (parseFloat(style.fontSize) >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) low.push(`${e.tagName} ${ratio.toFixed(2)} ${text.trim()}`);
  }
  return low;
}"""


async def _readable(page: Page) -> None:
    """Every visible text has WCAG AA contrast with its background (4.5:1, 3:1 when large)."""
    assert await page.evaluate(LOW_CONTRAST) == []


async def _open(console: Console, page: Page, number: str) -> None:
    await page.goto(f"{console.url}/console/accounts/{number}")
    await expect(page.get_by_role("heading", name=f"Account {number}")).to_be_visible()


async def _said(page: Page, text: str) -> None:
    await expect(page.get_by_role("status").first).to_contain_text(text)


async def _submit(form: Locator, button: str, fields: dict[str, str] | None = None) -> None:
    """Open the form's section if folded, fill ``fields`` (by label), press ``button``."""
    section = form.locator("xpath=ancestor::details[1]")
    if await section.count() and await section.get_attribute("open") is None:
        await section.locator("summary").click()
    for label, value in (fields or {}).items():
        box = form.get_by_label(label, exact=True)
        if await box.evaluate("e => e.tagName") == "SELECT":
            await box.select_option(value)
        else:
            await box.fill(value)
    await form.get_by_role("button", name=button, exact=True).click()


async def _until_shown(page: Page, selector: str, text: str, timeout: float = 30.0) -> None:
    """Reload until ``selector`` shows ``text`` (what the workflow writes back to the ledger)."""

    async def shown() -> bool:
        await page.reload()
        return text in (await page.locator(selector).inner_text())

    assert await eventually(shown, timeout=timeout), f"{selector} never showed {text!r}"


def _form(page: Page, action: str) -> Locator:
    return page.locator(f"form[action$='/{action}']")


async def test_each_account_action_in_the_browser(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """A staff user finds accounts by number, name and phone, and works them: hardship,
    settlement, plan, write-off and referral requests, returned mail, address, email, phone and
    consent changes, a death, a bankruptcy, an attorney, a cease request; opens a letter's PDF.
    Bad fields are refused naming the field, and nothing is done."""
    clerk = person(session_factory, "clerk", "staff")
    (money, plan, requests, contact, died, bankrupt, lawyer, cease) = await _import(
        settings, console, tmp_path, 8
    )
    page = await console.sign_in(clerk)

    # Search by guarantor name and by phone: a unique last name and number for one account.
    last = f"Synthetic{uuid.uuid4().hex[:6]}"
    line = f"{uuid.uuid4().int % 10**7:07d}"
    with session_factory.begin() as s:
        account = repo.account_by_number(s, money)
        assert account is not None
        guarantor = s.get(Guarantor, account.guarantor_id)
        assert guarantor is not None
        guarantor.last_name, guarantor.phone = last, f"+1500{line}"  # no place
    await page.get_by_role("link", name="Accounts").click()
    await page.get_by_label("Account number, guarantor name or phone").fill(last.lower())
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody")).to_contain_text(f"Testy {last}")
    await page.get_by_label("Account number, guarantor name or phone").fill(
        f"(500) {line[:3]}-{line[3:]}"
    )
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator("tbody tr")).to_have_count(1)
    await console.shot(page, "search")
    await page.get_by_role("link", name=money).click()
    await expect(page.get_by_role("heading", name=f"Account {money}")).to_be_visible()
    await expect(page.locator("#guarantor")).to_contain_text(f"Testy {last}")
    await expect(page.locator("#ledger")).to_contain_text("insurance paid")
    await expect(page.locator("#policy")).to_contain_text("instant")
    await expect(page.locator("#account-aging")).to_contain_text("55.00")  # one visit's bucket
    await _accessible(page)
    for section in await page.locator("details summary").all():  # every action form unfolded
        await section.click()
    await _readable(page)
    # From the keyboard: a folded section opens with Enter on its summary.
    await page.reload()
    await page.locator("#act-plan summary").focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#act-plan")).to_have_attribute("open", "")

    # Hardship: a percent out of range is refused by its field; 10% is granted.
    await _submit(
        _form(page, "hardship"),
        "Grant hardship",
        {"Discount percent (100 writes the balance off)": "0"},
    )
    await _said(page, "Not granted: discount_percent: a whole number from 1 to 100")
    assert not audit_rows(session_factory, "hardship", clerk.user_id)
    await _submit(
        _form(page, "hardship"),
        "Grant hardship",
        {"Discount percent (100 writes the balance off)": "10"},
    )
    await _said(page, "Hardship granted (10%): balance now $49.50")
    # The ledger's own line for it, once (not again from the workflow's record).
    await _until_shown(page, "#ledger", "financial assistance")
    await expect(page.locator("#ledger")).to_contain_text("-5.50")
    await expect(page.locator("#ledger")).not_to_contain_text("written off")
    # Settlement: an amount that is not one is refused by name; then offered (or for approval).
    await _submit(
        _form(page, "settlement"), "Offer settlement", {"Settlement amount, dollars": "forty"}
    )
    await _said(page, "Not offered: amount: 'forty' is not an amount in dollars")
    await expect(page.get_by_label("Settlement amount, dollars")).to_have_value("forty")  # kept
    await expect(page.locator("#act-settlement")).to_have_attribute("open", "")
    await _open(console, page, plan)  # another account's page: its form is empty
    await expect(page.get_by_label("Settlement amount, dollars")).to_have_value("")
    await _open(console, page, money)
    await _submit(
        _form(page, "settlement"), "Offer settlement", {"Settlement amount, dollars": "40"}
    )
    await _said(page, "Settlement of $40.00")
    assert audit_rows(session_factory, "hardship", clerk.user_id)
    assert audit_rows(session_factory, "settle", clerk.user_id)

    # A plan: a line that is not one is named; the suggested installments add up and are agreed.
    await _open(console, page, plan)
    form = _form(page, "plan")
    await _submit(
        form,
        "Agree plan",
        {"Installments (one a line: YYYY-MM-DD amount; they add up to the balance)": "x 55"},
    )
    await _said(page, "Not agreed: installments: line 1 'x 55'")
    box = page.locator("#plan-installments")
    await expect(box).to_have_value("x 55")  # what was typed, kept once
    await page.reload()
    assert (await box.input_value()).count("\n") == 2  # the suggestion again
    await _submit(_form(page, "plan"), "Agree plan")  # the suggestion: 3 installments, $55.00
    await _said(page, "Payment plan of 3 installments agreed.")
    await expect(page.locator("#plan")).to_contain_text("3 installments agreed")
    assert audit_rows(session_factory, "plan", clerk.user_id)

    # Write-off and referral requests: each opens a task for another person.
    await _open(console, page, requests)
    await _submit(_form(page, "write-off"), "Request write-off")
    await _said(page, "Not requested: reason: required for a write-off")
    await _submit(
        _form(page, "write-off"),
        "Request write-off",
        {"Write-off reason": "small balance (synthetic)"},
    )
    await _said(page, "Write-off requested: task")
    await _submit(
        _form(page, "referral"), "Request referral", {"Why refer": "no answer (synthetic)"}
    )
    await _said(page, "Referral requested: task")
    assert len(_tasks(session_factory, requests, TaskKind.APPROVAL)) == 2
    # A closing notice exists only after a cease request: the workflow's answer is shown.
    await _submit(_form(page, "closing-notice"), "Request closing notice")
    await _said(page, "Not requested: no cease-communication request on this account")
    await console.shot(page, "account-actions")

    # Contact: returned mail, a bad ZIP code named, the address, email, phone and consent.
    await _open(console, page, contact)
    await _submit(_form(page, "letter-returned"), "Report returned mail")
    await _said(page, "Returned mail recorded")
    address = {"Street": "2 Example Road", "City": "Springfield", "State": "ny", "ZIP code": "9999"}
    await _submit(_form(page, "address"), "Correct address", address)
    await _said(page, "Not corrected: postal_code:")
    await expect(_form(page, "address").get_by_label("Street")).to_have_value("2 Example Road")
    await _submit(_form(page, "address"), "Correct address", {**address, "ZIP code": UNLOCATED_ZIP})
    await _said(page, "Address corrected: letters may go again.")
    await expect(page.locator("#guarantor")).to_contain_text("2 Example Road")
    await _submit(_form(page, "email"), "Correct email", {"New email": "not-an-email"})
    await _said(page, "Not corrected: email: not an email address")
    await _submit(_form(page, "email"), "Correct email", {"New email": "ada@example.test"})
    await _said(page, "Email corrected")
    await _submit(_form(page, "phone"), "Correct phone", {"New phone": "+1 500 555 0188"})
    await _said(page, "Phone corrected")
    await _submit(
        _form(page, "consent"),
        "Record consent",
        {"Consent channel": "sms", "Consent": "withdrawn", "Told us": "front_desk"},
    )
    await _said(page, "Consent withdrawn for sms (front desk): effective now.")
    with session_factory() as s:
        row = repo.account_by_number(s, contact)
        assert row is not None
        g = s.get(Guarantor, row.guarantor_id)
        assert g is not None
        assert (g.address_line1, g.postal_code, g.email) == (
            "2 Example Road",
            UNLOCATED_ZIP,
            "ada@example.test",
        )
    for action in ("report_letter_returned", "report_address_corrected", "report_opted_out"):
        assert audit_rows(session_factory, action, clerk.user_id), action

    # Life and legal events.
    await _open(console, page, bankrupt)
    tomorrow2 = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    await _submit(
        _form(page, "bankruptcy"), "Report bankruptcy", {"Bankruptcy filed on": tomorrow2}
    )
    await _said(page, "Not recorded: filed_on: in the future")
    await _submit(
        _form(page, "bankruptcy"),
        "Report bankruptcy",
        {"Bankruptcy filed on": dt.date.today().isoformat(), "Chapter": "7"},
    )
    await _said(page, "Bankruptcy (chapter 7) recorded: collection stops")
    await _open(console, page, lawyer)
    await _submit(
        _form(page, "attorney"),
        "Report attorney",
        {"Attorney name": "A. Counsel (synthetic)", "Attorney email": "nope"},
    )
    await _said(page, "Not recorded: attorney_email:")
    await _submit(
        _form(page, "attorney"),
        "Report attorney",
        {"Attorney name": "A. Counsel (synthetic)", "Attorney email": "counsel@example.test"},
    )
    await _said(page, "Attorney representation recorded")
    await _open(console, page, cease)
    await _submit(_form(page, "cease-communication"), "Report cease communication")
    await _said(page, "Cease-communication request recorded")
    await _open(console, page, died)
    await _submit(_form(page, "death"), "Report death", {"Date of death": "2026-11-02"})
    await _said(page, "Death recorded")
    for action in (
        "report_bankruptcy",
        "report_attorney",
        "report_cease_communication",
        "report_deceased",
    ):
        assert audit_rows(session_factory, action, clerk.user_id), action

    async def estate_task() -> list[StaffTask]:
        return _tasks(session_factory, died, TaskKind.ESTATE)

    assert await eventually(estate_task, timeout=30.0)
    await _open(console, page, died)
    await expect(page.locator("#contact-ended")).to_contain_text("deceased")

    # The letter the ladder sent: listed with its channel, and its PDF opens.
    await _open(console, page, money)
    sent = page.locator("#sent")
    await expect(sent).to_contain_text("statement-1")
    link = sent.get_by_role("link", name="PDF of statement-1")
    href = await link.get_attribute("href")
    assert href
    r = await page.request.get(f"{console.url}{href}")
    assert r.status == 200 and r.headers["content-type"] == "application/pdf"
    assert (await r.body()).startswith(b"%PDF")
    assert audit_rows(session_factory, "letter_viewed", clerk.user_id)
    r = await page.request.get(
        f"{console.url}/console/accounts/{plan}/letters/{href.rsplit('/', 1)[1]}"
    )  # another account's letter is not served under this one
    assert "application/pdf" not in r.headers["content-type"]
    await console.shot(page, "account-full")
    # On a tablet (portrait) the page fits its width: nothing to scroll sideways.
    await page.set_viewport_size({"width": 820, "height": 1180})
    await page.reload()
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await console.shot(page, "account-tablet")


async def test_worklist_filters_call_outcomes_and_other_task_kinds(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """Each call outcome recorded from a call task that shows its script and the number to dial;
    filters by kind, age and assignee; an estate task says what to do."""
    clerk = person(session_factory, "clerk", "staff")
    lead = person(session_factory, "lead", "billing_lead", "supervisor")
    numbers = await _import(settings, console, tmp_path, 4, calls=True)

    async def all_calls() -> list[StaffTask]:
        found = [t for n in numbers for t in _tasks(session_factory, n, TaskKind.CALL)]
        return found if len(found) == len(numbers) else []

    calls = await eventually(all_calls, timeout=40.0)
    assert isinstance(calls, list)
    page = await console.sign_in(clerk)
    # Every kind may be chosen, open tasks of it or not.
    for kind in TaskKind:
        await expect(page.locator(f"#kind option[value='{kind.value}']")).to_have_count(1)
    # Filter: calls only; the script and the number on each card.
    await page.get_by_label("Kind").select_option("call")
    await page.get_by_role("button", name="Filter").click()
    await expect(page).to_have_url(f"{console.url}/console/worklist?kind=call&age=&assignee=")
    assert {await c.get_attribute("data-kind") for c in await page.locator("li.task").all()} == {
        "call"
    }
    for task in calls:
        card = page.locator(f"#task-{task.id}")
        with session_factory() as s:
            account = s.get(Account, task.account_id)
            assert account is not None
            guarantor = s.get(Guarantor, account.guarantor_id)
            assert guarantor is not None and guarantor.phone
            dial = guarantor.phone
        await expect(card.locator(".phone")).to_have_text(dial)
        await card.get_by_text("Call script").click()
        await expect(card.locator(".script pre")).not_to_be_empty()
    await _readable(page)
    # The scripts wrap: nothing to scroll sideways at 1280 pixels.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await console.shot(page, "worklist-calls")
    await _accessible(page)
    # Age: none of today's tasks is a week old.
    await page.goto(f"{console.url}/console/worklist?kind=call&age=7")
    for task in calls:
        await expect(page.locator(f"#task-{task.id}")).to_have_count(0)
    # Each outcome but a promise (the day-of-work test records one) from its card.
    results = ["reached", "voicemail", "no_answer", "wrong_number"]
    await page.goto(f"{console.url}/console/worklist?kind=call")
    for task, result in zip(calls, results, strict=True):
        card = page.locator(f"#task-{task.id}")
        await card.get_by_label("Call outcome").select_option(result)
        await card.get_by_role("button", name="Record").click()
        await _said(page, f"recorded: {result.replace('_', ' ')}.")
        await expect(page).to_have_url(f"{console.url}/console/worklist?kind=call")  # kept
    for task, result in zip(calls, results, strict=True):
        with session_factory() as s:
            done = s.get(StaffTask, task.id)
            assert done is not None and done.status is TaskStatus.DONE
            assert done.detail["outcome"]["result"] == result
    audited = {
        e.detail.get("task_id") for e in audit_rows(session_factory, "call_outcome", clerk.user_id)
    }
    assert audited >= {str(t.id) for t in calls}
    # A promise without its date is refused, naming it (the call task is already done: the
    # workflow's outcome stands).
    r = await page.request.post(
        f"{console.url}/console/tasks/{calls[0].id}/call",
        form={"csrf": await _csrf(page), "result": "promise_to_pay"},
    )
    assert "promised_date: give the promised date" in await r.text()

    # Assignee: a write-off request by the clerk is the lead's to decide, not the clerk's.
    page2 = await console.sign_in(clerk)
    await _open(console, page2, numbers[0])
    await _submit(_form(page2, "write-off"), "Request write-off", {"Write-off reason": "synthetic"})
    await _said(page2, "Write-off requested")
    (asked,) = _tasks(session_factory, numbers[0], TaskKind.APPROVAL)
    await page2.goto(f"{console.url}/console/worklist?assignee=me")
    await expect(page2.locator(f"#task-{asked.id}")).to_have_count(0)
    await page2.goto(f"{console.url}/console/worklist?assignee=supervisor")
    await expect(page2.locator(f"#task-{asked.id}")).to_have_count(1)
    page3 = await console.sign_in(lead)
    await page3.goto(f"{console.url}/console/worklist?assignee=me&kind=approval")
    card = page3.locator(f"#task-{asked.id}")
    await expect(card).to_contain_text("Four eyes: whoever asked for it may not decide it.")
    await expect(card).to_contain_text(f"requested by {clerk.name}")

    # A death opens an estate task: in the worklist, with what to do and the account's link.
    await _open(console, page2, numbers[1])
    await _submit(_form(page2, "death"), "Report death")
    await _said(page2, "Death recorded")

    async def estate() -> list[StaffTask]:
        return _tasks(session_factory, numbers[1], TaskKind.ESTATE)

    found = await eventually(estate, timeout=30.0)
    assert isinstance(found, list)
    await page3.goto(f"{console.url}/console/worklist?kind=estate")
    card = page3.locator(f"#task-{found[0].id}")
    await expect(card).to_contain_text("send the account to the estate queue")
    await card.get_by_role("link", name="Open the account's actions").click()
    await expect(page3.get_by_role("heading", name=f"Account {numbers[1]}")).to_be_visible()
    await console.shot(page3, "worklist-estate")

    # A cease request opens the one closing notice's approval: approved with what it says.
    await _open(console, page2, numbers[2])
    await _submit(_form(page2, "cease-communication"), "Report cease communication")
    await _said(page2, "Cease-communication request recorded")

    async def closing() -> list[StaffTask]:
        tasks = _tasks(session_factory, numbers[2], TaskKind.APPROVAL)
        return [t for t in tasks if t.step_id == "closing_notice"]

    notice = await eventually(closing, timeout=30.0)
    assert isinstance(notice, list) and len(notice) == 1
    await _submit(_form(page2, "closing-notice"), "Request closing notice")
    await _said(page2, "Not requested: the closing notice is already open")  # the one allowed
    await page3.goto(f"{console.url}/console/worklist?kind=approval")
    card = page3.locator(f"#task-{notice[0].id}")
    await card.get_by_label("Closing notice says").select_option("terminate")
    await card.get_by_label("Reason").fill("patient asked us to stop")
    await card.get_by_role("button", name="Approve").click()
    await _said(page3, f"Task {str(notice[0].id)[:8]} approved.")
    (approved,) = [
        e
        for e in audit_rows(session_factory, "approve", lead.user_id)
        if e.detail.get("task_id") == str(notice[0].id)
    ]
    assert approved.detail["purpose"] == "terminate" and approved.detail["outcome"] == "done"


ACTIONS: dict[str, dict[str, Any]] = {
    "hardship": {"discount_percent": "10"},
    "plan": {"installments": "2027-01-15 55.00"},
    "settlement": {"amount": "40"},
    "write-off": {"reason": "synthetic"},
    "referral": {},
    "closing-notice": {},
    "death": {},
    "bankruptcy": {"filed_on": "2026-11-01", "chapter": "7"},
    "attorney": {"attorney_name": "synthetic"},
    "cease-communication": {},
    "letter-returned": {},
    "address": {"line1": "x", "city": "y", "state": "NY", "postal_code": UNLOCATED_ZIP},
    "email": {"email": "a@example.test"},
    "phone": {"phone": UNLOCATED_PHONE},
    "consent": {"channel": "sms", "change": "given", "via": "phone"},
}


async def test_a_read_only_role_is_refused_every_account_action(
    console: Console, session_factory: sessionmaker[Session], settings: Settings, tmp_path: Path
) -> None:
    """The admin role reads the account page, is offered no action, and each posted action is
    refused for the act permission (audited); without the CSRF token a staff user is refused."""
    admin = person(session_factory, "admin", "admin")
    clerk = person(session_factory, "clerk", "staff")
    (number,) = await _import(settings, console, tmp_path, 1, calls=True)

    async def call_open() -> list[StaffTask]:
        return _tasks(session_factory, number, TaskKind.CALL)

    calls = await eventually(call_open, timeout=30.0)
    assert isinstance(calls, list) and len(calls) == 1
    page = await console.sign_in(admin)
    card = page.locator(f"#task-{calls[0].id}")  # the call is shown, its outcome not offered
    await expect(card).to_contain_text("may not record calls")
    assert await card.get_by_role("button", name="Record").count() == 0
    await _open(console, page, number)
    assert await page.locator("#act-plan").count() == 0
    csrf = await _csrf(page)
    for action, form in ACTIONS.items():
        r = await page.request.post(
            f"{console.url}/console/accounts/{number}/{action}",
            form={"csrf": csrf, **form},
            max_redirects=0,
        )
        assert r.status == 403 and "(act)" in await r.text(), action
    refused = audit_rows(session_factory, "forbidden", admin.user_id)
    assert len(refused) == len(ACTIONS)
    page2 = await console.sign_in(clerk)
    for action, form in ACTIONS.items():
        r = await page2.request.post(
            f"{console.url}/console/accounts/{number}/{action}", form=form, max_redirects=0
        )
        assert r.status == 403 and "CSRF" in await r.text(), action
    assert len(audit_rows(session_factory, "csrf_refused", clerk.user_id)) == len(ACTIONS)
    with session_factory() as s:
        account = s.scalars(select(Account).where(Account.account_number == number)).one()
        assert account.balance_cents == 5500  # nothing was done
