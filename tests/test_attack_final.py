"""Final adversarial review (the console, the fan-out's notices, observability): each test a
hole found, reached through the real processes and servers with real inputs. Each states what
should hold; it fails while the hole is open."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from store import repo
from store.db import Database
from store.schemas import TokenCreate
from testdata.factories import partner_body
from tests.apistack import unique
from tests.test_attack23 import _env, kwanus_api


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
    async with kwanus_api(_env(dev_env, db, tmp_path), log) as http:
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
