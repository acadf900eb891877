"""The console in a real browser (Playwright driving Debian's Chromium): a proposal walked from
submission to release entirely in the console by five people — the partner and the four
bodies — each at their own browser; a refused form showing its field errors; a partner who
cannot open another partner's case; a form replayed without its CSRF token refused. Every page
visited is checked for labels, one heading and no sideways scrolling at 200 % zoom, and no
request leaves the product. KWANUS_CONSOLE_SCREENSHOTS=1 writes docs/console-*.png."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect
from temporalio.testing import WorkflowEnvironment

from policy.review import criteria_of
from policy.vocabulary import Body
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.schemas import PartnerCreate, TokenCreate
from testdata.factories import partner_body
from tests.apistack import unique
from tests.browser import Person, check_accessible, launched, person, served, sign_in_by_keyboard
from tests.test_console import PROPOSAL_FORM

DOCS = Path(__file__).resolve().parents[1] / "docs"
SCREENSHOTS = os.environ.get("KWANUS_CONSOLE_SCREENSHOTS") == "1"
# 200 % zoom of a 1280-pixel-wide window: 640 CSS pixels across.
ZOOMED = 640


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launched() as b:
        yield b


@pytest.fixture
def sqlite_db(tmp_path: Path) -> AsyncIterator[Database] | Any:
    """The browser tests run on SQLite: what they add over tests/test_console.py (which runs on
    both databases) is what a browser sees; the store behind it is the API's."""
    url = f"sqlite:///{tmp_path / 'kwanus.db'}"
    upgrade(url)
    db = Database(url)
    yield db
    db.dispose()


def token(db: Database, role: str, partner_id: str | None = None) -> str:
    with db.session() as session:
        return repo.create_token(
            session=session, token=TokenCreate(role=role, partner_id=partner_id)
        ).token


def register(db: Database, partner_id: str) -> str:
    with db.session() as session:
        repo.create_partner(
            session=session, partner=PartnerCreate.model_validate(partner_body(partner_id))
        )
    return token(db, "partner", partner_id)


async def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        await page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=True)


async def open_case(who: Person, path: str, form_title: str) -> None:
    """The case page, reloaded until the step's form is there (the process moves on between
    steps by itself: the risk assessment, the decision)."""
    for _ in range(60):
        await who.page.goto(path)
        if await who.page.get_by_role("heading", name=form_title, exact=True).count():
            return
        await who.page.wait_for_timeout(250)
    raise AssertionError(f"{who.name}: no '{form_title}' form on {path}")


async def send(who: Person, button: str) -> None:
    await who.page.get_by_role("button", name=button).click()
    await expect(who.page.locator(".done")).to_be_visible()


async def test_a_proposal_walked_to_its_release_in_the_console_by_five_people(
    dev_env: WorkflowEnvironment, sqlite_db: Database, browser: Browser
) -> None:
    db = sqlite_db
    partner_id = unique("acme")
    partner_token = register(db, partner_id)
    other_token = register(db, unique("globex"))
    async with served(dev_env, db) as base:
        partner = await person(browser, base, "partner")
        bodies = {b: await person(browser, base, b.value) for b in Body}
        await sign_in_by_keyboard(partner, partner_token)
        for b, who in bodies.items():
            await sign_in_by_keyboard(who, token(db, b.value))

        # The partner proposes (category A), with the fields of its category.
        page = partner.page
        await page.goto("/console/propose")
        await page.get_by_label("A — a capability (E-3.1)").check()
        await page.get_by_role("button", name="Show its form").click()
        await check_accessible(page)
        for name, value in PROPOSAL_FORM.items():  # the factory's proposal, typed in
            if name in ("category", "requested_tier"):  # chosen above; the form carries the tier
                continue
            control = f"#f-{name.replace('.', '-')}"
            if name.endswith(".kind"):
                await page.select_option(control, value)
            else:
                await page.fill(control, value)
        await page.get_by_role("button", name="Submit the proposal").click()
        await page.wait_for_url(re.compile(r"/console/expansions/[0-9a-f]+"))
        case = page.url.split("?")[0].removeprefix(base)
        await expect(page.locator("[aria-current=step]")).to_have_text(re.compile("Evaluation"))

        # Each body finds it in its inbox and reviews its own criteria.
        for b, who in bodies.items():
            await who.page.goto("/console/inbox")
            await expect(
                who.page.get_by_role("link", name=re.compile(case.split("/")[-1]))
            ).to_be_visible()
            if b is Body.TSC:
                await shot(who.page, "inbox")
            await check_accessible(who.page)
            await who.page.get_by_role("link", name=re.compile(case.split("/")[-1])).click()
            await expect(who.page.get_by_role("heading", name="Review", exact=True)).to_be_visible()
            if b is Body.SCO:
                await shot(who.page, "review-form")
            await check_accessible(who.page)
            for criterion in criteria_of(b):
                await who.page.check(f"input[name='criteria.{criterion}'][value='pass']")
            await who.page.check("input[name='recommendation'][value='approve']")
            await send(who, "Send the review")

        # The vote: majority, CGB final.
        for who in bodies.values():
            await open_case(who, case, "Vote")
            await who.page.check("input[name='decision'][value='approve']")
            await who.page.fill("#f-rationale", "sound, and within its tier")
            await send(who, "Cast the vote")

        # The partner: integration plan by keyboard alone, then a refused implementation.
        await open_case(partner, case, "Integration plan")
        await page.focus("#f-versioning")
        await page.keyboard.type("semver")
        await page.keyboard.press("Tab")
        await page.keyboard.type("additive only")
        await page.keyboard.press("Tab")
        await page.keyboard.type("canary to 5 % then all")
        await page.keyboard.press("Tab")  # the button
        await page.keyboard.press("Enter")
        await expect(page.locator(".done")).to_be_visible()

        await open_case(partner, case, "Implementation report")
        await page.fill("#f-development", "https://git.example.com/acme/widget/pull/1")
        await page.fill("#f-testing", "the tests passed")  # not a reference (E-2.6)
        await page.fill("#f-documentation", "docs/widget.md")
        await page.get_by_role("button", name="Send").click()
        error = page.locator("#f-testing-error")
        await expect(error).to_be_visible()
        await expect(page.locator("#f-testing")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator("#f-documentation")).to_have_value("docs/widget.md")  # kept
        await check_accessible(page)
        await page.fill("#f-testing", "ci/results/1.xml")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".done")).to_be_visible()

        await open_case(partner, case, "Versioned release")
        await page.fill("#f-version", "1.0.0")
        await page.fill("#f-migration_guide", "docs/1.0")
        await page.fill("#f-fallback_behaviour", "off")
        await page.select_option("#f-compatibility-0-kind", "runtime")
        await page.fill("#f-compatibility-0-name", "kwanus-runtime")
        await page.fill("#f-compatibility-0-version", "3.0")
        await send(partner, "Publish the release")
        await expect(page.locator("[aria-current=step]")).to_have_text(re.compile("Monitoring"))
        await expect(page.locator("#audit + p + table")).to_contain_text("governance update")
        await shot(page, "case")

        # 200 % zoom: the case page and a form read without sideways scrolling.
        zoomed = await person(browser, base, "CGB at 200 %", width=ZOOMED)
        await sign_in_by_keyboard(zoomed, token(db, "CGB"))
        await zoomed.page.goto(case)
        await check_accessible(zoomed.page)

        # Another partner: the case does not exist for it.
        intruder = await person(browser, base, "globex")
        await sign_in_by_keyboard(intruder, other_token)
        resp = await intruder.page.goto(case)
        assert resp is not None and resp.status == 404
        await expect(intruder.page.get_by_role("heading", name="Not found")).to_be_visible()
        await expect(intruder.page.locator("body")).not_to_contain_text("order analytics")

        # A form replayed without its CSRF token, with the partner's own cookies: refused.
        replay = await partner.context.request.post(f"{case}/withdraw", form={"reason": "replayed"})
        assert replay.status == 403
        await partner.page.goto(case)
        await expect(partner.page.locator(".tag").first).to_have_text("active")

        everyone = [partner, *bodies.values(), zoomed, intruder]
        outside = [u for who in everyone for u in who.requests if not u.startswith(base)]
        assert outside == []  # no asset fetched from outside the product
