"""Remediation on the time-skipping server: steps in order (M-9.1), windows counted from the
violation (M-9.2) checked on both sides of their boundary, severe violations restricted at once
and waiting for SCO, and a missed window escalating to a forced downgrade (M-9.3, E-7.2)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import select
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from kwanus.contract import remediation_workflow_id
from kwanus.models.common import Act, Actor
from kwanus.models.remediation import RemediationInput, RemediationStatus
from policy.access import Access
from policy.decisions import Decision
from policy.document import DEFAULT_POLICY
from policy.forms import RemediationStep, Rollout
from policy.vocabulary import MigrationStage, ProcessStatus, Role, Severity, Trigger
from store import repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import AuditEvent, Partner, Process, utcnow
from testdata.factories import partner_body
from tests.conftest import end_runs, running_worker
from tests.histcheck import commands_on_step_opening
from tests.test_migration_workflow import Mig, _to_validation
from workflows.migration import PartnerMigration
from workflows.remediation import Remediation

DAY = timedelta(days=1)
PARTNER = Actor(role=Role.PARTNER, token_id="tok_test", partner_id="acme")
SCO = Actor(role=Role.SCO, token_id="tok_sco")


@dataclass
class Rem:
    env: WorkflowEnvironment
    db: Database
    handle: WorkflowHandle[Remediation, RemediationStatus]

    async def state(self) -> RemediationStatus:
        return await self.handle.query(Remediation.status)

    async def send(self, step: str, who: Actor = PARTNER, **body: Any) -> RemediationStatus:
        return await self.handle.execute_update(
            step,
            Act[RemediationStep](actor=who, body=RemediationStep(summary=step, **body)),
            result_type=RemediationStatus,
        )

    def tier(self) -> str:
        with self.db.session() as session:
            partner = session.get(Partner, "acme")
            assert partner is not None
            return partner.tier

    def access(self) -> Access:
        with self.db.session() as session:
            found = repo.access(session=session, partner_id="acme")
        assert found is not None
        return found

    def restore(self) -> Decision:
        with self.db.session() as session:
            refused, _ = repo.restore(
                session=session, partner_id="acme", actor="SCO", reason="fixed", at=utcnow()
            )
        return refused

    def partner_status(self) -> str:
        with self.db.session() as session:
            partner = session.get(Partner, "acme")
            assert partner is not None
            return partner.status


@pytest.fixture
async def open_remediation(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    with db.session() as session:
        repo.create_partner(
            session=session,
            partner=PartnerCreate.model_validate(
                partner_body(tier="premier", permissions=["orders:read", "orders:admin"])
            ),
        )
    started: list[str] = []
    async with running_worker(ts_env.client, db) as task_queue:

        async def opener(severity: Severity) -> Rem:
            rid = uuid.uuid4().hex[:10]
            handle = await ts_env.client.start_workflow(
                Remediation.run,
                RemediationInput(
                    remediation_id=rid,
                    partner_id="acme",
                    partner_tier="premier",
                    severity=severity,
                    kind="data_retention",
                    description="logs kept past retention",
                    opened_at=await ts_env.get_current_time(),
                    policy=DEFAULT_POLICY,
                    opened_by="SCO",
                ),
                id=remediation_workflow_id(rid),
                task_queue=task_queue,
            )
            started.extend([handle.id, f"migration-rem-{rid}"])
            rem = Rem(ts_env, db, handle)
            for _ in range(100):  # settle: the opening is recorded, nothing in flight
                if (await rem.state()).step == "root_cause":
                    break
                await asyncio.sleep(0.05)
            return rem

        opener.db = db  # type: ignore[attr-defined]
        yield opener
        await end_runs(ts_env.client, started, request.node.name)


@pytest.mark.parametrize(
    ("severity", "inside", "outside"),
    [(Severity.MINOR, 29, 31), (Severity.MODERATE, 13, 15)],
)
async def test_window_boundaries(
    open_remediation: Callable[..., Any], severity: Severity, inside: int, outside: int
) -> None:
    """M-9.2: minor 30 days, moderate 14 — still open the day before is fine; missed the day
    after escalates (M-9.3): access restricted and a forced tier-downgrade migration."""
    rem: Rem = await open_remediation(severity)
    assert rem.partner_status() == "active"  # not severe: no restriction yet
    # P-2: the steps open, once the opening is on record, without a command of their own.
    assert commands_on_step_opening(await rem.handle.fetch_history(), ':opened"') == []
    await rem.env.sleep(inside * DAY)
    state = await rem.state()
    assert state.status is ProcessStatus.ACTIVE and state.escalation_migration is None
    assert rem.partner_status() == "active"
    await rem.env.sleep((outside - inside) * DAY)
    state = await rem.state()
    assert state.status is ProcessStatus.EXPIRED
    assert state.escalation_migration == f"rem-{state.id}"
    assert rem.partner_status() == "restricted"
    migration = await rem.env.client.get_workflow_handle(
        f"migration-{state.escalation_migration}"
    ).query("status")
    assert migration["trigger"] == "compliance_violation"
    assert (migration["type_"], migration["subtype"]) == ("tier", "downgrade")
    assert migration["target"] == {"tier": "verified"}
    with rem.db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None and partner.tier == "premier"  # changes only on completion


async def test_severe_restricts_at_once_and_waits_for_sco(
    open_remediation: Callable[..., Any],
) -> None:
    """M-9.2: a severe violation restricts access immediately and opens SCO's review; M-9.1:
    the steps in order, and full access only after re-validation."""
    rem: Rem = await open_remediation(Severity.SEVERE)
    state = await rem.state()
    assert state.restricted and rem.partner_status() == "restricted"
    with rem.db.session() as session:  # the projection shows what is awaited from the start
        row = session.get(Process, rem.handle.id)
        assert row is not None
        assert [(a["actor"], a["action"]) for a in row.awaiting] == [("partner:acme", "root cause")]
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await rem.send("fixes")  # not next (M-9.1)
    assert isinstance(info.value.cause, ApplicationError)
    assert info.value.cause.details[0]["rule"] == "M-9.1"
    await rem.send("root_cause")
    await rem.send("plan")
    state = await rem.send("fixes")
    assert state.step == "revalidation" and state.awaiting[0].actor == "SCO"
    with pytest.raises(WorkflowUpdateFailedError):
        await rem.send("review", PARTNER, passed=True)  # only SCO re-validates
    state = await rem.send("review", SCO, passed=False)
    assert state.step == "fixes"  # back to the fixes
    await rem.send("fixes")
    await rem.send("review", SCO, passed=True)
    result = await rem.handle.result()
    assert result.status is ProcessStatus.COMPLETED
    assert rem.partner_status() == "active"  # M-9.1: full access restored
    # P-4: the fixes sent again after the failed re-validation are an event of their own.
    with rem.db.session() as session:
        rows = session.exec(
            select(AuditEvent.key).where(AuditEvent.workflow_id == rem.handle.id)
        ).all()
    assert sorted(k.split(":", 1)[1] for k in rows if ":fixes" in k) == ["fixes", "fixes:2"]
    # P-2: the steps open, once the restriction is on record, without a command of their own.
    history = await rem.handle.fetch_history()
    assert commands_on_step_opening(history, ':access:restricted"') == []


async def test_unremediated_severe_violation_ends_in_a_lower_tier(
    open_remediation: Callable[..., Any],
) -> None:
    """E-7.2 / M-9.3: a severe violation is restricted at once; left unremediated past its
    window, its forced tier-downgrade migration (validated against the shipped platform rows)
    moves the partner to the tier below at its rollout (M-4.5), and runs to completion."""
    rem: Rem = await open_remediation(Severity.SEVERE)
    assert rem.partner_status() == "restricted"
    deadline = (await rem.state()).deadline
    assert deadline is not None
    await rem.env.sleep(deadline - await rem.env.get_current_time() + DAY)
    state = await rem.state()
    assert state.status is ProcessStatus.EXPIRED and state.escalation_migration
    held = rem.access()
    assert held.status == "restricted" and [f.rule for f in held.restricted_by] == ["M-9.3"]
    assert held.permissions == ["orders:read"]  # M-9.2: read-only while restricted
    early = rem.restore()  # M-9.3: not before the forced outcome has been applied
    assert not early.allowed and early.rules == ["M-9.3"]
    assert rem.access().status == "restricted"
    forced = Mig(
        rem.env,
        rem.db,
        rem.env.client.get_workflow_handle_for(
            PartnerMigration.run, f"migration-{state.escalation_migration}"
        ),
        [],
    )
    await _to_validation(forced)
    await forced.at_step("rollout")
    assert rem.tier() == "premier"  # not before the rollout
    migration = await forced.send("rollout", Rollout(version="5.0.0"))
    await forced.recorded("stage:Monitoring")
    assert migration.trigger is Trigger.COMPLIANCE_VIOLATION
    assert rem.tier() == "verified"  # M-4.5: the tier moves at the rollout
    assert rem.restore().allowed  # M-9.1 step 5: SCO restores, once the downgrade applied
    assert (rem.access().status, rem.access().restricted_by) == ("active", [])
    assert not rem.restore().allowed  # recorded once: nothing more to restore
    assert migration.fallback.until is not None
    forced.healthy_telemetry_at(migration.fallback.until - timedelta(hours=1))
    # Skip by sleeping, not by awaiting the result: after this test's earlier sleep, the test
    # server's automatic skipping (on result()) does not resume.
    await rem.env.sleep(migration.fallback.until - await rem.env.get_current_time() + DAY)
    result = await forced.closed()
    assert result.status is ProcessStatus.COMPLETED
    assert rem.tier() == "verified"
    assert rem.partner_status() == "restricted"  # access stays restricted (M-9.3)


async def test_a_forced_downgrade_applies_at_its_window_end_with_no_partner_action(
    open_remediation: Callable[..., Any],
) -> None:
    """M-2.3 / E-7.2 / E-7.4 (Decisions): the missed window's forced downgrade applies when its
    own window ends though the partner never sent a step — the tier set, `orders:admin` (which
    the lower tier does not allow) removed with before and after on record, `decision.outcome`
    `enforced` — keeps its read-only fallback through the fallback period and completes; SCO
    may then restore access (M-9.1 step 5)."""
    rem: Rem = await open_remediation(Severity.SEVERE)
    deadline = (await rem.state()).deadline
    assert deadline is not None
    await rem.env.sleep(deadline - await rem.env.get_current_time() + DAY)
    state = await rem.state()
    assert state.escalation_migration
    forced = Mig(
        rem.env,
        rem.db,
        rem.env.client.get_workflow_handle_for(
            PartnerMigration.run, f"migration-{state.escalation_migration}"
        ),
        [],
    )
    waiting = await forced.at_step("plan")
    assert waiting.window_end is not None and rem.tier() == "premier"
    assert not rem.restore().allowed  # the forced outcome has not applied yet
    await rem.env.sleep(waiting.window_end - await rem.env.get_current_time() + DAY)
    await forced.recorded("enforced")
    enforced = await forced.state()
    assert enforced.decision is not None and enforced.decision.outcome == "enforced"
    assert enforced.tier_change is not None and enforced.tier_change.applied
    assert rem.tier() == "verified"
    assert forced.permissions() == ["orders:read"]
    with rem.db.session() as session:
        event = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"{forced.handle.id}:enforced")
        ).one()
    assert event.data["trimmed"]["permissions_removed"] == ["orders:admin"]
    assert sorted(event.data["trimmed"]["before"]["registered"]) == ["orders:admin", "orders:read"]
    assert enforced.stage is MigrationStage.MONITORING and enforced.fallback.active
    fallbacks = rem.access().fallbacks
    assert [(f.kind, f.name, f.version) for f in fallbacks] == [("tier", "premier", None)]
    assert rem.restore().allowed and rem.access().status == "active"
    assert enforced.fallback.until is not None
    forced.healthy_telemetry_at(enforced.fallback.until - timedelta(hours=1))
    await rem.env.sleep(enforced.fallback.until - await rem.env.get_current_time() + DAY)
    result = await forced.closed()
    assert result.status is ProcessStatus.COMPLETED and rem.tier() == "verified"
    assert rem.access().fallbacks == []
