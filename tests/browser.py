"""Browser tests' set-up: Debian's Chromium driven by Playwright (its own browser download does
not work here), and the product served over real HTTP on loopback (uvicorn in process) with a
worker and the dev server. Without Chromium the browser tests are skipped — and `make test`
says so plainly at the end — unless KWANUS_REQUIRE_BROWSER=1 (CI), which fails them instead."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from kwanus.settings import Settings
from store.db import Database
from tests.conftest import running_worker

NOT_RUN = "browser tests not run"
ENABLE = (
    "install Chromium (`apt-get install -y chromium`; .ci/run does) to run them, or set "
    "KWANUS_REQUIRE_BROWSER=1 to make its absence a failure"
)


def chromium() -> str:
    """Debian's Chromium, or the test is skipped (failed where the browser is required)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("KWANUS_REQUIRE_BROWSER") == "1":
        pytest.fail("Chromium is required (KWANUS_REQUIRE_BROWSER=1) but not installed")
    pytest.skip(f"{NOT_RUN}: Chromium is not installed — {ENABLE}")


@asynccontextmanager
async def launched() -> AsyncIterator[Browser]:
    executable = chromium()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def served(env: WorkflowEnvironment, db: Database) -> AsyncIterator[str]:
    """The API and its console over HTTP on a free loopback port, with a worker: its base URL."""
    async with running_worker(env.client, db) as task_queue:
        settings = Settings(database_url=db.url, task_queue=task_queue, console_secure_cookie=False)
        app = create_app(settings, temporal=env.client)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


@dataclass
class Person:
    """One actor at their own browser (own cookies): every request it makes is recorded."""

    name: str
    context: BrowserContext
    page: Page
    requests: list[str] = field(default_factory=list)


async def person(browser: Browser, base: str, name: str, *, width: int = 1280) -> Person:
    context = await browser.new_context(base_url=base, viewport={"width": width, "height": 900})
    page = await context.new_page()
    who = Person(name, context, page)
    page.on("request", lambda request: who.requests.append(request.url))
    return who


async def sign_in_by_keyboard(who: Person, token: str) -> None:
    """Keyboard only: Tab to the token field, type it, Enter."""
    page = who.page
    await page.goto("/console/sign-in")
    for _ in range(10):
        if await page.evaluate("document.activeElement && document.activeElement.id") == "token":
            break
        await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "token", "no Tab reaches it"
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console/inbox")


# Every visible control must have a label (its own <label>, or aria-label / aria-labelledby).
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(e => e.type !== 'hidden' && e.offsetParent !== null)
  .filter(e => e.tagName === 'BUTTON' ? !e.textContent.trim()
    : !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
      && !e.getAttribute('aria-labelledby'))
  .map(e => e.name || e.id || e.outerHTML.slice(0, 80))"""

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


async def check_accessible(page: Page) -> None:
    """Labels on every control, one <h1>, and no sideways scrolling at the page's width."""
    assert await page.evaluate(UNLABELLED) == [], page.url
    assert await page.locator("h1").count() == 1, page.url
    assert await page.evaluate(OVERFLOW) <= 0, page.url
