"""Attacks on issue 22 (the fan-out records each page's notices itself)."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import col, select
from temporalio.service import RPCError
from temporalio.testing import ActivityEnvironment

from activities.processes import ProcessStarter
from kwanus import contract
from kwanus.models.deprecation import DeprecationBatch
from policy.deprecation import DeprecationNotice, migration_id
from store import repo
from store.tables import Partner, PendingAction
from testdata.factories import partner_body
from tests.apistack import Api


async def test_a_page_retried_after_its_notices_commit_leaves_no_run_less_migration(
    api: Api,
) -> None:
    """A page's notices commit, then the activity fails before its starts (worker crash,
    timeout); before the retry the partner no longer runs the deprecated version (its own
    migration completed meanwhile). The retry skips it — so its recorded notice stands with no
    run behind it: an active migration at Plan awaiting the partner's plan, a read-only
    fallback in its access view and a pending action in its inbox, forever (nothing will ever
    expire it). Rows and run must agree: a migration on record has a run."""
    version = f"4.{uuid.uuid4().int % 10**6}"
    partner = f"fo-z{uuid.uuid4().hex[:6]}"
    resp = await api.http.post(
        "/v1/partners", json=partner_body(partner, os_version=version), headers=api.admin
    )
    assert resp.status_code == 201, resp.text
    with api.db.session() as session:
        policy = repo.current_policy(session=session)
    notice_id = f"atk22-{uuid.uuid4().hex[:8]}"
    batch = DeprecationBatch(
        notice_id=notice_id,
        notice=DeprecationNotice.model_validate(
            {"kind": "os", "version": version, "replacement": "5.0"}
        ),
        policy=policy,
        requested_by="TSC",
        origin=contract.deprecation_workflow_id(notice_id),
        after=None,
        limit=100_000,
    )
    starter = ProcessStarter(api.env.client, api.settings.task_queue, api.db)

    async def crash(_: object) -> bool:
        raise RuntimeError("worker lost after the page's notices committed")

    starter._migration = crash  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await ActivityEnvironment().run(starter.start_deprecation_batch, batch)
    del starter._migration

    # Between the attempts the partner moves off the deprecated version.
    with api.db.session() as session:
        row = session.get(Partner, partner)
        assert row is not None
        row.os_version = "5.0"
        session.add(row)
        session.commit()

    await ActivityEnvironment().run(starter.start_deprecation_batch, batch)

    wid = contract.migration_workflow_id(migration_id(notice_id, partner))
    try:
        await api.env.client.get_workflow_handle(wid).describe()
        has_run = True
    except RPCError:
        has_run = False
    with api.db.session() as session:
        proc = repo.get_process(session=session, workflow_id=wid)
        pending = session.exec(
            select(PendingAction).where(col(PendingAction.workflow_id) == wid)
        ).all()
    access = await api.http.get(f"/v1/partners/{partner}/access", headers=api.admin)
    assert access.status_code == 200, access.text
    fallbacks = [
        f for f in access.json()["fallbacks"] if migration_id(notice_id, partner) in str(f)
    ]
    if not has_run:
        assert proc is None or proc.status != "active", (
            "an active migration on record with no run",
            proc.stage if proc else None,
            [p.action for p in pending],
            fallbacks,
        )
