"""Attacks on the web console (review attack21): each test asserts the secure behaviour and
fails on the code it was written against."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from store.db import Database
from tests.apistack import Api, serving, unique
from tests.consolestack import actor, bearer
from tests.test_console import PROPOSAL_FORM, submitted


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    async with serving(dev_env, db, console_secure_cookie=False) as stack:
        yield stack


async def test_a_forged_row_index_does_not_stall_the_whole_server(api: Api) -> None:
    """HIGH. `forms.row_count` trusts the largest `<rows-field>.<n>.` index a form posts and
    `body_of` (then the re-rendered form) walks every index up to it, synchronously, on the
    event loop. One ~60-byte POST from any signed-in partner — `requested_capabilities.
    1000000000000.name=x` — freezes every request of the process (console, /v1, /healthz) for
    as long as it takes to count there. Here a modest 20 000 stops the loop ~5 s (200 000:
    ~100 s; the time grows with the number, and the number is free)."""
    me = actor(api)
    assert (await me.sign_in(bearer(await api.partner(unique("dos"))))).status_code == 303
    await me.page("/console/propose?category=A")
    forged = {**PROPOSAL_FORM, "requested_capabilities.20000.name": "x"}

    done = asyncio.Event()

    async def attack() -> Any:
        try:
            return await me.send("/console/propose", forged)
        finally:
            done.set()

    async def stalled() -> float:
        """The longest the event loop — the one every request of the process is served on —
        went without running anything else while the post was in flight."""
        worst, tick = 0.0, time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            worst, tick = max(worst, now - tick), now
        return worst

    started = time.perf_counter()
    attacked, stall = await asyncio.gather(attack(), stalled())
    took = time.perf_counter() - started
    assert attacked.status_code < 500
    assert (await api.http.get("/healthz")).status_code == 200
    assert stall < 0.5, f"no other request could be served for {stall:.1f} s"
    assert took < 2.0, f"one form post held the server {took:.1f} s"


async def test_an_outsider_cannot_spend_a_named_tokens_rate_limit(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """MEDIUM. `RateLimit._key` buckets a request by the token id its Authorization header
    *claims* (`kw1.<id>.<anything>`), before anyone checks the secret; the console's calls are
    bucketed under the same `token:<id>`. So an outsider with no credential at all, who knows
    a token's id (the public half: in audit rows' `submitted_by`, GET /v1/tokens, logs), sends
    garbage bearer tokens naming it and the real holder's console (and API) answers 429 for
    as long as the flood lasts. A refused request must not spend anyone's bucket."""
    async with serving(dev_env, db, console_secure_cookie=False, rate_limit_per_minute=10) as api:
        partner = await api.partner(unique("victim"))
        victim = actor(api)
        assert (await victim.sign_in(bearer(partner))).status_code == 303
        token_id = bearer(partner).split(".")[1]
        for _ in range(12):  # no credential: only the victim's id and a made-up secret
            forged = await api.http.get(
                "/v1/expansions", headers={"Authorization": f"Bearer kw1.{token_id}.guess"}
            )
            assert forged.status_code in (401, 429)
        inbox = await victim.page("/console/inbox")
        assert inbox.status_code == 200, inbox.text[-600:]
        own = await api.http.get("/v1/expansions", headers=partner)
        assert own.status_code == 200, own.text


async def test_token_guesses_are_throttled_per_client(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """LOW (defence in depth: a secret is 256 bits). Without a valid token, requests are meant
    to be limited per client address. Two ways round it: (1) POST /console/sign-in checks a
    token on every post and is outside `/v1/`, so RateLimit never sees it — unlimited guesses
    (each a DB read, and a new session row per success); (2) on /v1 a made-up token id in
    each guess (`kw1.<new id>.x`) gets a fresh bucket every time."""
    async with serving(
        dev_env,
        db,
        console_secure_cookie=False,
        rate_limit_per_minute=5,
        auth_failures_per_minute=5,
    ) as api:
        guesser = actor(api)
        signin: list[int] = []
        for i in range(15):
            form = await guesser.http.get("/console/sign-in")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce
            resp = await guesser.http.post(
                "/console/sign-in",
                data={"nonce": nonce.group(1), "token": f"kw1.tok_{i:016x}.guess"},
            )
            signin.append(resp.status_code)
        direct: list[int] = []
        for i in range(15):
            resp = await api.http.get(
                "/v1/expansions", headers={"Authorization": f"Bearer kw1.tok_{i:016x}.guess"}
            )
            direct.append(resp.status_code)
        assert 429 in signin, signin
        assert 429 in direct, direct


async def _status(call: Any) -> int:
    """The status of a console request; an exception out of the app is the server's 500."""
    try:
        resp = await call
    except Exception:  # the app raised: what a client sees is a 500
        return 500
    return int(resp.status_code)


async def _raw_get(api: Api, path: str, cookie: str) -> int:
    """GET `path` exactly as sent (`curl --path-as-is`): httpx would remove its dot segments,
    uvicorn does not."""
    assert api.transport is not None
    app = api.transport.app  # type: ignore[attr-defined]
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"kwanus"), (b"cookie", f"kwanus_session={cookie}".encode())],
        "client": ("203.0.113.9", 5555),
        "server": ("kwanus", 80),
    }
    try:
        await app(scope, receive, send)
    except Exception:
        return 500
    return sent[0]


async def test_a_step_or_case_path_the_console_does_not_expect_is_refused_not_a_crash(
    api: Api,
) -> None:
    """LOW (robustness; nothing leaks). (1) A review form posted by a role that is not a body
    (a partner, ops, admin): `StepForm.fields` calls `Body(role.value)` → ValueError → 500,
    where the API answers 403. (2) A case id of `.`: the gateway's f-string URL
    `/v1/expansions/.` is normalised by httpx to `/v1/expansions` — the *list* route — whose
    200 list the case page then indexes as a state → 500. (The gateway's URLs take dot
    segments: `..` reaches `/v1`, `/v1/<step>`; here nothing worse, the token being the
    same, but the id should be refused before it becomes a path.)"""
    owner = await api.partner(unique("own"))
    eid = await submitted(api, owner, "crash")
    base = f"/console/expansions/{eid}"
    for who in (owner, api.token("ops"), api.admin):
        person = actor(api)
        assert (await person.sign_in(bearer(who))).status_code == 303
        await person.page(base)
        status = await _status(person.send(f"{base}/reviews", {"recommendation": "approve"}))
        assert status == 403, (who, status)
    me = actor(api)
    assert (await me.sign_in(bearer(owner))).status_code == 303
    cookie = me.http.cookies.get("kwanus_session")
    assert cookie
    assert await _raw_get(api, base, cookie) == 200  # the helper works
    for path in ("/console/expansions/.", "/console/migrations/."):
        assert await _raw_get(api, path, cookie) == 404, path


async def test_a_case_page_does_not_print_text_from_its_link(api: Api) -> None:
    """LOW (content spoofing). `?done=` is printed on the case page as the product's own
    status line ("Taken: ….") whatever it says: a link a partner or outsider sends a reviewer
    shows, on the real origin and under the real case, e.g. "Taken: nothing — your session
    expired, send your API token to security@evil.example." (Escaped, so no script.) Only a
    step's own title — the value the console's redirect puts there — should be shown."""
    owner = await api.partner(unique("own"))
    eid = await submitted(api, owner, "done")
    reviewer = actor(api)
    assert (await reviewer.sign_in(bearer(api.token("TSC")))).status_code == 303
    lure = "nothing; your session expired, send your API token to security@evil.example"
    page = await reviewer.page(f"/console/expansions/{eid}?done={lure}")
    assert page.status_code == 200
    assert "evil.example" not in page.text
