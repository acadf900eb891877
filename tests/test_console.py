"""The console without a browser (the browser walks are tests/test_console_browser.py): its
session and CSRF protection, its BOLA, its field errors, and that it adds no second way to
change state — the same steps through the console and through the API leave the same audit
rows, field for field."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.console.steps import STEPS
from kwanus.settings import Settings
from policy.vocabulary import Body, ProcessKind
from store import console, repo
from store.db import Database
from store.tables import utcnow
from testdata.factories import (
    IMPLEMENTATION,
    INTEGRATION_PLAN,
    MANIFEST,
    MIGRATION_DOCS,
    MIGRATION_IMPLEMENTATION,
    MIGRATION_PLAN,
    RELEASE,
    proposal_body,
    record_process,
    review,
)
from tests.apistack import Api, eventually, serving, unique
from tests.consolestack import Browserless, actor, bearer


@pytest.fixture
async def api(dev_env: WorkflowEnvironment, db: Database) -> AsyncIterator[Api]:
    """The API with its console, served over plain HTTP as in development (no Secure cookie)."""
    async with serving(dev_env, db, console_secure_cookie=False) as stack:
        yield stack


def test_every_form_posts_the_body_its_api_operation_takes() -> None:
    """The console's forms are the API's request models, never a copy that could drift: each
    form's model is the body its operation declares (in the API's own OpenAPI document)."""
    paths = create_app(Settings(database_url="sqlite://")).openapi()["paths"]
    for form in STEPS:
        path = f"/v1/{form.kind.value}s/{{{form.kind.value}_id}}/{form.path}"
        assert path in paths and "post" in paths[path], path
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        refs = [s["$ref"] for s in (schema, *schema.get("anyOf", ())) if "$ref" in s]
        names = {r.rsplit("/", 1)[-1].removesuffix("-Input") for r in refs}
        assert names == {form.model.__name__}, (path, names)


# --- the forms a process offers, as the API would send them -----------------------------------


def form_of(body: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A JSON body as the console's form posts it: dotted names, rows numbered, lists of
    strings one per line."""
    out: dict[str, str] = {}
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= form_of(value, f"{name}.")
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for i, row in enumerate(value):
                out |= form_of(row, f"{name}.{i}.")
        elif isinstance(value, list):
            if value:
                out[name] = "\n".join(map(str, value))
        else:
            out[name] = str(value)
    return out


# The factory's proposal, as the partner types it into the category A form.
PROPOSAL_FORM = form_of(proposal_body())


def review_form(body: Body) -> dict[str, str]:
    return {
        **{f"criteria.{c}": v for c, v in review(body)["criteria"].items()},
        "recommendation": "approve",
    }


VOTE_FORM = {"decision": "approve", "rationale": "sound"}
RELEASE_FORM = form_of(RELEASE)


async def _state(api: Api, headers: dict[str, str], eid: str) -> dict[str, Any]:
    resp = await api.http.get(f"/v1/expansions/{eid}", headers=headers)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def _at(api: Api, headers: dict[str, str], eid: str, stage: str, step: str | None) -> None:
    async def there() -> bool:
        data = await _state(api, headers, eid)
        return bool(data["stage"] == stage and data["step"] == step)

    assert await eventually(there), (stage, step, await _state(api, headers, eid))


async def submitted(api: Api, partner: dict[str, str], prefix: str) -> str:
    """An expansion submitted through the API, its reviews open: its id."""
    eid = unique(prefix)
    resp = await api.http.post("/v1/expansions", json=proposal_body(id=eid), headers=partner)
    assert resp.status_code == 202, resp.text
    await _at(api, partner, eid, "Evaluation", "reviews")
    return eid


async def _by_api(api: Api, partner: dict[str, str], bodies: dict[Body, dict[str, str]]) -> str:
    eid = unique("byapi")
    base = f"/v1/expansions/{eid}"

    async def ok(path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        resp = await api.http.post(path, json=body, headers=headers)
        assert resp.status_code in (200, 202), resp.text

    await ok("/v1/expansions", proposal_body(id=eid), partner)
    await _at(api, partner, eid, "Evaluation", "reviews")
    for body, headers in bodies.items():
        await ok(f"{base}/reviews", review(body), headers)
    await _at(api, partner, eid, "Approval", "votes")
    for headers in bodies.values():
        await ok(f"{base}/votes", VOTE_FORM, headers)
    await _at(api, partner, eid, "Integration", "integration_plan")
    await ok(f"{base}/integration-plan", INTEGRATION_PLAN, partner)
    await ok(f"{base}/implementation", IMPLEMENTATION, partner)
    await ok(f"{base}/release", RELEASE, partner)
    await _at(api, partner, eid, "Monitoring", None)
    return eid


async def _by_console(api: Api, partner: dict[str, str], bodies: dict[Body, dict[str, str]]) -> str:
    me = actor(api)
    assert (await me.sign_in(bearer(partner))).status_code == 303
    await me.page("/console/propose?category=A")
    sent = await me.send("/console/propose", PROPOSAL_FORM)
    assert sent.status_code == 303, sent.text
    eid = sent.headers["location"].split("/")[-1].split("?")[0]
    base = f"/console/expansions/{eid}"
    await _at(api, partner, eid, "Evaluation", "reviews")
    people: dict[Body, Browserless] = {}
    for body, headers in bodies.items():
        people[body] = actor(api)
        assert (await people[body].sign_in(bearer(headers))).status_code == 303
        await people[body].page(base)
        taken = await people[body].send(f"{base}/reviews", review_form(body))
        assert taken.status_code == 303, taken.text
    await _at(api, partner, eid, "Approval", "votes")
    for person in people.values():
        await person.page(base)
        assert (await person.send(f"{base}/votes", VOTE_FORM)).status_code == 303
    await _at(api, partner, eid, "Integration", "integration_plan")
    for path, form in (
        ("integration-plan", INTEGRATION_PLAN),
        ("implementation", IMPLEMENTATION),
        ("release", RELEASE_FORM),
    ):
        await me.page(base)
        taken = await me.send(f"{base}/{path}", form)
        assert taken.status_code == 303, (path, taken.text)
    await _at(api, partner, eid, "Monitoring", None)
    return eid


STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


def _normal(rows: list[dict[str, Any]], names: dict[str, str]) -> list[Any]:
    """The audit rows with what differs by nature — ids, times, the hash chain — named."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {scrub(k): scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str):
            for real, name in names.items():
                value = value.replace(real, name)
            return STAMP.sub("<time>", re.sub(r"tok_[0-9a-f]{16}", "<token>", value))
        return value

    keep = ("event", "actor", "stage", "rules", "data", "process")
    return [scrub({k: row[k] for k in keep}) for row in rows]


async def test_the_console_takes_the_same_steps_as_the_api_row_for_row(api: Api) -> None:
    """No second way to change state: one proposal walked to its release through the API, one
    through the console's forms, by twin partners — the audit rows are the same, field for
    field (actors, events, stages, rules, data, the proposal's sha256), once ids and times are
    named."""
    twins = {p: unique(p) for p in ("twina", "twinb")}
    by_api_partner = await api.partner(twins["twina"])
    by_console_partner = await api.partner(twins["twinb"])
    bodies = {b: api.token(b.value) for b in Body}
    via_api = await _by_api(api, by_api_partner, bodies)
    via_console = await _by_console(api, by_console_partner, bodies)

    ops = api.token("ops")

    async def audit(eid: str) -> list[dict[str, Any]]:
        resp = await api.http.get(
            "/v1/audit", params={"workflow_id": f"expansion-{eid}", "limit": 500}, headers=ops
        )
        assert resp.status_code == 200
        rows: list[dict[str, Any]] = resp.json()
        return rows

    api_rows = _normal(await audit(via_api), {via_api: "<id>", twins["twina"]: "<partner>"})
    console_rows = _normal(
        await audit(via_console), {via_console: "<id>", twins["twinb"]: "<partner>"}
    )
    assert len(api_rows) > 15
    assert console_rows == api_rows


async def test_a_form_replayed_without_its_csrf_token_is_refused(api: Api) -> None:
    """A form posted without the session's CSRF token (or with another session's) is 403 and
    sends nothing: the step stays open and the history does not grow."""
    partner = await api.partner(unique("csrf"))
    eid = await submitted(api, partner, "csrf")
    tsc, other = actor(api), actor(api)
    await tsc.sign_in(bearer(api.token("TSC")))
    await other.sign_in(bearer(api.token("TSC")))
    handle = api.env.client.get_workflow_handle(f"expansion-{eid}")
    before = len((await handle.fetch_history()).events)
    base = f"/console/expansions/{eid}"
    await tsc.page(base)
    missing = await tsc.send(f"{base}/reviews", review_form(Body.TSC), csrf=False)
    foreign = await tsc.http.post(
        f"{base}/reviews", data={**review_form(Body.TSC), "csrf": other.csrf}
    )
    for refused in (missing, foreign):
        assert refused.status_code == 403
        assert "CSRF" in refused.text
    assert len((await handle.fetch_history()).events) == before
    assert "TSC" not in (await _state(api, partner, eid))["reviews"]
    signed_out = await tsc.send("/console/sign-out", {}, csrf=False)
    assert signed_out.status_code == 403  # sign-out is a form too


async def test_a_partner_cannot_open_or_act_on_another_partners_case(api: Api) -> None:
    """P-6 in the console: another partner's case is 404 — its page, its decision record and
    its forms — exactly as in the API; nothing of it is shown."""
    owner = await api.partner(unique("own"))
    eid = await submitted(api, owner, "bola")
    intruder = actor(api)
    await intruder.sign_in(bearer(await api.partner(unique("intruder"))))
    base = f"/console/expansions/{eid}"
    for resp in (
        await intruder.page(base),
        await intruder.page(f"{base}/decision-record"),
        await intruder.send(f"{base}/withdraw", {"reason": "mine now"}),
    ):
        assert resp.status_code == 404, resp.text
        assert "A read-only order analytics widget" not in resp.text
    assert (await _state(api, owner, eid))["status"] == "active"


async def test_a_refused_form_shows_each_fields_error_and_keeps_what_was_typed(api: Api) -> None:
    """A refusal is the API's own: its message and rule above the form, each field's error
    beside that field, and every value typed still in place."""
    partner = await api.partner(unique("typo"))
    me = actor(api)
    await me.sign_in(bearer(partner))
    await me.page("/console/propose?category=A")
    # Malformed: the API's request validation names each field.
    malformed = {**PROPOSAL_FORM, "description": "", "integrations.0.kind": "bogus"}
    resp = await me.send("/console/propose", malformed)
    assert resp.status_code == 422
    page = resp.text
    for field in ("description", "integrations-0-kind"):
        assert f'id="f-{field}-error"' in page, field
    assert 'aria-invalid="true"' in page
    assert "Merchants ask for order trends in their dashboard" in page  # what was typed, kept
    # Forbidden: the governance rule's refusal names the field and the rule (E-5.2).
    forbidden = {**PROPOSAL_FORM, "requested_capabilities.0.permissions": "orders:*"}
    resp = await me.send("/console/propose", forbidden)
    assert resp.status_code == 422
    error = re.search(r'id="f-requested_capabilities-0-permissions-error">([^<]+)<', resp.text)
    assert error, resp.text
    assert "forbidden without exception (E-5.2)" in error.group(1)
    assert "orders:*" in resp.text  # kept in its text area
    assert "A read-only order analytics widget" in resp.text


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    """Cookies a test sends itself (the jar keeps no Secure cookie from an http test URL)."""
    return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


async def test_sign_in_is_a_strict_http_only_cookie_and_sign_out_ends_it(
    dev_env: WorkflowEnvironment, db: Database
) -> None:
    """Outside development the session cookie is `__Host-`, Secure, HttpOnly, SameSite=Strict;
    sign-out ends the session on the server (the old cookie opens nothing), and a revoked
    token ends every session acting as it."""
    async with serving(dev_env, db) as api:
        partner = await api.partner(unique("cookie"))
        me = actor(api)
        form = await me.http.get("/console/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        wrong = await me.http.post(
            "/console/sign-in",
            data={"nonce": nonce.group(1), "token": "kw1.nope.nope"},
            headers=cookie_header({"__Host-kwanus_signin": nonce.group(1)}),
        )
        assert wrong.status_code == 401
        no_nonce = await me.http.post("/console/sign-in", data={"token": bearer(partner)})
        assert no_nonce.status_code == 403
        form = await me.http.get("/console/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce
        # The jar keeps Secure cookies from an http test URL only if told; read the header.
        resp = await me.http.post(
            "/console/sign-in",
            data={"nonce": nonce.group(1), "token": bearer(partner)},
            headers=cookie_header({"__Host-kwanus_signin": nonce.group(1)}),
        )
        assert resp.status_code == 303
        cookie = next(
            v for k, v in resp.headers.multi_items() if k == "set-cookie" and "session" in v
        )
        name, _, rest = cookie.partition("=")
        attrs = {a.strip().lower() for a in rest.split(";")[1:]}
        assert name == "__Host-kwanus_session"
        assert {"httponly", "secure", "samesite=strict", "path=/"} <= attrs
        session_id = rest.split(";")[0]
        jar = {"__Host-kwanus_session": session_id}
        inbox = await me.http.get("/console/inbox", headers=cookie_header(jar))
        assert inbox.status_code == 200 and "Awaiting you" in inbox.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', inbox.text)
        assert csrf
        for header in ("content-security-policy", "x-content-type-options"):
            assert header in inbox.headers
        out = await me.http.post(
            "/console/sign-out", data={"csrf": csrf.group(1)}, headers=cookie_header(jar)
        )
        assert out.status_code == 303
        again = await me.http.get("/console/inbox", headers=cookie_header(jar))
        assert again.status_code == 303 and "/console/sign-in" in again.headers["location"]

        # A revoked token: its live session stops at once.
        with api.db.session() as session:
            signed = console.open_console_session(
                session=session, raw=bearer(partner), now=utcnow(), lifetime=timedelta(hours=1)
            )
            assert signed is not None
            live = {"__Host-kwanus_session": signed.session_id}
            assert (
                await me.http.get("/console/inbox", headers=cookie_header(live))
            ).status_code == 200
            repo.revoke_token(session=session, token_id=signed.token.id, now=utcnow())
        assert (await me.http.get("/console/inbox", headers=cookie_header(live))).status_code == 303


async def test_lists_put_the_overdue_first_and_page_by_deadline(api: Api) -> None:
    """Lists for ops and bodies: the soonest deadline first — overdue first — those awaiting
    no one last, keyset-paged (`order=deadline`, `after_deadline` + `after`) in the API and the
    console alike."""
    partner = unique("lists")
    await api.partner(partner)
    now = utcnow()
    deadlines = {
        "late": now - timedelta(days=2),
        "later": now - timedelta(hours=1),
        "soon": now + timedelta(days=1),
        "done": None,
    }
    for name, deadline in deadlines.items():
        record_process(
            api.db,
            ProcessKind.EXPANSION,
            f"{partner}-{name}",
            partner,
            "submitted",
            next_deadline=deadline,
        )
    ops = api.token("ops")
    seen: list[str] = []
    overdue: list[str] = []
    params: dict[str, Any] = {"partner_id": partner, "order": "deadline", "limit": 1}
    for _ in range(6):
        resp = await api.http.get("/v1/expansions", params=params, headers=ops)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        if not page:
            break
        seen += [row["id"].removeprefix(f"{partner}-") for row in page]
        overdue += [row["id"].removeprefix(f"{partner}-") for row in page if row["overdue"]]
        params = {
            **params,
            "after": page[-1]["workflow_id"],
            "after_deadline": page[-1]["next_deadline"],
        }
        if params["after_deadline"] is None:
            del params["after_deadline"]
    assert seen == ["late", "later", "soon", "done"]
    assert overdue == ["late", "later"]  # the API's rule (P-3): open and past its deadline

    watcher = actor(api)
    await watcher.sign_in(bearer(ops))
    listed = await watcher.page(f"/console/expansions?partner_id={partner}")
    order = [listed.text.index(f"{partner}-{name}<") for name in deadlines]
    assert order == sorted(order)
    assert listed.text.count("tag-overdue") == 2


async def _step_is(api: Api, headers: dict[str, str], path: str, step: str | None) -> Any:
    async def there() -> dict[str, Any] | None:
        data: dict[str, Any] = (await api.http.get(path, headers=headers)).json()
        return data if data.get("step") == step else None

    state = await eventually(there)
    assert state, (path, step)
    return state


async def test_a_migration_and_a_remediation_are_walked_in_the_console(api: Api) -> None:
    """The partner's migration steps (M-4.2 to M-4.5) — the implementation carrying its manifest
    (M-8.1) through nested form fields — and a remediation's steps (M-9.1), SCO's
    re-validation restoring access (M-9.2), all sent as console forms."""
    acme = await api.partner("acme")
    me = actor(api)
    await me.sign_in(bearer(acme))
    mid = unique("mig")
    started = await api.http.post(
        "/v1/migrations",
        json={
            "id": mid,
            "partner_id": "acme",
            "trigger": "os_major_version",
            "type": "version",
            "subtype": "os",
            "target": {"os_version": "5.0", "api_version": "3.0"},
        },
        headers=api.token("TSC"),
    )
    assert started.status_code == 202, started.text
    api_path, case = f"/v1/migrations/{mid}", f"/console/migrations/{mid}"
    steps: list[tuple[str, str, dict[str, str]]] = [
        ("plan", "plan", dict(MIGRATION_PLAN)),
        ("implementation", "implementation", form_of(MIGRATION_IMPLEMENTATION)),
        ("documentation", "documentation", dict(MIGRATION_DOCS)),
        (
            "rollout",
            "rollout",
            {
                "version": "5.0.0",
                "compatibility.0.kind": "os",
                "compatibility.0.name": "kwanus",
                "compatibility.0.version": "5.0",
            },
        ),
    ]
    for step, path, form in steps:
        await _step_is(api, acme, api_path, step)
        page = await me.page(case)
        assert f'action="{case}/{path}"' in page.text, step  # the form of the step awaited
        taken = await me.send(f"{case}/{path}", form)
        assert taken.status_code == 303, (step, taken.text)
    state = await _step_is(api, acme, api_path, None)
    assert state["stage"] == "Monitoring"
    assert state["manifest"] == MANIFEST
    assert all(check["passed"] for check in state["validation"].values())

    rid = unique("rem")
    violation = {"id": rid, "kind": "data_leak", "severity": "severe", "description": "leak"}
    sco_token = api.token("SCO")
    assert (
        await api.http.post("/v1/partners/acme/violations", json=violation, headers=sco_token)
    ).status_code == 202
    sco = actor(api)
    await sco.sign_in(bearer(sco_token))
    api_path, case = f"/v1/remediations/{rid}", f"/console/remediations/{rid}"
    for step, path, who, form in (
        ("root_cause", "root-cause", me, {"summary": "a debug log kept order data"}),
        ("plan", "plan", me, {"summary": "remove the log, purge the copies"}),
        ("fixes", "fixes", me, {"summary": "log removed, copies purged"}),
        ("revalidation", "review", sco, {"summary": "verified", "passed": "true"}),
    ):
        await _step_is(api, acme, api_path, step)
        page = await who.page(case)
        assert f'action="{case}/{path}"' in page.text, step
        current = re.search(r'aria-current="step">\s*<span class="stage">([^<]+)<', page.text)
        assert current and current[1] == step.replace("_", " ").capitalize()  # its timeline
        taken = await who.send(f"{case}/{path}", form)
        assert taken.status_code == 303, (step, taken.text)
    state = await _step_is(api, acme, api_path, None)
    assert state["status"] == "completed" and not state["restricted"]
    access = await api.http.get("/v1/partners/acme/access", headers=acme)
    assert access.json()["status"] == "active"


async def test_cgb_extends_a_deadline_and_ops_see_the_run_in_temporal(api: Api) -> None:
    """CGB's deadline extension (P-3) from its form — a datetime typed in the browser's control,
    UTC — and, for ops only, the link to the run in the Temporal Web UI."""
    partner = await api.partner(unique("late"))
    eid = await submitted(api, partner, "extend")
    cgb = actor(api)
    await cgb.sign_in(bearer(api.token("CGB")))
    case = f"/console/expansions/{eid}"
    page = await cgb.page(case)
    assert f'action="{case}/deadline"' in page.text
    assert "Temporal Web UI" not in page.text
    until = (utcnow() + timedelta(days=40)).replace(second=0, microsecond=0)
    taken = await cgb.send(
        f"{case}/deadline", {"until": until.strftime("%Y-%m-%dT%H:%M"), "reason": "holidays"}
    )
    assert taken.status_code == 303, taken.text

    async def extended() -> bool:
        awaiting = (await _state(api, partner, eid))["awaiting"]
        return all(a["deadline"].startswith(until.strftime("%Y-%m-%dT%H:%M")) for a in awaiting)

    assert await eventually(extended)
    ops = actor(api)
    await ops.sign_in(bearer(api.token("ops")))
    page = await ops.page(case)
    assert f"/namespaces/default/workflows/expansion-{eid}" in page.text
    assert 'action="' + case not in page.text  # ops act on nothing: no form
