"""PartnerExpansion end to end on the time-skipping server: every stage (E-12.1), every branch,
deadlines driven over months with `env.sleep`, and the audit log holding each event once (P-4)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from kwanus.contract import expansion_workflow_id
from kwanus.hashing import canonical_sha256
from kwanus.models.common import Act, Actor
from kwanus.models.expansion import ExpansionInput, ExpansionStatus
from policy.document import DEFAULT_POLICY, PolicyDocument
from policy.evidence import Telemetry
from policy.forms import (
    DeadlineExtension,
    ImplementationReport,
    IntegrationPlan,
    MonitoringDecision,
    OutcomeReview,
    Plans,
    Release,
    Withdrawal,
)
from policy.proposal import Proposal
from policy.review import Review, criteria_of
from policy.vocabulary import (
    Body,
    ExpansionStage,
    Outcome,
    ProcessStatus,
    RiskLevel,
    Role,
    VoteDecision,
)
from policy.vote import Vote
from store import repo
from store.db import Database
from store.schemas import PartnerCreate
from store.tables import AuditEvent, Partner
from testdata.factories import PLATFORM_REPORT, partner_body, platform_report, proposal_body
from tests.conftest import end_runs, running_worker
from tests.histcheck import commands_on_step_opening
from workflows.expansion import PartnerExpansion

DAY = timedelta(days=1)
POLICY = DEFAULT_POLICY
TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
}


def actor(role: Role | str, partner_id: str | None = None) -> Actor:
    role = Role(role)
    return Actor(
        role=role,
        token_id="tok_test",
        partner_id=partner_id or ("acme" if role is Role.PARTNER else None),
    )


def review_of(body: Body, **changes: Any) -> Review:
    values: dict[str, Any] = {
        "criteria": dict.fromkeys(criteria_of(body), "pass"),
        "recommendation": "approve",
        "notes": f"{body.value} is satisfied",
    }
    values.update(changes)
    return Review.model_validate(values)


RELEASE = Release.model_validate(
    {
        "version": "1.0.0",
        "migration_guide": "docs/migrate-1.0",
        "fallback_behaviour": "0.9 stays read-only for 12 months",
        "compatibility": [
            {"kind": "runtime", "name": "kwanus-runtime", "version": "3.0", "status": "supported"}
        ],
    }
)


@dataclass
class Run:
    env: WorkflowEnvironment
    db: Database
    handle: WorkflowHandle[PartnerExpansion, ExpansionStatus]

    async def state(self) -> ExpansionStatus:
        return await self.handle.query(PartnerExpansion.status)

    async def until(self, check: Callable[[ExpansionStatus], bool], what: str) -> ExpansionStatus:
        """Wait (real time: the workflow runs its activities) until the state satisfies check."""
        for _ in range(200):
            state = await self.state()
            if check(state):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"never reached: {what} (last: {state.stage}, {state.step})")

    async def at_step(self, step: str) -> ExpansionStatus:
        return await self.until(lambda s: s.step == step, f"step {step}")

    async def send(self, update: str, who: Actor, body: Any) -> ExpansionStatus:
        return await self.handle.execute_update(
            update, Act[type(body)](actor=who, body=body), result_type=ExpansionStatus
        )

    async def partner_steps_to_release(self) -> None:
        """E-2.5 to E-2.7: the integration plan, the implementation report and the release."""
        await self.at_step("integration_plan")
        await self.send(
            "integration_plan",
            actor("partner"),
            IntegrationPlan(
                versioning="semver", compatibility_rules="additive", rollout_plan="10%"
            ),
        )
        await self.at_step("implementation")
        await self.send(
            "implementation",
            actor("partner"),
            ImplementationReport(development="PR-1", testing="CI-1", documentation="DOC-1"),
        )
        await self.at_step("release")
        await self.send("release", actor("partner"), RELEASE)

    async def reviews(self) -> None:
        await self.at_step("reviews")
        for body in Body:
            await self.send("review", actor(body.value), review_of(body))

    async def votes(self, **decisions: str) -> None:
        """Votes in the order given (the tally decides as soon as the outcome is certain)."""
        await self.at_step("votes")
        for body, decision in decisions.items():
            vote = Vote(decision=VoteDecision(decision), rationale="r")
            await self.send("vote", actor(body), vote)

    async def recorded(self, step: str) -> None:
        """Wait until the audit row of `step` is written: an activity still in flight while the
        time-skipping server jumps months ahead would time out and retry without end."""
        key = f"{self.handle.id}:{step}"
        for _ in range(200):
            with self.db.session() as session:
                if session.exec(select(AuditEvent).where(AuditEvent.key == key)).first():
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never recorded: {key}")

    async def history_length(self) -> int:
        return len((await self.handle.fetch_history()).events)

    def audit(self) -> list[AuditEvent]:
        with self.db.session() as session:
            return list(
                session.exec(
                    select(AuditEvent)
                    .where(AuditEvent.workflow_id == self.handle.id)
                    .order_by(AuditEvent.id)  # type: ignore[arg-type]
                ).all()
            )

    def events(self) -> list[str]:
        return [e.event for e in self.audit()]


@asynccontextmanager
async def expansions_on(
    env: WorkflowEnvironment, db: Database, test_name: str, policy: PolicyDocument = POLICY
) -> AsyncIterator[Callable[..., Any]]:
    """Start expansions of partner `acme` on `env` with a worker of the product; every run
    started is ended (and exported, see `end_runs`) afterwards."""
    with db.session() as session:
        repo.create_partner(session=session, partner=PartnerCreate.model_validate(partner_body()))
    started: list[str] = []
    async with running_worker(env.client, db) as task_queue:

        async def starter(**changes: Any) -> Run:
            proposal = Proposal.model_validate(proposal_body(**changes))
            eid = uuid.uuid4().hex[:10]
            handle = await env.client.start_workflow(
                PartnerExpansion.run,
                ExpansionInput(
                    expansion_id=eid,
                    partner_id="acme",
                    partner_tier="verified",
                    proposal=proposal,
                    proposal_sha256=canonical_sha256(proposal),
                    policy=policy,
                    submitted_by="tok_test",
                ),
                id=expansion_workflow_id(eid),
                task_queue=task_queue,
            )
            started.extend([handle.id, f"migration-exp-{eid}"])
            return Run(env, db, handle)

        yield starter
        # A run left open would stop the server from skipping time.
        await end_runs(env.client, started, test_name)


@pytest.fixture
async def start(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Any]]:
    async with expansions_on(ts_env, db, request.node.name) as starter:
        yield starter


def refusal(exc: WorkflowUpdateFailedError) -> ApplicationError:
    assert isinstance(exc.cause, ApplicationError)
    return exc.cause


def reliable_record(db: Database, now: datetime) -> None:
    """E-7.1 evidence that holds: three reliable weeks in the window, every grant used, no
    violations."""
    for weeks_ago in (1, 3, 6):
        platform_report(db, now - weeks_ago * 7 * DAY, usage={"orders:read": 40})


async def test_upgrade_needs_low_risk(start: Callable[..., Any], db: Database) -> None:
    """E-7.1: with reliable, clean, minimal evidence an upgrade still needs a low risk — a
    breaking change makes it medium, and the proposal is rejected naming the condition."""
    run: Run = await start(
        category="B", requested_tier="premier", migration_plan="dual run", breaking_change=True
    )
    reliable_record(db, await run.env.get_current_time())
    await run.reviews()
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.risk is not None and result.risk.level is RiskLevel.MEDIUM
    assert result.decision is not None and result.decision.rules == ["E-7.1"]
    assert [r.split(":")[0] for r in result.decision.reasons] == ["risk_low"]
    assert "tier_evidence_checked" in run.events()


async def approve_all(run: Run) -> None:
    await run.reviews()
    await run.votes(TSC="approve", SCO="approve", ERC="approve", CGB="approve")


# --- the happy path -------------------------------------------------------------------------


async def test_happy_path_through_every_stage(start: Callable[..., Any], db: Database) -> None:
    """E-12.1: Proposal → Evaluation → Approval → Integration → Release → Monitoring → Review,
    completed; E-2.7 a category-B release moves neither the tier nor its grants (both come
    with its migration's rollout), E-9.2 its compatibility is the partner's own; E-2.1a a tier
    change starts its migration; P-4 every event once."""
    run: Run = await start(category="B", requested_tier="premier", migration_plan="dual run")
    reliable_record(db, await run.env.get_current_time())  # E-7.1: the upgrade's evidence
    state = await run.at_step("reviews")
    assert state.stage is ExpansionStage.EVALUATION
    assert {a.actor for a in state.awaiting} == {"TSC", "SCO", "ERC", "CGB"}

    await approve_all(run)
    state = await run.at_step("integration_plan")
    assert state.decision is not None and state.decision.outcome is Outcome.APPROVED
    assert state.decision.rules == ["E-2.4"]
    assert state.risk is not None

    await run.partner_steps_to_release()
    state = await run.until(lambda s: s.stage is ExpansionStage.MONITORING, "monitoring")
    await run.recorded("stage:Monitoring")  # nothing in flight before time is skipped
    assert state.migration_id is not None

    now = await run.env.get_current_time()
    with db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None and partner.tier == "verified"  # the migration moves it
        # E-7.4: a category-B proposal's grants come with the tier, at that migration's rollout
        assert "order-trends" not in repo.holdings(partner).capabilities
        declared = repo.partner_compatibility(session=session, partner_id="acme")
        assert [(d.kind, d.version, d.release) for d in declared] == [("runtime", "3.0", "1.0.0")]
        history = repo.matrix_history(session=session)
        assert {c.source for c in history} == {"platform-seed"}  # E-9.2: no platform row moved
        for week in range(13):
            end = now + week * 7 * DAY + 3 * DAY  # mid-week: inside each check's period
            repo.add_telemetry(
                session=session,
                **PLATFORM_REPORT,
                partner_id="acme",
                report=Telemetry(
                    period_start=end - 7 * DAY,
                    period_end=end,
                    workflow_success_rate=0.999,
                    api_error_rate=0.001,
                    permission_usage={"orders:read": 5},
                ),
            )
    migration = run.env.client.get_workflow_handle(f"migration-{state.migration_id}")
    for _ in range(200):  # wait for it to settle at its first step: no activity in flight
        status = await migration.query("status")
        if status["step"] == "plan":
            break
        await asyncio.sleep(0.05)
    assert status["origin"] == run.handle.id and status["fallback"]["active"]
    assert status["target"] == {"tier": "premier"}
    # The migration is its own process (and test); ended here because an open run on a timer
    # keeps the time-skipping server from skipping time for the tests after this one.
    await migration.terminate("tested elsewhere")

    await run.env.sleep(POLICY.monitoring.expansion_period + DAY)
    state = await run.at_step("outcome_review")
    assert state.stage is ExpansionStage.REVIEW
    assert len(state.monitoring) == 13  # every 7 days over 90
    assert all(check.healthy for check in state.monitoring)
    # P-4: CGB's review sent twice at once (a client's retry racing its first attempt, as the
    # two-of-everything soak met it) is taken once, the copy refused as already done.
    copies = await asyncio.gather(
        *(
            run.send("outcome_review", actor("CGB"), OutcomeReview(outcome="successful"))
            for _ in range(2)
        ),
        return_exceptions=True,
    )
    refused = [c for c in copies if isinstance(c, WorkflowUpdateFailedError)]
    assert len(refused) == 1 and refusal(refused[0]).type == "AlreadyDone", copies
    result = await run.handle.result()
    assert result.status is ProcessStatus.COMPLETED
    history = await run.handle.fetch_history()
    scheduled = [
        e
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and b'"outcome_review_submitted"'
        in e.activity_task_scheduled_event_attributes.input.payloads[0].data
    ]
    assert len(scheduled) == 1

    events = run.events()
    for expected in (
        "submitted",
        "stage_changed",
        "window_opened",
        "reviewed",
        "risk_assessed",
        "voted",
        "decided",
        "integration_plan_submitted",
        "implementation_submitted",
        "release_submitted",
        "governance_update",
        "migration_started",
        "monitoring_check",
        "outcome_review_submitted",
        "completed",
    ):
        assert expected in events, expected
    assert events.count("reviewed") == 4 and events.count("voted") == 4
    assert events.count("stage_changed") == 6
    keys = [e.key for e in run.audit()]
    assert len(keys) == len(set(keys))  # P-4: each event once
    # P-2: every step (reviews, votes, the partner's) opens without a command of its own.
    assert commands_on_step_opening(await run.handle.fetch_history(), ":window:") == []


# --- rejections -----------------------------------------------------------------------------


async def test_cgb_rejects_despite_three_approvals(start: Callable[..., Any]) -> None:
    """E-2.4: CGB has final authority."""
    run: Run = await start()
    await run.reviews()
    await run.votes(TSC="approve", SCO="approve", ERC="approve", CGB="reject")
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.decision is not None and "E-2.4" in result.decision.rules
    assert run.events()[-3:] == ["voted", "decided", "rejected"]


async def test_two_two_tie_rejected(start: Callable[..., Any]) -> None:
    """E-2.4: a tie is no majority (the fourth vote makes it 2-2)."""
    run: Run = await start()
    await run.reviews()
    await run.votes(TSC="approve", CGB="approve", SCO="reject", ERC="reject")
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.decision is not None
    assert any("tie" in r for r in result.decision.reasons)


async def test_forbidden_finding_at_review_rejects(start: Callable[..., Any]) -> None:
    """E-5.2: a review that finds an ungoverned workflow ends the proposal rejected."""
    run: Run = await start()
    await run.at_step("reviews")
    await run.send("review", actor("ERC"), review_of(Body.ERC, forbidden=["ungoverned_workflows"]))
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.decision is not None and result.decision.rules == ["E-5.2"]
    assert result.votes == {}


async def test_restricted_item_without_sco_approval_rejected(start: Callable[..., Any]) -> None:
    """E-6.2: a restricted item needs SCO's approval in the vote."""
    run: Run = await start(requested_capabilities=[{"name": "orders-edit", "kind": "write"}])
    state = await run.at_step("reviews")
    assert [f.rule for f in state.flags] == ["E-6.2"]
    await run.reviews()
    await run.votes(TSC="approve", ERC="approve", CGB="approve", SCO="reject")
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.decision is not None and result.decision.rules == ["E-6.2"]


# --- deadlines (P-3) ------------------------------------------------------------------------


async def test_missed_review_deadline_escalates_then_expires(start: Callable[..., Any]) -> None:
    """P-3: reminder at day 10, escalation to CGB at day 14, expiry when CGB lets it lapse."""
    run: Run = await start()
    await run.at_step("reviews")
    await run.send("review", actor("TSC"), review_of(Body.TSC))
    await run.env.sleep(POLICY.review.period + DAY)
    state = await run.state()
    assert state.status is ProcessStatus.ACTIVE
    assert state.escalations and state.escalations[0].missing == ["SCO", "ERC", "CGB"]
    assert any(a.actor == "CGB" and "escalated" in a.action for a in state.awaiting)
    result = await run.handle.result()
    assert result.status is ProcessStatus.EXPIRED
    events = run.events()
    assert events.index("reminder") < events.index("escalated") < events.index("expired")
    assert "deadline_missed" in events


async def test_deadline_extended_by_cgb_is_honoured(start: Callable[..., Any]) -> None:
    """P-3: CGB extends the pending review deadline; the running timer follows it."""
    run: Run = await start()
    state = await run.at_step("reviews")
    first_deadline = state.awaiting[0].deadline
    assert first_deadline is not None
    await run.env.sleep(12 * DAY)
    until = first_deadline + 10 * DAY
    state = await run.send(
        "extend_deadline", actor("CGB"), DeadlineExtension(until=until, reason="holidays")
    )
    assert state.awaiting[0].deadline == until
    await run.env.sleep(8 * DAY)  # past the first deadline, before the new one
    state = await run.state()
    assert state.status is ProcessStatus.ACTIVE and not state.escalations
    await approve_all(run)
    await run.at_step("integration_plan")
    assert "deadline_extended" in run.events()


async def test_extension_during_escalation_reopens_the_step(start: Callable[..., Any]) -> None:
    """P-3: after the deadline, CGB (escalated to) may still extend it within the window."""
    run: Run = await start()
    await run.at_step("reviews")
    await run.env.sleep(POLICY.review.period + DAY)
    state = await run.state()
    assert state.escalations
    until = await run.env.get_current_time() + 60 * DAY
    await run.send("extend_deadline", actor("admin"), DeadlineExtension(until=until, reason="late"))
    await approve_all(run)
    await run.at_step("integration_plan")


async def test_partner_step_missed_expires(start: Callable[..., Any]) -> None:
    """P-3: a partner step not done by its deadline expires the proposal."""
    run: Run = await start()
    await approve_all(run)
    await run.at_step("integration_plan")
    result = await run.handle.result()
    assert result.status is ProcessStatus.EXPIRED
    assert run.events()[-2:] == ["deadline_missed", "expired"]


async def test_missing_plans_are_asked_for_before_the_vote(start: Callable[..., Any]) -> None:
    """E-2.3: the vote waits until the partner sends the plans the risk level requires."""
    run: Run = await start(risk_mitigation=None, fallback_plan=None, monitoring_plan=None)
    await run.reviews()
    state = await run.at_step("plans")
    assert state.risk is not None
    assert set(state.risk.missing_plans) == {"risk_mitigation", "fallback_plan", "monitoring_plan"}
    await run.send(
        "plans",
        actor("partner"),
        Plans(risk_mitigation="flags", fallback_plan="off switch", monitoring_plan="dashboards"),
    )
    await run.votes(TSC="approve", SCO="approve", ERC="approve", CGB="approve")
    await run.at_step("integration_plan")


# --- withdrawal and refused steps -----------------------------------------------------------


async def test_withdrawn_mid_way(start: Callable[..., Any]) -> None:
    """The partner withdraws before release; nothing more is awaited."""
    run: Run = await start()
    await approve_all(run)
    await run.at_step("integration_plan")
    state = await run.send("withdraw", actor("partner"), Withdrawal(reason="changed plans"))
    assert state.status is ProcessStatus.WITHDRAWN and state.awaiting == []
    result = await run.handle.result()
    assert result.status is ProcessStatus.WITHDRAWN
    assert run.events()[-1] == "withdrawn"


async def test_refused_steps_leave_no_event(start: Callable[..., Any]) -> None:
    """P-2: a refused update — wrong role, second review, wrong stage, incomplete, another
    partner — is an error to the caller and leaves no event and no audit row."""
    run: Run = await start()
    await run.at_step("reviews")
    await run.send("review", actor("TSC"), review_of(Body.TSC))
    before, audit_before = await run.history_length(), len(run.audit())
    later = await run.env.get_current_time() + 99 * DAY
    cases: list[tuple[str, Actor, Any, str]] = [
        ("review", actor("partner"), review_of(Body.TSC), "Forbidden"),  # P-6
        ("review", actor("TSC"), review_of(Body.TSC), "AlreadyDone"),  # E-2.2
        ("review", actor("SCO"), review_of(Body.TSC), "Invalid"),  # E-4.2
        ("vote", actor("CGB"), Vote(decision=VoteDecision.APPROVE), "WrongStage"),
        ("release", actor("partner"), RELEASE, "WrongStage"),
        ("withdraw", actor("partner", "globex"), Withdrawal(), "Forbidden"),
        ("extend_deadline", actor("TSC"), DeadlineExtension(until=later, reason="x"), "Forbidden"),
        (
            "extend_deadline",
            actor("CGB"),
            DeadlineExtension(until=datetime(2000, 1, 1, tzinfo=UTC), reason="x"),
            "Invalid",
        ),
    ]
    for update, who, body, kind in cases:
        with pytest.raises(WorkflowUpdateFailedError) as info:
            await run.send(update, who, body)
        assert refusal(info.value).type == kind, (update, who, kind)
    # The time-skipping server has no speculative workflow tasks, so each refused update still
    # costs a workflow task here; nothing else may appear (no update, activity or timer). The
    # dev-server API test checks the history length itself.
    added = (await run.handle.fetch_history()).events[before:]
    assert {e.event_type for e in added} <= TASK_EVENTS
    assert len(run.audit()) == audit_before


async def test_terminated_run_answers_from_the_store(start: Callable[..., Any]) -> None:
    """The projection keeps the last full status for when the run is gone."""
    run: Run = await start()
    await run.at_step("reviews")
    await run.handle.terminate("test over")
    with run.db.session() as session:
        row = repo.get_process(session=session, workflow_id=run.handle.id)
    assert row is not None and row.state is not None
    stored = ExpansionStatus.model_validate(row.state)
    assert stored.stage is ExpansionStage.EVALUATION
    assert {a.actor for a in stored.awaiting} == {"TSC", "SCO", "ERC", "CGB"}
    with pytest.raises(RPCError) as info:
        await run.handle.execute_update(
            "withdraw", Act[Withdrawal](actor=actor("partner"), body=Withdrawal())
        )
    assert info.value.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION)


async def test_concurrent_votes_each_counted_once(start: Callable[..., Any]) -> None:
    """E-2.4: votes arriving at the same moment — one body twice among them — are tallied with
    each body exactly once."""
    run: Run = await start()
    await run.reviews()
    await run.at_step("votes")
    approve = Vote(decision=VoteDecision.APPROVE, rationale="r")
    sends = [run.send("vote", actor(b.value), approve) for b in Body]
    sends.append(run.send("vote", actor("TSC"), Vote(decision=VoteDecision.REJECT)))
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(refused) == 1 and refusal(refused[0]).type in ("AlreadyDone", "WrongStage")
    state = await run.at_step("integration_plan")
    assert state.decision is not None and state.decision.outcome is Outcome.APPROVED
    assert run.events().count("voted") == 4


async def test_a_partner_step_sent_twice_at_once_is_taken_once(start: Callable[..., Any]) -> None:
    """P-4, P-2: the partner's step sent twice at the same moment (a client retrying while
    the first attempt's answer is in flight) is taken once — the second is refused as already
    submitted — so the run records it once and keeps the first body."""
    run: Run = await start()
    await approve_all(run)
    await run.at_step("integration_plan")
    plan = IntegrationPlan(versioning="semver", compatibility_rules="additive", rollout_plan="10%")
    await run.send("integration_plan", actor("partner"), plan)
    await run.at_step("implementation")
    reports = [
        ImplementationReport(development=f"PR-{n}", testing="CI-1", documentation="DOC-1")
        for n in (1, 2)
    ]
    outcomes = await asyncio.gather(
        *(run.send("implementation", actor("partner"), r) for r in reports),
        return_exceptions=True,
    )
    taken = [o for o in outcomes if isinstance(o, ExpansionStatus)]
    refused = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(taken) == 1 and len(refused) == 1, outcomes
    assert refusal(refused[0]).type == "AlreadyDone"
    first = taken[0].implementation
    assert first is not None
    state = await run.at_step("release")
    assert state.implementation == first
    await run.recorded("implementation")
    assert run.events().count("implementation_submitted") == 1
    key = f'"{run.handle.id}:implementation"'.encode()
    scheduled = [
        e
        for e in (await run.handle.fetch_history()).events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and key in e.activity_task_scheduled_event_attributes.input.payloads[0].data
    ]
    assert len(scheduled) == 1


GOLD = {
    "spec": {
        "name": "gold",
        "capability_kinds": ["read_only", "workflow_trigger", "ui_component"],
        "integration_kinds": ["api", "workflow"],
        "permission_actions": ["read", "trigger"],
    },
    "after": "verified",
    "compatibility_plan": "gold partners stay on supported runtimes",
}


async def _new_tier_through_votes(
    start: Callable[..., Any], db: Database, cgb_sustainability: str
) -> Run:
    run: Run = await start(
        category="B", requested_tier="gold", new_tier=GOLD, migration_plan="dual run"
    )
    reliable_record(db, await run.env.get_current_time())  # E-7.1: gold ranks above verified
    await run.at_step("reviews")
    for body in Body:
        criteria = dict.fromkeys(criteria_of(body), "pass")
        if body is Body.CGB:
            criteria["sustainability"] = cgb_sustainability
        await run.send("review", actor(body.value), review_of(body, criteria=criteria))
    await run.votes(TSC="approve", SCO="approve", ERC="approve", CGB="approve")
    return run


async def test_new_tier_lands_in_the_catalogue_at_release(
    start: Callable[..., Any], db: Database
) -> None:
    """E-7.3: a new tier, approved by the vote with its compatibility plan, lifecycle plan and
    CGB's sustainability review, becomes a new policy version's tier at release, and the
    release starts the migration to it (E-7.1: the tier moves at that migration's rollout);
    running processes keep their version (P-5)."""
    run = await _new_tier_through_votes(start, db, "pass")
    await run.at_step("integration_plan")
    await run.partner_steps_to_release()
    await run.until(lambda s: s.stage is ExpansionStage.MONITORING, "monitoring")
    await run.recorded("stage:Monitoring")
    with db.session() as session:
        policy = repo.current_policy(session=session)
        assert policy.version == 2 and policy.tier_names[:3] == ("community", "verified", "gold")
        partner = session.get(Partner, "acme")
        assert partner is not None and partner.tier == "verified"  # its migration moves it
    assert "tier_created" in run.events()
    migration = run.env.client.get_workflow_handle(f"migration-{(await run.state()).migration_id}")
    for _ in range(200):
        status = await migration.query("status")
        if status["step"] == "plan":
            break
        await asyncio.sleep(0.05)
    assert (status["trigger"], status["target"]) == ("tier_upgrade", {"tier": "gold"})
    await migration.terminate("tested elsewhere")


async def test_new_tier_needs_a_sustainability_review(
    start: Callable[..., Any], db: Database
) -> None:
    """E-7.3: approved by the vote, but CGB's sustainability criterion is a concern: rejected,
    the missing requirement named; the catalogue is unchanged."""
    run = await _new_tier_through_votes(start, db, "concern")
    result = await run.handle.result()
    assert result.status is ProcessStatus.REJECTED
    assert result.decision is not None and result.decision.rules == ["E-7.3"]
    assert [r.split(":")[0] for r in result.decision.reasons] == ["sustainability_review"]
    with db.session() as session:
        assert "gold" not in repo.current_policy(session=session).tier_names


async def test_monitoring_checks_at_least_once(
    ts_env: WorkflowEnvironment, db: Database, request: pytest.FixtureRequest
) -> None:
    """E-11.1: the monitoring plan is carried out once at least, even when the stage begins after
    its period has passed (a stage-entry write held up by a crashed worker: the soak found it)."""
    monitoring = POLICY.monitoring.model_copy(update={"expansion_period": timedelta(0)})
    policy = POLICY.model_copy(update={"monitoring": monitoring})
    async with expansions_on(ts_env, db, request.node.name, policy) as start:
        run: Run = await start()
        await approve_all(run)
        await run.partner_steps_to_release()
        state = await run.until(lambda s: s.stage is ExpansionStage.REVIEW, "review")
        assert len(state.monitoring) == 1
        assert run.events().count("monitoring_check") == 1


# --- monitoring that acts (issue 17) ------------------------------------------------------------


async def released_and_breached(run: Run, db: Database) -> ExpansionStatus:
    """Approved, released (category A: its grant added), then a platform report breaching the
    thresholds inside the first monitoring period: the check puts it to CGB (E-12.1, P-3)."""
    await approve_all(run)
    await run.partner_steps_to_release()
    await run.until(lambda s: s.stage is ExpansionStage.MONITORING, "monitoring")
    await run.recorded("stage:Monitoring")
    await breaching_report(run, db)
    await run.env.sleep(POLICY.monitoring.check_interval + DAY)
    state = await run.at_step("monitoring_decision:1")
    assert [a.actor for a in state.awaiting] == ["CGB", "SCO"]
    assert not state.monitoring[-1].healthy
    return state


async def breaching_report(run: Run, db: Database) -> None:
    """The platform reports the partner unstable inside the coming monitoring period."""
    end = await run.env.get_current_time() + 3 * DAY
    platform_report(db, end, success=0.5, errors=0.2)


def holds(db: Database, name: str) -> bool:
    with db.session() as session:
        partner = session.get(Partner, "acme")
        assert partner is not None
        return name in repo.holdings(partner).capabilities


async def test_a_monitoring_breach_rolled_back_by_cgb(
    start: Callable[..., Any], db: Database
) -> None:
    """E-12.1 stage 6 / P-3 (issue 17): a check breaching the thresholds awaits CGB (only CGB
    decides: TSC is refused); `roll_back` is a governance update revoking what the release
    granted, before and after on record, and the stage ends (on to the outcome review)."""
    run: Run = await start()
    await released_and_breached(run, db)
    assert holds(db, "order-trends")
    with pytest.raises(WorkflowUpdateFailedError) as not_cgb:
        await run.send(
            "monitoring_decision",
            actor("TSC"),
            MonitoringDecision(decision="continue", rationale="r"),
        )
    assert refusal(not_cgb.value).type == "Forbidden"
    await run.send(
        "monitoring_decision",
        actor("CGB"),
        MonitoringDecision(decision="roll_back", rationale="unstable"),
    )
    state = await run.at_step("outcome_review")
    assert state.monitoring_decisions[-1].body.decision == "roll_back"
    assert not holds(db, "order-trends")
    rolled = [e for e in run.audit() if e.event == "rolled_back"]
    assert len(rolled) == 1 and "order-trends" in rolled[0].data["removed"]


async def test_a_monitoring_breach_continued_or_remediated(
    start: Callable[..., Any], db: Database
) -> None:
    """E-12.1 / P-3: SCO may recommend (on record, deciding nothing, once a breach); CGB's
    `continue` goes on watching; at the next breach `remediate` opens a remediation of the
    partner and the watch goes on; at the third, no decision by the review deadline applies
    `remediate`."""
    run: Run = await start()
    await released_and_breached(run, db)
    advice = MonitoringDecision(decision="remediate", rationale="looks systemic")
    state = await run.send("monitoring_decision", actor("SCO"), advice)
    assert state.monitoring_recommendations[-1].body.decision == "remediate"
    assert state.monitoring_decisions == [] and state.step == "monitoring_decision:1"
    with pytest.raises(WorkflowUpdateFailedError) as twice:
        await run.send("monitoring_decision", actor("SCO"), advice)
    assert refusal(twice.value).type == "AlreadyDone"
    await run.send(
        "monitoring_decision",
        actor("CGB"),
        MonitoringDecision(decision="continue", rationale="a blip"),
    )
    await run.recorded("monitoring_decided:1")
    assert holds(db, "order-trends")  # continued: nothing revoked, nothing opened

    await breaching_report(run, db)
    await run.env.sleep(POLICY.monitoring.check_interval + DAY)
    await run.at_step("monitoring_decision:2")
    await run.send(
        "monitoring_decision",
        actor("CGB"),
        MonitoringDecision(decision="remediate", rationale="fix it"),
    )
    await run.recorded("breach_remediation:2")

    await breaching_report(run, db)  # the next period breaches again; nobody decides in time
    await run.env.sleep(POLICY.monitoring.check_interval + DAY)
    await run.at_step("monitoring_decision:3")
    await run.env.sleep(POLICY.review.period + DAY)
    await run.recorded("breach_remediation:3")
    state = await run.state()
    decided = [(d.body.decision, d.actor) for d in state.monitoring_decisions]
    assert [d for d, _ in decided] == ["continue", "remediate", "remediate"]
    assert decided[-1][1] == "system"
    eid = run.handle.id.removeprefix("expansion-")
    for n in (2, 3):
        await run.env.client.get_workflow_handle(f"remediation-exp-{eid}-v{n}").terminate("over")
