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
from sqlalchemy.orm import Session, sessionmaker
from temporalio.client import Client

from api.app import create_app
from config.settings import Settings
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
