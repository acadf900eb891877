"""PartnerMigration on the time-skipping server: notice first (M-4.1), the fallback on a durable
timer for its whole period (M-6.2), validation (M-8), completion only after the period and with
healthy telemetry (M-4.7), decline only when optional (M-2.2, M-2.3)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from kwanus import contract
from kwanus.contract import Refusal, migration_workflow_id, remediation_workflow_id
from kwanus.models.common import Act, Actor, RecordEvent
from kwanus.models.migration import MigrationInput, MigrationStatus, NoticeInput
from kwanus.models.remediation import RemediationStatus
from policy.document import DEFAULT_POLICY, PolicyDocument
from policy.evidence import MatrixEntry
from policy.forms import (
    FallbackDecision,
    MigrationDocumentation,
    MigrationImplementation,
    MigrationPlan,
    RemediationStep,
    Rollout,
    Withdrawal,
)
from policy.manifest import Manifest
from policy.migration import add_months
from policy.vocabulary import (
    MigrationStage,
    MigrationType,
    ProcessStatus,
    Role,
    Severity,
    Trigger,
)
from store import records, repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import AuditEvent, NotificationRow, Partner, Process
from testdata.factories import manifest, partner_body, platform_report
from tests.conftest import end_runs, running_worker
from tests.histcheck import commands_on_step_opening, openings_taken
from workflows.migration import NOTICE_PATCH, PartnerMigration
from workflows.remediation import Remediation
from workflows.steps import STEP_OPENS_PATCH

DAY = timedelta(days=1)
PARTNER = Actor(role=Role.PARTNER, token_id="tok_test", partner_id="acme")
SCO = Actor(role=Role.SCO, token_id="tok_sco")
TARGET = {"os_version": "5.0", "api_version": "3.0"}
PLAN = MigrationPlan(strategy="s", compatibility_plan="c", testing_plan="t", rollback_plan="r")


@dataclass
class Mig:
    env: WorkflowEnvironment
    db: Database
    handle: WorkflowHandle[PartnerMigration, MigrationStatus]
    started: list[str]

    async def state(self) -> MigrationStatus:
        return await self.handle.query(PartnerMigration.status)

    async def at_step(self, step: str) -> MigrationStatus:
        for _ in range(200):
            state = await self.state()
            if state.step == step:
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"never reached step {step} (last: {state.stage}, {state.step})")

    async def send(self, update: str, body: Any, who: Actor = PARTNER) -> MigrationStatus:
        return await self.handle.execute_update(
            update, Act[type(body)](actor=who, body=body), result_type=MigrationStatus
        )

    async def through_rollout(self) -> MigrationStatus:
        await _to_validation(self)
        await self.at_step("rollout")
        state = await self.send("rollout", Rollout(version="5.0.0"))
        await self.recorded("stage:Monitoring")
        return state

    async def closed(self) -> MigrationStatus:
        """Wait for the run to close without skipping time (nothing else may move meanwhile)."""
        for _ in range(200):
            state = await self.state()
            if state.status is not ProcessStatus.ACTIVE:
                return await self.handle.result()
            await asyncio.sleep(0.05)
        raise AssertionError(f"still open: {state.stage}, {state.step}")

    async def recorded(self, step: str) -> None:
        """Wait for `step`'s audit row: no activity may be in flight when time is skipped."""
        key = f"{self.handle.id}:{step}"
        for _ in range(200):
            with self.db.session() as session:
                if session.exec(select(AuditEvent).where(AuditEvent.key == key)).first():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never recorded: {key}")

    def events(self) -> list[str]:
        with self.db.session() as session:
            rows = session.exec(
                select(AuditEvent)
                .where(AuditEvent.workflow_id == self.handle.id)
                .order_by(AuditEvent.id)  # type: ignore[arg-type]
            ).all()
        return [r.event for r in rows]

    def permissions(self) -> list[str]:
        """The permissions partner acme holds, as its record says."""
        with self.db.session() as session:
            row = repo.get_partner(session=session, partner_id="acme")
            assert row is not None
            return list(repo.holdings(row).permissions)

    def healthy_telemetry_at(self, end: Any) -> None:
        platform_report(self.db, end, usage={"orders:read": 3})


@asynccontextmanager
async def migrations_on(
    env: WorkflowEnvironment,
    db: Database,
    test_name: str,
    policy: PolicyDocument = DEFAULT_POLICY,
) -> AsyncIterator[Callable[..., Any]]:
    """Start migrations of partner `acme` (registered with its grants; the matrix holds the
    shipped platform versions, so validation passes) on `env` with a worker of the product;
    every run is ended afterwards."""
    with db.session() as session:
        repo.create_partner(
            session=session,
            partner=PartnerCreate.model_validate(
                partner_body(permissions=["orders:read", "orders:write"])
            ),
        )
    started: list[str] = []
    async with running_worker(env.client, db) as task_queue:

        async def starter(
            trigger: Trigger = Trigger.OS_MAJOR_VERSION,
            type_: MigrationType = MigrationType.VERSION,
            subtype: str = "os",
            months: int = 12,
            target: dict[str, str] | None = None,
        ) -> Mig:
            mid = uuid.uuid4().hex[:10]
            handle = await env.client.start_workflow(
                PartnerMigration.run,
                MigrationInput(
                    migration_id=mid,
                    partner_id="acme",
                    trigger=trigger,
                    type_=type_,
                    subtype=subtype,
                    target=target or TARGET,
                    fallback_months=months,
                    policy=policy,
                    requested_by="TSC",
                ),
                id=migration_workflow_id(mid),
                task_queue=task_queue,
            )
            started.append(handle.id)
            started.append(f"remediation-{mid}-v1")
            return Mig(env, db, handle, started)

        yield starter
        await end_runs(env.client, started, test_name)


@pytest.fixture
async def migrate(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    async with migrations_on(ts_env, db, request.node.name) as starter:
        yield starter


@pytest.mark.parametrize("months", [12, 6])
async def test_fallback_kept_for_exactly_its_period(
    migrate: Callable[..., Any], months: int
) -> None:
    """M-6.2 (12 months by default, 6 at least): the fallback is active from the notice
    (M-4.1) through the whole period and removed only at completion (M-4.7), with healthy
    telemetry (M-4.6); the partner's lifecycle record then takes the target."""
    mig: Mig = await migrate(months=months)
    state = await mig.at_step("plan")
    assert state.fallback.active
    assert state.fallback.permissions == ["orders:read"]  # M-6.1: read-only, never wider (M-6.3)
    until = state.fallback.until
    assert until is not None and until == add_months(state.started_at, months)
    events = mig.events()
    assert events[0] == "notice"  # M-4.1: before anything else
    with mig.db.session() as session:  # lists and inboxes read who is awaited from the store
        row = session.get(Process, mig.handle.id)
        assert row is not None and row.stage == "Plan"
        assert [(a["actor"], a["action"]) for a in row.awaiting] == [
            ("partner:acme", "submit the migration plan")
        ]
    with mig.db.session() as session:
        notes = session.exec(select(NotificationRow)).all()
    # P-7: the partner hears of the notice and of the plan it is awaited for.
    assert [(n.type, n.receiver) for n in notes] == [
        ("migration.notice", "partner:acme"),
        ("step.opened", "partner:acme"),
    ]

    state = await mig.through_rollout()
    assert state.fallback.active  # M-4.5: the fallback stays through rollout
    mig.healthy_telemetry_at(until - timedelta(hours=1))
    await mig.env.sleep(timedelta(days=30 * months // 2))
    state = await mig.state()
    assert state.stage is MigrationStage.MONITORING and state.fallback.active
    result = await mig.handle.result()
    assert result.status is ProcessStatus.COMPLETED
    assert not result.fallback.active
    assert result.closed_at is not None
    assert until <= result.closed_at < until + DAY
    assert all(c.at <= until for c in result.monitoring[:-1])
    with mig.db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None and (partner.os_version, partner.api_version) == ("5.0", "3.0")
    assert mig.events()[-2:] == ["lifecycle_updated", "completed"]
    # P-2: plan, implementation, documentation and rollout open without a command of their own.
    assert commands_on_step_opening(await mig.handle.fetch_history(), ":window:") == []


async def test_a_forced_outcome_applies_though_its_validation_waits_on_a_remediation(
    migrate: Callable[..., Any],
) -> None:
    """M-2.3 (Decision): a forced downgrade whose validation failed (the partner runs an API TSC
    has since deprecated: a minor remediation, 30 days) waits on that remediation no longer
    than its own window (30 days): then the target applies whatever the partner did — the tier
    set, what it disallows removed — and the run goes on to monitoring."""
    mig: Mig = await migrate(
        trigger=Trigger.COMPLIANCE_VIOLATION,
        type_=MigrationType.TIER,
        subtype="downgrade",
        target={"tier": "community"},
        months=6,
    )
    with mig.db.session() as session:
        repo.change_matrix(
            session=session,
            entries=[MatrixEntry(kind="api", name="kwanus", version="2.1", status="deprecated")],
            actor="TSC",
            reason="2.1 deprecated",
        )
    await _to_validation(mig, api_version="2.1")  # still on the API TSC deprecated
    rem = await _remediation(mig)
    mig.started.append(remediation_workflow_id((await rem.query(Remediation.status)).id))
    failed = (await mig.state()).validation["api_contract"]
    assert [(f.field, f.rule, f.message) for f in failed.findings] == [
        ("manifest.api_version", "M-5.1", "api 2.1 is deprecated")
    ]
    state = await mig.state()
    assert state.window_end is not None
    await mig.env.sleep(state.window_end - await mig.env.get_current_time() + DAY)
    await mig.recorded("enforced")
    enforced = await mig.state()
    assert enforced.decision is not None and enforced.decision.outcome == "enforced"
    assert enforced.status is ProcessStatus.ACTIVE and enforced.stage is MigrationStage.MONITORING
    assert enforced.tier_change is not None and enforced.tier_change.applied
    with mig.db.session() as session:
        assert (p := session.get(Partner, "acme")) is not None and p.tier == "community"
    assert mig.permissions() == ["orders:read"]


async def test_the_access_view_keeps_the_fallback_from_notice_to_completion(
    migrate: Callable[..., Any],
) -> None:
    """M-6.1 (Decision) / M-6.3 / M-4.7: from the notice the partner's access view (what
    `GET /v1/partners/{id}/access` answers) lists the migration's fallback — one entry per
    target key, the component and the version it moves off, read-only permissions the partner
    holds (never `orders:write`) and the fallback's end; completion removes it."""
    mig: Mig = await migrate(months=6)
    state = await mig.at_step("plan")
    with mig.db.session() as session:
        access = repo.access(session=session, partner_id="acme")
    assert access is not None
    assert [(f.kind, f.name, f.version) for f in access.fallbacks] == [
        ("api", "kwanus", "2.1"),
        ("os", "kwanus", "4.2"),
    ]
    assert {f.migration_id for f in access.fallbacks} == {state.id}
    assert all(f.permissions == ["orders:read"] for f in access.fallbacks)
    assert all(f.until == state.fallback.until for f in access.fallbacks)
    assert access.permissions == ["orders:read", "orders:write"]  # not restricted
    await mig.through_rollout()
    assert state.fallback.until is not None
    mig.healthy_telemetry_at(state.fallback.until - timedelta(hours=1))
    result = await mig.handle.result()
    assert result.status is ProcessStatus.COMPLETED
    with mig.db.session() as session:
        after = repo.access(session=session, partner_id="acme")
    assert after is not None and after.fallbacks == []


async def test_unhealthy_telemetry_at_the_fallbacks_end_is_decided_never_left(
    migrate: Callable[..., Any],
) -> None:
    """M-4.7 / P-3 (issue 17): past the period but unhealthy, the fallback stays and the run
    does not loop on unasked — TSC and CGB are awaited for a decision within the review
    deadline. TSC extends it (within `fallback_max_months`; further is refused naming M-4.7);
    healthy telemetry before the new end completes the run."""
    mig: Mig = await migrate(months=6)
    state = await mig.through_rollout()
    until = state.fallback.until
    assert until is not None
    await mig.env.sleep(until - await mig.env.get_current_time() + 3 * DAY)
    state = await mig.at_step("fallback_decision:1")
    assert state.status is ProcessStatus.ACTIVE and state.fallback.active
    assert not state.monitoring[-1].healthy
    assert {a.actor for a in state.awaiting} == {"TSC", "CGB"}
    tsc = Actor(role=Role.TSC, token_id="t-tsc")
    with pytest.raises(WorkflowUpdateFailedError) as too_far:
        await mig.send(
            "fallback_decision",
            FallbackDecision(decision="extend", months=24, rationale="r"),
            who=tsc,
        )
    assert isinstance(too_far.value.cause, ApplicationError)
    assert "M-4.7" in str(too_far.value.cause.details)
    extended = await mig.send(
        "fallback_decision", FallbackDecision(decision="extend", months=3, rationale="r"), who=tsc
    )
    assert extended.fallback_decisions[-1].body.months == 3
    await mig.recorded("fallback_extended:1")
    new_until = (await mig.state()).fallback.until
    assert new_until is not None and new_until > until
    mig.healthy_telemetry_at(new_until - timedelta(hours=1))
    await mig.env.sleep(new_until - await mig.env.get_current_time() + DAY)
    result = await mig.closed()
    assert result.status is ProcessStatus.COMPLETED and not result.fallback.active


async def test_missing_telemetry_at_the_end_is_extended_once_then_remediated(
    migrate: Callable[..., Any],
) -> None:
    """P-3 / M-4.6 / M-4.7: no telemetry at all at the fallback's end is named as such and put
    to TSC and CGB; CGB extends once; still silent at the new end, TSC remediates — a
    remediation opens and the run waits on it."""
    mig: Mig = await migrate(months=6)
    state = await mig.through_rollout()
    assert state.fallback.until is not None
    await mig.env.sleep(state.fallback.until - await mig.env.get_current_time() + 3 * DAY)
    state = await mig.at_step("fallback_decision:1")
    assert [f.message for f in state.monitoring[-1].findings] == ["no telemetry reported"]
    cgb, tsc = Actor(role=Role.CGB, token_id="t-cgb"), Actor(role=Role.TSC, token_id="t-tsc")
    extend = FallbackDecision(decision="extend", months=2, rationale="give it time")
    await mig.send("fallback_decision", extend, who=cgb)
    await mig.recorded("fallback_extended:1")
    until = (await mig.state()).fallback.until
    assert until is not None
    await mig.env.sleep(until - await mig.env.get_current_time() + 3 * DAY)
    await mig.at_step("fallback_decision:2")
    remediate = FallbackDecision(decision="remediate", rationale="still silent")
    await mig.send("fallback_decision", remediate, who=tsc)
    state = await mig.at_step("remediation")
    assert [d.body.decision for d in state.fallback_decisions] == ["extend", "remediate"]
    assert len(state.remediations) == 1
    mig.started.append(remediation_workflow_id(state.remediations[0].id))


async def test_a_missed_fallback_decision_remediates(migrate: Callable[..., Any]) -> None:
    """P-3 / M-4.7: no decision by the review deadline applies `remediate` — a remediation opens
    and the run waits on it (its window bounded), never unbounded."""
    mig: Mig = await migrate(months=6)
    state = await mig.through_rollout()
    until = state.fallback.until
    assert until is not None
    await mig.env.sleep(until - await mig.env.get_current_time() + 3 * DAY)
    await mig.at_step("fallback_decision:1")
    await mig.env.sleep(DEFAULT_POLICY.review.period + DAY)
    state = await mig.at_step("remediation")
    assert len(state.remediations) == 1
    mig.started.append(remediation_workflow_id(state.remediations[0].id))
    assert "deadline_missed" in mig.events()


async def test_the_plan_sent_twice_at_once_is_taken_once(migrate: Callable[..., Any]) -> None:
    """P-4, M-4.2: the plan sent twice at the same moment (a client retrying) is taken once;
    the second is refused as already submitted and the run records the plan once."""
    mig: Mig = await migrate()
    await mig.at_step("plan")
    other = PLAN.model_copy(update={"strategy": "another"})
    outcomes = await asyncio.gather(
        mig.send("plan", PLAN), mig.send("plan", other), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0].cause, ApplicationError)
    assert refused[0].cause.type == "AlreadyDone"
    await mig.at_step("implementation")
    await mig.recorded("plan")
    assert mig.events().count("plan_submitted") == 1


async def test_documents_that_are_no_references_are_refused_by_the_validator(
    migrate: Callable[..., Any],
) -> None:
    """E-2.6, M-7.1 for a direct Temporal caller: an implementation report or documentation
    whose documents are not references, or repeat another's, is refused by the Update's
    validator naming every bad field — never accepted into the history, nothing recorded. The
    stored forms themselves load such values (recorded histories hold them, and replay)."""
    mig: Mig = await migrate()
    await mig.at_step("plan")
    await mig.send("plan", PLAN)
    await mig.at_step("implementation")

    async def refused(update: str, body: Any) -> dict[str, str]:
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await mig.send(update, body)
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == Refusal.INVALID
        errors: dict[str, str] = cause.details[0]["errors"]
        return errors

    repeated = MigrationImplementation(
        development="x", testing="x", documentation="has space", manifest=manifest()
    )
    errors = await refused("implementation", repeated)
    assert errors == {
        "testing": "the same reference as development: each document is its own (E-2.6)",
        "documentation": errors["documentation"],
    }
    assert errors["documentation"].startswith("not a reference")
    await mig.send(
        "implementation",
        MigrationImplementation(
            development="https://git.example.com/acme/widget/pull/1",
            testing="ci/results/1.xml",
            documentation="docs/widget.md",
            manifest=manifest(),
        ),
    )
    await mig.at_step("documentation")
    docs = MigrationDocumentation(
        migration_guide="docs/guide.md",
        compatibility_notes="docs/compatibility.md",
        version_notes="docs/guide.md",
        workflow_changes="/etc/passwd",
        permission_changes="docs/permissions.md",
        onboarding_guides="../onboarding.md",
    )
    errors = await refused("documentation", docs)
    assert set(errors) == {"version_notes", "workflow_changes", "onboarding_guides"}
    assert errors["version_notes"] == (
        "the same reference as migration_guide: each document is its own (M-7.1)"
    )
    state = await mig.state()
    assert state.step == "documentation" and state.documentation is None
    history = await mig.handle.fetch_history()
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert accepted == ["plan", "implementation"]
    assert "documentation_submitted" not in mig.events()


async def test_decline_only_when_optional(migrate: Callable[..., Any]) -> None:
    """M-2.2: an optional migration may be declined; M-2.3: a forced one may not (nor, M-2.1,
    a required one)."""
    forced: Mig = await migrate(
        trigger=Trigger.SECURITY_VIOLATION, type_=MigrationType.PERMISSION, subtype="reduction"
    )
    await forced.at_step("plan")
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await forced.send("decline", Withdrawal(reason="no"))
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "Invalid"
    assert cause.details[0]["rule"] == "M-2.3"

    optional: Mig = await migrate(
        trigger=Trigger.TIER_UPGRADE,
        type_=MigrationType.TIER,
        subtype="upgrade",
        target={"tier": "premier"},
    )
    await optional.at_step("plan")
    state = await optional.send("decline", Withdrawal(reason="not now"))
    assert state.status is ProcessStatus.DECLINED and not state.fallback.active
    assert (await optional.handle.result()).status is ProcessStatus.DECLINED


async def _to_validation(mig: Mig, **changes: Any) -> None:
    """The partner's plan, implementation — shipping `MANIFEST` with `changes` (M-8.1) — and
    documentation."""
    await mig.at_step("plan")
    await mig.send("plan", PLAN)
    await mig.at_step("implementation")
    await mig.send(
        "implementation",
        MigrationImplementation(
            development="d", testing="t", documentation="doc", manifest=manifest(**changes)
        ),
    )
    await mig.at_step("documentation")
    await mig.send(
        "documentation",
        MigrationDocumentation(
            migration_guide="g",
            compatibility_notes="c",
            version_notes="v",
            workflow_changes="w",
            permission_changes="p",
        ),
    )


async def _remediation(mig: Mig) -> WorkflowHandle[Remediation, RemediationStatus]:
    """The remediation the failed validation opened, once both sides have recorded it."""
    state = await mig.at_step("remediation")
    assert len(state.remediations) == 1
    link = state.remediations[0]
    await mig.recorded("remediation:1")
    handle = mig.env.client.get_workflow_handle_for(Remediation.run, link.workflow_id)
    for _ in range(200):
        with contextlib.suppress(RPCError):
            if (await handle.query(Remediation.status)).step == "root_cause":
                return handle
        await asyncio.sleep(0.05)
    raise AssertionError("the remediation never awaited its root cause")


async def test_failed_validation_is_remediated_then_revalidated(
    migrate: Callable[..., Any],
) -> None:
    """M-4.4 / M-8.1: four checks, each recorded, on the manifest the partner ships. M-8.2: an
    incompatible (unlisted, E-9.2) runtime fails validation and opens a remediation (M-9.1)
    whose severity the policy gives — minor, 30 days (M-9.2) — and the migration waits; the
    remediation's fixes carry the corrected manifest; once remediated, the checks run again on
    it, pass, and the migration goes on to its rollout (M-4.5)."""
    mig: Mig = await migrate(
        trigger=Trigger.RUNTIME_CHANGE,
        type_=MigrationType.RUNTIME,
        subtype="extension",
    )
    await _to_validation(mig, runtime={"name": "kwanus-runtime", "version": "9.9"})
    rem = await _remediation(mig)
    state = await mig.state()
    assert state.stage is MigrationStage.VALIDATION and state.status is ProcessStatus.ACTIVE
    assert set(state.validation) == {
        "api_contract",
        "workflow",
        "permission_boundary",
        "runtime_compatibility",
    }
    assert not state.validation["runtime_compatibility"].passed
    assert state.validation["api_contract"].passed
    assert mig.events().count("validated") == 4
    link = state.remediations[0]
    assert link.severity is Severity.MINOR and link.status is ProcessStatus.ACTIVE
    assert [a.action for a in state.awaiting] == [f"remediate the failed validation ({link.id})"]
    opened = await rem.query(Remediation.status)
    assert opened.origin == mig.handle.id and opened.kind == "validation_failed"
    assert opened.severity is Severity.MINOR
    assert link.deadline == opened.deadline == opened.opened_at + 30 * DAY

    assert [(f.field, f.rule) for f in state.validation["runtime_compatibility"].findings] == [
        ("manifest.runtime", "E-9.2")
    ]
    assert "runtime kwanus-runtime 9.9 is unlisted" in opened.description
    for step in ("root_cause", "plan"):
        await rem.execute_update(
            step,
            Act[RemediationStep](actor=PARTNER, body=RemediationStep(summary=step)),
            result_type=RemediationStatus,
        )
    # The fix: the partner ships on the supported runtime; its fixes carry the manifest.
    fixed = RemediationStep(summary="on 3.0", manifest=manifest())
    await rem.execute_update(
        "fixes", Act[RemediationStep](actor=PARTNER, body=fixed), result_type=RemediationStatus
    )
    await rem.execute_update(
        "review",
        Act[RemediationStep](actor=SCO, body=RemediationStep(summary="ok", passed=True)),
        result_type=RemediationStatus,
    )
    assert (await rem.result()).status is ProcessStatus.COMPLETED
    state = await mig.at_step("rollout")
    assert state.remediations[0].status is ProcessStatus.COMPLETED
    assert all(r.passed for r in state.validation.values())
    events = mig.events()
    assert events.count("validated") == 8
    assert events.index("remediation_opened") < events.index("remediated")
    assert state.manifest == Manifest.model_validate(manifest())  # validated again on it
    state = await mig.send("rollout", Rollout(version="9.9.0"))
    assert state.stage is MigrationStage.MONITORING  # answered at rest, monitoring (P-8)
    await mig.recorded("stage:Monitoring")


async def test_missed_remediation_stops_the_migration(migrate: Callable[..., Any]) -> None:
    """M-9.3: the failed validation's remediation misses its window → access stays
    restricted, a forced tier downgrade starts, and this migration stops (expired)."""
    mig: Mig = await migrate(
        trigger=Trigger.RUNTIME_CHANGE,
        type_=MigrationType.RUNTIME,
        subtype="extension",
    )
    await _to_validation(mig, runtime={"name": "kwanus-runtime", "version": "9.9"})
    rem = await _remediation(mig)
    mig.started.append(f"migration-rem-{(await rem.query(Remediation.status)).id}")
    await mig.env.sleep(29 * DAY)  # M-9.2: still inside the minor window
    assert (await mig.state()).remediations[0].status is ProcessStatus.ACTIVE
    await mig.env.sleep(2 * DAY)
    result = await mig.closed()
    assert result.status is ProcessStatus.EXPIRED
    assert result.remediations[0].status is ProcessStatus.EXPIRED
    assert mig.events()[-1] == "remediation_missed"
    escalated = await rem.result()
    assert escalated.escalation_migration == f"rem-{escalated.id}"
    forced = Mig(
        mig.env,
        mig.db,
        mig.env.client.get_workflow_handle_for(
            PartnerMigration.run, f"migration-rem-{escalated.id}"
        ),
        mig.started,
    )
    # At its plan step, or past it: the time-skipping server skips time while the test awaits
    # the remediation's result, so under load the forced migration's own window (the shortest)
    # may have run out meanwhile and its target applied (M-2.3). Nothing in flight either way.
    for _ in range(200):
        state = await forced.state()
        if state.step == "plan" or state.decision is not None:
            break
        await asyncio.sleep(0.05)
    assert state.step == "plan" or state.decision is not None, (state.stage, state.step)
    assert state.trigger is Trigger.COMPLIANCE_VIOLATION and state.origin == rem.id


async def test_missed_plan_window_expires(migrate: Callable[..., Any]) -> None:
    """M-2.1 / P-3: a required migration whose partner misses a step's window expires."""
    mig: Mig = await migrate()
    state = await mig.at_step("plan")
    assert state.window_end is not None
    assert state.window_end - state.started_at == DEFAULT_POLICY.migration_windows["required"]
    result = await mig.handle.result()
    assert result.status is ProcessStatus.EXPIRED and result.decision is None


async def test_a_forced_outcome_applies_at_the_window_end_whatever_the_partner_did(
    migrate: Callable[..., Any],
) -> None:
    """M-2.3 (Decision): a forced migration's window — the shortest — ends with no plan from the
    partner, and its target applies anyway: on the lowest tier's reduction, only the read-only
    permissions stay (the audit event lists before and after). `decision.outcome` is
    `enforced`; the read-only fallback stays through the fallback period, then the run
    completes as usual."""
    mig: Mig = await migrate(
        trigger=Trigger.COMPLIANCE_VIOLATION,
        type_=MigrationType.PERMISSION,
        subtype="reduction",
        months=6,
    )
    state = await mig.at_step("plan")
    assert state.window_end is not None
    assert state.window_end - state.started_at == DEFAULT_POLICY.migration_windows["forced"]
    assert mig.permissions() == ["orders:read", "orders:write"]
    await mig.env.sleep(state.window_end - await mig.env.get_current_time() + DAY)
    await mig.recorded("enforced")
    enforced = await mig.state()
    assert enforced.status is ProcessStatus.ACTIVE
    assert enforced.stage is MigrationStage.MONITORING and enforced.fallback.active
    assert enforced.decision is not None and enforced.decision.outcome == "enforced"
    assert mig.permissions() == ["orders:read"]  # whatever the partner did
    with mig.db.session() as session:
        event = session.exec(
            select(AuditEvent).where(col(AuditEvent.key) == f"{mig.handle.id}:enforced")
        ).one()
        record = repo.access(session=session, partner_id="acme")
    trimmed = event.data["trimmed"]
    assert trimmed["permissions_removed"] == ["orders:write"]
    assert trimmed["before"]["registered"] == ["orders:read", "orders:write"]
    assert record is not None and record.permissions == ["orders:read"]
    assert enforced.fallback.until is not None
    mig.healthy_telemetry_at(enforced.fallback.until - timedelta(hours=1))
    await mig.env.sleep(enforced.fallback.until - await mig.env.get_current_time() + DAY)
    result = await mig.closed()
    assert result.status is ProcessStatus.COMPLETED
    assert result.decision is not None and result.decision.outcome == "enforced"
    with mig.db.session() as session:
        decided = repo.state_of(
            repo.get_process(session=session, workflow_id=mig.handle.id), contract.MIGRATION
        )
        rec = records.decision_record(
            session=session, row=repo.get_process(session=session, workflow_id=mig.handle.id)
        )
    assert decided is not None and decided.decision is not None
    assert rec.decided["decision"]["outcome"] == "enforced"


async def test_a_step_sent_as_its_deadline_is_recorded_is_refused(
    migrate: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """P-2 / P-3: once the deadline has passed the step is closed before the miss is recorded —
    a plan sent while `deadline_missed` is being written is refused, never taken by a run that
    then expires. The write is held (the real one, delayed) so the plan lands in that moment."""
    entered, release = threading.Event(), threading.Event()
    real = repo.record_event

    def held(*, session: Any, event: Any) -> bool:
        if event.event == "deadline_missed":
            entered.set()
            release.wait(20)
        return real(session=session, event=event)

    monkeypatch.setattr(repo, "record_event", held)
    mig: Mig = await migrate()  # required: a missed window expires it
    await mig.at_step("plan")
    result = asyncio.create_task(mig.handle.result())  # skips time to the deadline
    for _ in range(400):
        if entered.is_set():
            break
        await asyncio.sleep(0.05)
    assert entered.is_set(), "deadline_missed was never recorded"
    try:
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await mig.send("plan", PLAN)
    finally:
        release.set()
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == Refusal.WRONG_STAGE
    final = await result
    assert final.status is ProcessStatus.EXPIRED and final.plan is None
    assert "plan_submitted" not in mig.events()


async def test_forced_downgrade_changes_the_tier_at_rollout(
    migrate: Callable[..., Any],
) -> None:
    """M-9.3 / E-7.2 / M-4.5: the tier of a forced downgrade changes at its rollout, not before;
    the fallback period runs on, and completion (M-4.7) does not move it again."""
    mig: Mig = await migrate(
        trigger=Trigger.COMPLIANCE_VIOLATION,
        type_=MigrationType.TIER,
        subtype="downgrade",
        target={**TARGET, "tier": "community"},
        months=6,
    )
    # Holding orders:write, above community's read-only: validation judges the partner as the
    # downgrade leaves it (E-7.4), so it passes without anyone editing what the partner holds.
    assert mig.permissions() == ["orders:read", "orders:write"]
    await _to_validation(mig)
    await mig.at_step("rollout")
    with mig.db.session() as session:
        assert (p := session.get(Partner, "acme")) is not None and p.tier == "verified"
    state = await mig.send("rollout", Rollout(version="5.0.0"))
    assert state.tier_change is not None and state.tier_change.applied
    await mig.recorded("stage:Monitoring")
    with mig.db.session() as session:
        assert (p := session.get(Partner, "acme")) is not None and p.tier == "community"
    assert mig.permissions() == ["orders:read"]  # E-7.4: what community disallows, removed
    assert state.fallback.until is not None
    mig.healthy_telemetry_at(state.fallback.until - timedelta(hours=1))
    result = await mig.handle.result()
    assert result.status is ProcessStatus.COMPLETED
    with mig.db.session() as session:
        assert (p := session.get(Partner, "acme")) is not None and p.tier == "community"
        lifecycle = session.exec(
            select(AuditEvent).where(AuditEvent.key == f"{mig.handle.id}:lifecycle")
        ).one()
    assert "tier" not in lifecycle.data["target"]  # moved at the rollout, not again


# A run recorded before the notice became one activity (tests/histories/): its five activities
# — notify, read the partner, record `notice`, record the move to Plan, open the plan window.
TWO_STEP_RUN = (
    Path(__file__).parent
    / "histories/test_fallback_kept_for_exactly_its_period_sqlite-12___migration-452ceeeae8.json.gz"
)
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def _until_parked(history: WorkflowHistory) -> list[Any] | None:
    """The events until the migration parked at Plan: through the workflow task that took the
    completion of the plan window's record, and the commands it made (None: not parked yet)."""
    events = list(history.events)
    taken = openings_taken(events, ":window:plan")
    if not taken:
        return None
    end = taken[0][1] + 1
    while end < len(events) and events[end].event_type in (
        EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
        EventType.EVENT_TYPE_TIMER_STARTED,
    ):
        end += 1
    return events[:end]


def _scheduled(events: list[Any]) -> list[tuple[str, Any]]:
    """Each scheduled activity's type and its (pydantic-decoded) input."""
    out = []
    for ev in events:
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = ev.activity_task_scheduled_event_attributes
            kind = {"record_event": RecordEvent, "notice": NoticeInput}.get(
                attrs.activity_type.name
            )
            (arg,) = pydantic_data_converter.payload_converter.from_payloads(
                list(attrs.input.payloads), [kind] if kind else None
            )
            out.append((attrs.activity_type.name, arg))
    return out


def _stages_shown(events: list[Any]) -> list[str]:
    """The stages ops saw (KwanusStage upserts), each change once."""
    shown: list[str] = []
    for ev in events:
        if ev.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            fields = ev.upsert_workflow_search_attributes_event_attributes.search_attributes
            stage = fields.indexed_fields.get("KwanusStage")
            if stage is not None and json.loads(stage.data) not in shown[-1:]:
                shown.append(json.loads(stage.data))
    return shown


# Fields the migration's status gained after the two-step run was recorded (empty at notice).
# Fields added since it was recorded.
LATER_STATE_FIELDS = ("tier_change", "decision", "fallback_decisions", "manifest", "moved_at")


def _recorded(event: RecordEvent) -> dict[str, Any]:
    """What an audit row and its projection keep of an event, its timestamps blanked (the two
    runs started at different times) and its number in its run left out (the two paths count
    the activities' events differently; it orders only one run's events)."""
    dump = event.model_dump(mode="json", exclude={"at", "seq"})
    for field in LATER_STATE_FIELDS:
        assert (dump["state"] or {}).pop(field, None) in (None, [])
    return dict(json.loads(ISO_TIME.sub("<time>", json.dumps(dump))))


async def test_notice_in_one_activity_records_what_the_two_steps_did(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """M-4.1, M-6.1, M-6.2, M-6.3 — patch `notice-in-one-activity`: a new run notifies, activates
    the fallback and moves to Plan in one activity, and records the same `notice` and
    `stage:Plan` (key, rules, data, state snapshot, projection) as a run recorded with the two
    steps did, with the same input; ops see the same stages (Notice, then Plan); parked at
    Plan it has run 2 activities in 3 workflow tasks (the two steps: 5 in 6 on a dev server)."""
    with gzip.open(TWO_STEP_RUN, "rt") as f:
        old_history = WorkflowHistory.from_json("migration-452ceeeae8", f.read())
    start = old_history.events[0].workflow_execution_started_event_attributes
    (inp,) = pydantic_data_converter.payload_converter.from_payloads(
        list(start.input.payloads), [MigrationInput]
    )
    with db.session() as session:  # as `migrations_on` seeded the recorded run
        repo.create_partner(
            session=session,
            partner=PartnerCreate.model_validate(
                partner_body(permissions=["orders:read", "orders:write"])
            ),
        )
    async with running_worker(ts_env.client, db) as task_queue:
        handle = await ts_env.client.start_workflow(
            PartnerMigration.run, inp, id=old_history.workflow_id, task_queue=task_queue
        )
        try:
            for _ in range(200):  # parked (read from the history: the test server's queries
                new = _until_parked(await handle.fetch_history())  # make tasks of their own)
                if new is not None:
                    break
                await asyncio.sleep(0.05)
            state = await handle.query(PartnerMigration.status)
        finally:
            # Not exported: the run takes the recorded run's id, whose history it would replace.
            await end_runs(ts_env.client, [handle.id], request.node.name, export=False)
    old = _until_parked(old_history)
    assert old is not None and new is not None

    old_acts, new_acts = _scheduled(old), _scheduled(new)
    assert [kind for kind, _ in old_acts] == [
        "notify_partner",
        "partner_state",
        "record_event",
        "record_event",
        "record_event",
    ]
    assert [kind for kind, _ in new_acts] == ["notice", "record_event"]
    # (The recorded run's count is the test server's: its polled queries made tasks too.)
    completed = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
    assert sum(e.event_type == completed for e in new) == 3
    markers = [e for e in new if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert [
        [p.encode() in m.SerializeToString() for p in (NOTICE_PATCH, STEP_OPENS_PATCH)]
        for m in markers
    ] == [[True, False], [False, True]]

    notice = new_acts[0][1]
    assert isinstance(notice, NoticeInput)
    assert state.stage is MigrationStage.PLAN and state.step == "plan"
    written = notice.recorded(state.fallback.permissions)
    two_steps = [e for _, e in old_acts[2:4]]
    assert (
        [e.key for e in written]
        == [e.key for e in two_steps]
        == [
            f"{handle.id}:notice",
            f"{handle.id}:stage:Plan",
        ]
    )
    assert [_recorded(e) for e in written] == [_recorded(e) for e in two_steps]
    with db.session() as session:
        rows = session.exec(
            select(AuditEvent)
            .where(col(AuditEvent.workflow_id) == handle.id)
            .order_by(col(AuditEvent.seq))
        ).all()
    assert [(r.key, r.event, r.stage, r.rules) for r in rows[:2]] == [
        (e.key, e.event, e.stage, e.rules) for e in two_steps
    ]
    assert [json.loads(ISO_TIME.sub("<time>", json.dumps(r.data))) for r in rows[:2]] == [
        _recorded(e)["data"] for e in two_steps
    ]
    assert _stages_shown(new) == _stages_shown(old) == ["Notice", "Plan"]
