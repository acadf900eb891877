"""A deprecation's fan-out records each page's notices itself (kwanus.notice) and starts each
migration with its notice done (issue 22). M-4.1 still holds for every migration — notified,
window defined, fallback active before anything else — with the same audit rows, field for
field, as a migration started on its own; its run parks in one workflow task with no activity;
a retried page records nothing twice and sends what is on record."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.processes import ProcessStarter
from kwanus import contract
from kwanus.models.migration import MigrationInput
from store import repo
from testdata.factories import partner_body
from tests.apistack import Api, eventually
from tests.conftest import end_runs

STAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
KEEP = ("key", "event", "actor", "stage", "rules", "data", "process", "partner_id")


def _rows(api: Api, workflow_id: str, names: dict[str, str]) -> list[Any]:
    """The migration's audit rows with its ids and times named (they differ by nature)."""

    def scrub(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, str):
            for real, name in names.items():
                value = value.replace(real, name)
            return STAMP.sub("<time>", value)
        return value

    with api.db.session() as session:
        rows = repo.audit_events(session=session, workflow_id=workflow_id)
        return [scrub({k: getattr(r, k) for k in KEEP}) for r in rows]


def _projection(api: Api, workflow_id: str, names: dict[str, str]) -> Any:
    with api.db.session() as session:
        row = repo.get_process(session=session, workflow_id=workflow_id)
        assert row is not None and row.state is not None
        state = {k: v for k, v in row.state.items() if k not in ("started_at",)}
    return _rows_value(state, names)


def _rows_value(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rows_value(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_rows_value(v, names) for v in value]
    if isinstance(value, str):
        for real, name in names.items():
            value = value.replace(real, name)
        return STAMP.sub("<time>", value)
    return value


async def _parked(api: Api, workflow_id: str) -> bool:
    with api.db.session() as session:
        row = repo.get_process(session=session, workflow_id=workflow_id)
    return row is not None and row.state is not None and row.state.get("step") == "plan"


async def test_a_fanned_out_migration_leaves_the_rows_of_one_started_on_its_own(
    api: Api,
) -> None:
    """M-4.1 through the fan-out: the notice, the move to Plan and the plan window are the rows
    — key, event, actor, stage, rules, data, projection — that the same migration started on
    its own records; the fanned-out run parks in one workflow task, with no activity."""
    version = f"4.{uuid.uuid4().int % 10**6}"
    fanned, alone = f"fo-a{version[2:]}", f"fo-b{version[2:]}"
    for partner in (fanned,):
        resp = await api.http.post(
            "/v1/partners", json=partner_body(partner, os_version=version), headers=api.admin
        )
        assert resp.status_code == 201, resp.text
    tsc = api.token("TSC")
    notice = {"kind": "os", "version": version, "replacement": "5.0"}
    resp = await api.http.post("/v1/deprecations", json=notice, headers=tsc)
    assert resp.status_code == 202, resp.text
    notice_id = resp.json()["id"]
    fanned_wid = contract.migration_workflow_id(f"{notice_id}.{fanned}")
    assert await eventually(lambda: _parked(api, fanned_wid), within=60)

    # The same migration, started on its own: the fan-out's input without its notice.
    history = await api.env.client.get_workflow_handle(fanned_wid).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [sent] = pydantic_data_converter.payload_converter.from_payloads(
        started.input.payloads, [MigrationInput]
    )
    assert sent.noticed is not None  # the fan-out recorded its notice
    resp = await api.http.post(
        "/v1/partners", json=partner_body(alone, os_version=version), headers=api.admin
    )
    assert resp.status_code == 201, resp.text
    alone_id = f"{notice_id}.{alone}"
    alone_wid = contract.migration_workflow_id(alone_id)
    await api.env.client.start_workflow(
        contract.MIGRATION_WORKFLOW,
        sent.model_copy(update={"migration_id": alone_id, "partner_id": alone, "noticed": None}),
        id=alone_wid,
        task_queue=api.settings.task_queue,
    )
    assert await eventually(lambda: _parked(api, alone_wid), within=60)
    try:
        fanned_rows = _rows(api, fanned_wid, {fanned: "<partner>"})
        alone_rows = _rows(api, alone_wid, {alone: "<partner>"})
        assert [r["event"] for r in fanned_rows] == ["notice", "stage_changed", "window_opened"]
        assert fanned_rows == alone_rows
        assert _projection(api, fanned_wid, {fanned: "<partner>"}) == _projection(
            api, alone_wid, {alone: "<partner>"}
        )
        # What the runtime enforces now (M-6.1): the same read-only fallback for both.
        fallbacks = {}
        for p in (fanned, alone):
            resp = await api.http.get(f"/v1/partners/{p}/access", headers=api.token("ops"))
            assert resp.status_code == 200, resp.text
            fallbacks[p] = [
                {k: v for k, v in f.items() if k not in ("migration_id", "until")}
                for f in resp.json()["fallbacks"]
            ]
        assert fallbacks[fanned] == fallbacks[alone] and fallbacks[fanned]
        # The partner was told, the same way (P-7).
        with api.db.session() as session:
            told = {
                p: [
                    n.notification.type
                    for n in repo.inbox(
                        session=session, receiver=f"partner:{p}", before=None, limit=10
                    )
                ]
                for p in (fanned, alone)
            }
        assert told[fanned] == told[alone] and told[fanned]

        history = await api.env.client.get_workflow_handle(fanned_wid).fetch_history()
        kinds = Counter(EventType.Name(e.event_type) for e in history.events)
        assert kinds["EVENT_TYPE_WORKFLOW_TASK_COMPLETED"] == 1, kinds
        assert kinds["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"] == 0, kinds
        assert kinds["EVENT_TYPE_TIMER_STARTED"] == 1, kinds
    finally:
        await end_runs(api.env.client, [fanned_wid, alone_wid], "fanout_notice")


async def test_a_retried_page_records_each_notice_once_and_sends_what_is_on_record(
    api: Api,
) -> None:
    """P-4 for the page's notices: the page run twice (a retried activity) writes each row
    once, and the second run's inputs carry the notice on record — its time and fallback —
    so a migration it starts rebuilds the recorded state."""
    partner = f"fo-r{uuid.uuid4().hex[:6]}"
    resp = await api.http.post("/v1/partners", json=partner_body(partner), headers=api.admin)
    assert resp.status_code == 201, resp.text
    with api.db.session() as session:
        policy = repo.current_policy(session=session)
    inp = MigrationInput(
        migration_id=f"os-kwanus-retry.{partner}",
        partner_id=partner,
        trigger="os_major_version",
        type_="version",
        subtype="os",
        target={"os_version": "5.0"},
        fallback_months=12,
        policy=policy,
        origin="deprecation-os-kwanus-retry",
        requested_by="TSC",
    )
    starter = ProcessStarter(api.env.client, api.settings.task_queue, api.db)
    first = starter._notices([inp], {partner}, {partner: ["orders:read"]})
    # Retried: its grants changed, and the notice no longer affects it — what is on record
    # is sent all the same (a migration on record always gets its run).
    second = starter._notices([inp], set(), {partner: ["orders:read", "orders:write"]})
    assert first[0].noticed is not None
    assert second == first  # the recorded notice, not a second one
    wid = contract.migration_workflow_id(inp.migration_id)
    with api.db.session() as session:
        rows = repo.audit_events(session=session, workflow_id=wid)
    assert [r.event for r in rows] == ["notice", "stage_changed", "window_opened"]
