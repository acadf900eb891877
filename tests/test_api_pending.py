"""`GET /v1/me/pending`: for each role exactly what the seeded processes await, soonest deadline
first; ops sees everything overdue; closed processes and done steps drop out."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kwanus.models.common import Awaiting
from policy.vocabulary import ProcessKind, ProcessStatus
from store.tables import utcnow
from testdata.factories import proposal_body, record_process
from tests.apistack import Api, eventually, unique

DAY = timedelta(days=1)


def seed(api: Api) -> None:
    now = utcnow()

    def record(kind: ProcessKind, pid: str, partner: str, step: str, **changes: Any) -> None:
        record_process(api.db, kind, pid, partner, step, **changes)

    def wait(actor: str, action: str, days: float | None) -> Awaiting:
        return Awaiting(
            actor=actor, action=action, deadline=None if days is None else now + days * DAY
        )

    bodies = ("TSC", "SCO", "ERC", "CGB")
    record(
        ProcessKind.EXPANSION,
        "e1",
        "acme",
        "window:review",
        stage="Evaluation",
        awaiting=[wait(b, "review", 3) for b in bodies],
    )
    # TSC reviewed: e1 now awaits the other three only.
    record(
        ProcessKind.EXPANSION,
        "e1",
        "acme",
        "review:TSC",
        stage="Evaluation",
        awaiting=[wait(b, "review", 3) for b in bodies[1:]],
    )
    record(
        ProcessKind.EXPANSION,
        "e2",
        "beta",
        "window:integration_plan",
        stage="Integration",
        awaiting=[wait("partner:beta", "integration plan", 1)],
    )
    record(
        ProcessKind.EXPANSION,
        "e3",
        "beta",
        "window:vote",
        stage="Approval",
        awaiting=[wait("TSC", "vote", -2)],
    )
    record(
        ProcessKind.MIGRATION,
        "m1",
        "acme",
        "window:plan",
        stage="Plan",
        awaiting=[wait("partner:acme", "submit the migration plan", 10)],
    )
    record(
        ProcessKind.REMEDIATION,
        "r1",
        "acme",
        "opened",
        stage="Remediation",
        awaiting=[wait("partner:acme", "root cause", -1)],
    )
    record(
        ProcessKind.EXPANSION,
        "e4",
        "acme",
        "window:release",
        stage="Release",
        awaiting=[wait("partner:acme", "release", -5)],
    )
    record(  # e4 closed: nothing awaited any more, though its last window had passed
        ProcessKind.EXPANSION,
        "e4",
        "acme",
        "finished:expired",
        stage="Release",
        status=ProcessStatus.EXPIRED,
        awaiting=[wait("partner:acme", "release", -5)],
    )


async def pending(api: Api, headers: dict[str, str]) -> list[tuple[str, str, str]]:
    resp = await api.http.get("/v1/me/pending", headers=headers)
    assert resp.status_code == 200, resp.text
    return [(i["workflow_id"], i["action"], i["link"]) for i in resp.json()]


async def test_each_role_sees_exactly_what_awaits_it(api: Api) -> None:
    seed(api)
    acme = await api.partner("acme")
    beta = await api.partner("beta")
    assert await pending(api, api.token("TSC")) == [("expansion-e3", "vote", "/v1/expansions/e3")]
    for body in ("SCO", "ERC", "CGB"):
        assert await pending(api, api.token(body)) == [
            ("expansion-e1", "review", "/v1/expansions/e1")
        ]
    assert await pending(api, acme) == [
        ("remediation-r1", "root cause", "/v1/remediations/r1"),
        ("migration-m1", "submit the migration plan", "/v1/migrations/m1"),
    ]
    assert await pending(api, beta) == [("expansion-e2", "integration plan", "/v1/expansions/e2")]
    overdue = await pending(api, api.token("ops"))
    assert overdue == [
        ("expansion-e3", "vote", "/v1/expansions/e3"),
        ("remediation-r1", "root cause", "/v1/remediations/r1"),
    ]
    resp = await api.http.get("/v1/me/pending", headers=api.token("ops"))
    assert all(item["overdue"] for item in resp.json())
    assert (await api.http.get("/v1/me/pending")).status_code == 401


async def test_a_submitted_proposal_reaches_the_bodies_inboxes(api: Api) -> None:
    """End to end: the workflow's review window lands in each body's inbox, with its deadline."""
    acme = await api.partner("acme")
    pid = unique("p")
    resp = await api.http.post("/v1/expansions", json={**proposal_body(), "id": pid}, headers=acme)
    assert resp.status_code == 202, resp.text

    async def in_inbox() -> list[dict[str, Any]]:
        resp = await api.http.get("/v1/me/pending", headers=api.token("SCO"))
        return [i for i in resp.json() if i["id"] == pid]

    items = await eventually(in_inbox)
    assert items and items[0]["action"] and items[0]["deadline"]
    assert items[0]["kind"] == "expansion" and items[0]["stage"] == "Evaluation"
    assert await pending(api, acme) == []
    withdrawn = await api.http.post(
        f"/v1/expansions/{pid}/withdraw", json={"reason": "test over"}, headers=acme
    )
    assert withdrawn.status_code == 200, withdrawn.text

    async def gone() -> bool:
        return not await in_inbox()

    assert await eventually(gone)
