"""Helpers of the console's browser tests: the app served by uvicorn on a real port (with a worker
on the dev server), Chromium driven by Playwright, users with console passwords, screenshots."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config.settings import Settings
from models.orm import AuditEvent
from services.console_auth import set_password
from services.identity import SYSTEM
from services.users import add_user
from tests.support.waits import until_flag
from worker import build_worker

CHROMIUM = os.environ.get("DUNNING_CHROMIUM", "/usr/bin/chromium")
SHOTS_ENV = "DUNNING_CONSOLE_SCREENSHOTS"
"""A directory to copy the screenshots to as well (docs/images when refreshing the README's)."""


@dataclass
class Person:
    name: str
    password: str
    user_id: str


def person(session_factory: sessionmaker[Session], label: str, *roles: str) -> Person:
    """A new user holding ``roles`` with a console password, as `dunning user add` makes them."""
    name = f"{label}-{uuid.uuid4().hex[:6]}"
    with session_factory.begin() as session:
        user = add_user(session, name, list(roles), SYSTEM)
        return Person(name, set_password(session, name, SYSTEM), str(user.id))


@dataclass
class Console:
    url: str
    app: FastAPI
    browser: Browser
    shots: Path

    async def page(self) -> Page:
        context = await self.browser.new_context(viewport={"width": 1280, "height": 800})
        return await context.new_page()

    async def sign_in(self, who: Person) -> Page:
        page = await self.page()
        await page.goto(f"{self.url}/console/sign-in")
        await page.get_by_label("Name").fill(who.name)
        await page.get_by_label("Password").fill(who.password)
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url("**/console/worklist")
        return page

    async def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"console-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        target = os.environ.get(SHOTS_ENV)
        if target:
            shutil.copy(path, Path(target) / path.name)
        return path


@asynccontextmanager
async def running_console(
    client: Client, settings: Settings, session_factory: sessionmaker[Session], shots: Path
) -> AsyncIterator[Console]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it (as root), or run "
            "`sudo apt-get install chromium` (or set DUNNING_CHROMIUM)"
        )
    app = create_app(settings, session_factory, client)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    async with build_worker(client, settings, session_factory), async_playwright() as pw:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await until_flag(lambda: server.started, 20.0, "uvicorn")
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                yield Console(f"http://127.0.0.1:{port}", app, browser, shots)
            finally:
                await browser.close()
        finally:
            server.should_exit = True
            await serving
            sock.close()


# -- accessibility: what every console page must pass (call it on each page a test visits) ------

A11Y_SCAN = """() => {
  // Inside a closed <details> (but not its summary) nothing is shown or focusable, though
  // Chromium keeps its boxes (content-visibility) and its computed display.
  const folded = e => {
    const d = e.closest('details:not([open])');
    const summary = e.closest('summary');
    return d !== null && !(summary && summary.parentElement === d);
  };
  const visible = e => {
    const s = getComputedStyle(e);
    return s.visibility !== 'hidden' && s.display !== 'none' && e.getClientRects().length > 0
      && !folded(e);
  };
  const controls = [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea')];
  const unlabelled = controls.filter(e => !(e.labels && e.labels.length)
      && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
    .map(e => e.outerHTML.slice(0, 80));
  const actions = [...document.querySelectorAll('a[href], button, summary')];
  // textContent: innerText is empty inside a closed <details>, whose buttons still have a name.
  const nameless = actions.filter(e => !(e.innerText || e.textContent || '').trim()
      && !e.getAttribute('aria-label') && !e.getAttribute('title'))
    .map(e => e.outerHTML.slice(0, 80));
  const positive = [...document.querySelectorAll('[tabindex]')]
    .filter(e => parseInt(e.getAttribute('tabindex'), 10) > 0).map(e => e.outerHTML.slice(0, 80));
  const focusable = [...document.querySelectorAll(
      'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]')]
    .filter(e => !e.disabled && (e.getAttribute('tabindex') !== '-1'
      || e.matches('a[href], button, input, select, textarea, summary')))
    .filter(e => e.classList.contains('skip') || visible(e))
    .filter(e => !(e.type === 'radio' && !e.checked
      && document.querySelector(`input[type=radio][name="${e.name}"]:checked`)));
  focusable.forEach((e, i) => e.setAttribute('data-a11y', String(i)));
  const first = focusable[0];
  const skip = first && first.matches('a.skip[href^="#"]')
    && document.getElementById(first.getAttribute('href').slice(1)) !== null;
  return {
    unlabelled, nameless, positive, skip,
    mains: document.querySelectorAll('main').length,
    banner: document.querySelectorAll('body > header').length,
    lang: document.documentElement.getAttribute('lang'),
    focusable: focusable.map(e => e.outerHTML.slice(0, 80)),
  };
}"""

CONTRAST = """() => {
  const parse = c => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + below[i] * (1 - a)).concat([1]);
  };
  const background = e => {
    const layers = [];
    for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
      const c = parse(getComputedStyle(n).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const lum = c => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const failures = [];
  let checked = 0;
  for (const e of document.querySelectorAll('body *')) {
    const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || e.closest('[aria-hidden=true]') || e.disabled) continue;
    const s = getComputedStyle(e);
    if (s.visibility === 'hidden' || s.display === 'none' || !e.getClientRects().length) continue;
    if (e.closest('.skip') && !e.matches(':focus')) continue;  /* off screen until focused */
    const isSvg = e instanceof SVGElement;
    const fg = parse(isSvg ? s.fill : s.color);
    if (!fg) continue;
    const bg = background(e);
    const text = over(fg, bg);
    const [hi, lo] = [lum(text), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(s.fontSize);
    const large = size >= 24 || (size >= 18.66 && parseInt(s.fontWeight, 10) >= 700);
    checked += 1;
    if (ratio < (large ? 3 : 4.5)) {
      failures.push(`${e.tagName.toLowerCase()}.${e.className && e.className.baseVal !== undefined
        ? e.className.baseVal : e.className} "${e.textContent.trim().slice(0, 30)}" `
        + `${ratio.toFixed(2)}:1 (rgb(${fg.slice(0, 3).join(',')})`
        + ` on rgb(${bg.slice(0, 3).join(',')}))`);
    }
  }
  return {failures, checked};
}"""

TAB_LIMIT = 400
TOP_OF_PAGE = (
    "const h = document.documentElement; h.setAttribute('tabindex', '-1'); h.focus();"
    " window.scrollTo(0, 0);"
)
"""Focus before the first element of the document, where a page load starts the Tab order."""


async def assert_accessible(page: Page) -> None:
    """The accessibility basics of a console page (WCAG 2.1 AA, the parts a script can check):

    - the page's language, one ``main`` landmark, a banner, and a skip link first in the Tab
      order that points at an element of the page;
    - every form control has a label (``<label for>``, ``aria-label`` or ``aria-labelledby``),
      every link and button a name; no positive ``tabindex`` (the Tab order is the reading order);
    - the keyboard reaches every action: pressing Tab from the top focuses each visible link,
      button and control, in document order;
    - text contrast at least 4.5:1 (3:1 for large text), computed from the computed styles with
      the WCAG relative-luminance formula, semi-transparent backgrounds composited.
    """
    scan = await page.evaluate(A11Y_SCAN)
    assert scan["lang"] == "en", "the page states its language"
    assert scan["mains"] == 1 and scan["banner"] == 1, "one main landmark and a banner"
    assert scan["skip"], "the first focusable element is a skip link to the main content"
    assert scan["unlabelled"] == [], f"form controls without a label: {scan['unlabelled']}"
    assert scan["nameless"] == [], f"links or buttons without a name: {scan['nameless']}"
    assert scan["positive"] == [], f"positive tabindex breaks the Tab order: {scan['positive']}"
    expected = len(scan["focusable"])
    # Start where a page load starts: before the first element of the document.
    await page.evaluate(f"() => {{ {TOP_OF_PAGE} }}")
    reached: list[int] = []
    for _ in range(min(TAB_LIMIT, expected * 4 + 4)):
        await page.keyboard.press("Tab")
        index = await page.evaluate(
            "() => { const a = document.activeElement;"
            " return a && a.dataset.a11y !== undefined ? Number(a.dataset.a11y) : -1; }"
        )
        if index >= 0 and index not in reached:
            reached.append(index)
        if len(reached) == expected:
            break
    # Leave the page as loaded: the next Tab goes to the skip link again.
    await page.evaluate(f"() => {{ {TOP_OF_PAGE} }}")
    missed = [scan["focusable"][i] for i in range(expected) if i not in reached]
    assert not missed, f"the keyboard does not reach: {missed}"
    assert reached == sorted(reached), "the Tab order follows the document order"
    contrast = await page.evaluate(CONTRAST)
    assert contrast["checked"] > 0, "some text was checked"
    assert contrast["failures"] == [], f"text below the contrast minimum: {contrast['failures']}"


async def assert_fits(page: Page) -> None:
    """No horizontal scroll: the page fits its viewport's width (a tablet's 768 px included)."""
    widths = await page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"page {widths[0]} px wide in a {widths[1]} px viewport"


@pytest.fixture
async def console(
    dev_env: WorkflowEnvironment,
    settings: Settings,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> AsyncIterator[Console]:
    """The console served on the dev server, with a browser; screenshots in the test's folder."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    async with running_console(dev_env.client, settings, session_factory, shots) as c:
        yield c


def audit_rows(
    session_factory: sessionmaker[Session], action: str, actor_id: str
) -> list[AuditEvent]:
    """The audit rows of ``action`` by ``actor_id`` (a user's id: each test makes its own)."""
    with session_factory() as s:
        return list(
            s.scalars(
                select(AuditEvent).where(AuditEvent.action == action, AuditEvent.actor == actor_id)
            )
        )
