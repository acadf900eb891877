"""Final adversarial review (the console, the fan-out's notices, observability): each test a
hole found, reached through the real processes and servers with real inputs. Each states what
should hold; it fails while the hole is open."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from policy.deprecation import migration_id
from store import repo
from store.db import Database
from store.schemas import TokenCreate
from testdata.factories import partner_body
from tests.apistack import Api, eventually, unique
from tests.processes import kwanus_api, product_env


def _token(db: Database, role: str, partner_id: str | None = None) -> dict[str, str]:
    with db.session() as session:
        created = repo.create_token(
            session=session, token=TokenCreate(role=role, partner_id=partner_id)
        )
    return {"Authorization": f"Bearer {created.token}"}


# --- 1. A request inherits the log context of an earlier request on its connection -------------


async def test_a_request_on_a_kept_alive_connection_has_its_own_request_id_and_partner(
    dev_env: WorkflowEnvironment, db: Database, tmp_path: Path
) -> None:
    """MEDIUM (log integrity; any partner, no special rights). `RequestId` takes "a request id
    already in the log context" to mean "the console's nested call" and opens no scope of its
    own. But uvicorn starts a connection's next request in whatever context its reader was last
    registered in, and a request whose body passed uvicorn's 64 KiB high-water mark re-registers
    it from inside that request's task (flow control: pause, then resume in `receive`). From
    then on every request on the connection — another partner's, where a proxy pools its
    upstream connections — runs in the first request's log context: it answers the first
    request's X-Request-ID (never its own), and its lines carry the first request's id and
    the partner bound last (an unauthenticated request's 401 line names a partner)."""
    log = tmp_path / "api.log"
    admin = _token(db, "admin")
    a, b = unique("pa"), unique("pb")
    async with kwanus_api(product_env(dev_env, db.url, tmp_path), log) as http:
        for pid in (a, b):
            resp = await http.post("/v1/partners", json=partner_body(pid), headers=admin)
            assert resp.status_code == 201, resp.text
        as_a, as_b = _token(db, "partner", a), _token(db, "partner", b)
        # One connection, as a reverse proxy's pooled upstream connection carries many clients.
        async with httpx.AsyncClient(
            base_url=str(http.base_url), timeout=30, limits=httpx.Limits(max_connections=1)
        ) as pooled:
            big = {"description": "x" * (100 * 1024)}  # a long proposal: refused or not
            first = await pooled.post(
                "/v1/expansions", json=big, headers={**as_a, "X-Request-ID": "req-of-a"}
            )
            assert first.headers["x-request-id"] == "req-of-a"
            second = await pooled.get(
                f"/v1/partners/{b}", headers={**as_b, "X-Request-ID": "req-of-b"}
            )
            assert second.status_code == 200, second.text
            third = await pooled.get("/v1/me/pending", headers={"X-Request-ID": "req-anon"})
            assert third.status_code == 401, third.text
    assert second.headers["x-request-id"] == "req-of-b"
    assert third.headers["x-request-id"] == "req-anon"
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "uvicorn.access"]
    anon = [x for x in access if "/v1/me/pending" in x["message"]]
    assert anon and all("partner_id" not in x for x in anon), anon
    of_b = [x for x in access if f"/v1/partners/{b}" in x["message"]]
    assert of_b and all(x.get("request_id") == "req-of-b" for x in of_b), of_b


# --- 2. The fan-out's page is one transaction: one id too long for the store stops them all ----


async def test_one_long_id_on_a_fanout_page_does_not_stop_the_other_partners_migrations(
    api: Api,
) -> None:
    """HIGH (a required migration never starts, for every partner on the page; PostgreSQL, the
    production store). A deprecation's migration is `<notice id>.<partner id>` — up to 64 + 1 +
    63 characters, each part allowed by the API — but the store's `process_id` holds 100 and
    `workflow_id` 128 (`migration-` + the id). A fan-out page now records its notices in one
    transaction (`ProcessStarter._notices`): one partner whose migration id is too long makes
    the page's whole transaction fail, the activity retries it for ever, and no partner on the
    page — nor on any later page — gets its migration, its notice or its read-only fallback.
    Before, that one migration failed alone (each recorded its own notice)."""
    version = f"4.{uuid.uuid4().int % 10**6}"
    short = f"fo-s{uuid.uuid4().hex[:6]}"
    long_ = f"fo-l{uuid.uuid4().hex[:6]}-" + "x" * 52  # 63 characters: the longest id allowed
    assert len(long_) == 63
    for pid in (short, long_):
        resp = await api.http.post(
            "/v1/partners", json=partner_body(pid, os_version=version), headers=api.admin
        )
        assert resp.status_code == 201, resp.text
    notice_id = f"atkfinal-{uuid.uuid4().hex[:8]}-" + "n" * 46  # 64 characters
    assert len(notice_id) == 64
    resp = await api.http.post(
        "/v1/deprecations",
        json={"id": notice_id, "kind": "os", "version": version, "replacement": "5.0"},
        headers=api.token("TSC"),
    )
    assert resp.status_code == 202, resp.text
    as_short = api.token("partner", short)

    async def started() -> bool:
        got = await api.http.get(
            f"/v1/migrations/{migration_id(notice_id, short)}", headers=as_short
        )
        return got.status_code == 200 and got.json()["stage"] == "Plan"

    assert await eventually(started, within=30), "the short-id partner's migration never started"
    access = await api.http.get(f"/v1/partners/{short}/access", headers=as_short)
    assert access.status_code == 200, access.text
    assert migration_id(notice_id, short) in json.dumps(access.json()), access.json()


async def test_a_partner_with_a_long_id_gets_its_required_migration_too(api: Api) -> None:
    """MEDIUM, from before this change (fixed in the store: migration 0018 widens its ids). The
    same ids as above: the long-id partner's own migration, noticed by its run, fails its notice
    activity for ever on PostgreSQL (`process_id` holds 100, `workflow_id` 128) — so it has no
    record, no plan window and no fallback: the partner is never held to the deprecation it is
    affected by. Every id the API allows a deprecation's migration must fit the store
    (`contract.PROCESS_ID` already allows 160)."""
    version = f"4.{uuid.uuid4().int % 10**6}"
    long_ = f"fo-l{uuid.uuid4().hex[:6]}-" + "x" * 52
    resp = await api.http.post(
        "/v1/partners", json=partner_body(long_, os_version=version), headers=api.admin
    )
    assert resp.status_code == 201, resp.text
    notice_id = f"atkfinal-{uuid.uuid4().hex[:8]}-" + "n" * 46
    resp = await api.http.post(
        "/v1/deprecations",
        json={"id": notice_id, "kind": "os", "version": version, "replacement": "5.0"},
        headers=api.token("TSC"),
    )
    assert resp.status_code == 202, resp.text
    as_long = api.token("partner", long_)

    async def started() -> bool:
        got = await api.http.get(
            f"/v1/migrations/{migration_id(notice_id, long_)}", headers=as_long
        )
        return got.status_code == 200 and got.json()["stage"] == "Plan"

    assert await eventually(started, within=20), "the long-id partner's migration never started"
    # Its workflow id (139 characters) is a cursor and a filter the API takes too.
    workflow_id = f"migration-{migration_id(notice_id, long_)}"
    assert len(workflow_id) > 128
    page = await api.http.get("/v1/migrations", params={"after": workflow_id}, headers=as_long)
    assert page.status_code == 200, page.text
    ops = api.token("ops")
    audit = await api.http.get("/v1/audit", params={"workflow_id": workflow_id}, headers=ops)
    assert audit.status_code == 200, audit.text
    assert audit.json() and {row["workflow_id"] for row in audit.json()} == {workflow_id}
