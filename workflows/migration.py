"""PartnerMigration: one migration from notice to completion (Migration Playbook §4):
Notice → Plan → Implementation → Validation → Rollout → Monitoring → Completion.

The fallback is activated at the notice, before anything else (M-4.1), lives on a durable timer
for the migration's fallback period (M-6.2), and is removed only after that period *and* with
healthy telemetry (M-4.7).

One process top to bottom — its stages, Updates and validators; the step machinery is in
workflows/steps.py, what happens when a check fails or the partner does not act in
workflows/outcomes.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.migration import MigrationActivities
    from kwanus.contract import MIGRATION_WORKFLOW, OPENED_UPDATE, Refusal
    from kwanus.models.common import Act, Awaiting, RecordEvent, StepRecord
    from kwanus.models.migration import (
        Fallback,
        LifecycleInput,
        MigrationInput,
        MigrationStatus,
        NoticeInput,
        Notification,
        RolloutInput,
    )
    from kwanus.models.remediation import RemediationClosed
    from kwanus.notice import (
        NOTICE_RULES,
        NoticeRecords,
        notice_data,
        notice_records,
        started_state,
    )
    from policy.decisions import Decision
    from policy.forms import (
        FallbackDecision,
        MigrationDocumentation,
        MigrationImplementation,
        MigrationPlan,
        Rollout,
        Withdrawal,
    )
    from policy.manifest import Manifest
    from policy.migration import (
        check_fallback,
        check_fallback_extension,
        completion_allowed,
        fallback_permissions,
        fallback_until,
        may_decline,
        migration_window,
    )
    from policy.validation import passed as validation_passed
    from policy.vocabulary import (
        MigrationStage,
        MigrationType,
        ProcessKind,
        ProcessStatus,
        Role,
    )
    from workflows import legacy
    from workflows.common import (
        call,
        monitor,
        refuse,
        refuse_decision,
        require_partner,
        require_role,
    )
    from workflows.outcomes import Enforced, Outcomes
    from workflows.steps import Ended, Step, Steps

# The target keys a manifest carries (its versions and runtime; the tier is not the manifest's).
MANIFEST_TARGET_KEYS = ("os_version", "api_version", "runtime_name", "runtime_version")
BEFORE_ROLLOUT = (MigrationStage.NOTICE, MigrationStage.PLAN, MigrationStage.IMPLEMENTATION)

# Runs noticed before this change replay their five activities (notify, read the partner, record
# `notice`, record the move to Plan); new runs do it in one (bench/RESULTS.md, fan-out).
NOTICE_PATCH = "notice-in-one-activity"
# Runs monitoring before a fallback unhealthy at its end awaited a decision replay looping on.
FALLBACK_DECISION_PATCH = "fallback-end-decided"
# Runs rolled out before a rollout took effect with its record (tier, declared compatibility)
# replay their `record_event` and `update_matrix`.
ROLLOUT_PATCH = "rollout-takes-effect"
# Runs a deprecation's fan-out starts with their notice on record (`MigrationInput.noticed`):
# the first workflow task only opens the plan window's timer (bench/RESULTS.md, fan-out).
FANOUT_NOTICE_PATCH = "notice-recorded-by-fanout"


@workflow.defn(name=MIGRATION_WORKFLOW)
class PartnerMigration(Outcomes):
    @workflow.init
    def __init__(self, inp: MigrationInput) -> None:
        self.inp = inp
        self.policy = inp.policy  # P-5
        self.partner = f"partner:{inp.partner_id}"
        # A fan-out's migration: its notice, move to Plan and plan window are on record
        # (kwanus.notice); the run starts at Plan, its window's record the last on record.
        self.noticed: NoticeRecords | None = None
        planned = None
        if inp.resume is None and inp.noticed is not None:
            wid, noticed = workflow.info().workflow_id, inp.noticed
            self.noticed = notice_records(inp, wid, noticed.at, noticed.permissions)
            planned = self.noticed.state.model_copy(update={"step": None, "awaiting": []})
        self.state = (
            inp.resume or planned or started_state(inp, workflow.info().workflow_id, workflow.now())
        )
        self.steps = Steps(
            ProcessKind.MIGRATION,
            lambda: self.state,
            inp.policy,
            what="migration",
            show_ends=False,
            show_opened=False,
        )
        self.ledger = self.steps.ledger
        self.steps.opened = inp.resume is not None  # a continued run opened its steps before
        self.escalation: str | None = None  # a missed remediation's forced migration

    @workflow.run
    async def run(self, inp: MigrationInput) -> MigrationStatus:
        try:
            if inp.resume is None:
                # A forced target applied at the window's end goes on to monitoring.
                with contextlib.suppress(Enforced):
                    await self._before_monitoring()
            await self._monitoring()  # a continued run picks up here
            await self._completion()
        except Ended:
            pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    async def _before_monitoring(self) -> None:
        """Notice to rollout (M-4.1 to M-4.5): each partner step due within the window."""
        opened: tuple[datetime, Callable[[], Awaitable[None]]] | None = None
        if self.noticed is not None and workflow.patched(FANOUT_NOTICE_PATCH):
            opened = self._noticed_by_fanout(self.noticed)
        elif workflow.patched(NOTICE_PATCH):
            await self._notice_to_plan()
        else:
            await self._notice()
            await self._enter(MigrationStage.PLAN)
        await self._partner_step(
            "plan",
            "submit the migration plan",
            "M-4.2",
            lambda: self.state.plan is not None,
            opened=opened,
        )
        await self._enter(MigrationStage.IMPLEMENTATION)
        await self._partner_step(
            "implementation",
            "report the implementation",
            "M-4.3",
            lambda: self.state.implementation is not None,
        )
        await self._partner_step(
            "documentation",
            "submit the documentation",
            "M-7.1",
            lambda: self.state.documentation is not None,
        )
        await self._validation()
        await self._enter(MigrationStage.ROLLOUT)
        await self._partner_step(
            "rollout",
            "roll out the versioned release",
            "M-4.5",
            lambda: self.state.rollout is not None,
        )

    async def _notice(self) -> None:
        """M-4.1: notify the partner, define the window, activate the fallback — in that order,
        before anything else. The fallback keeps today's APIs and workflows with read-only
        permissions (M-6.1) and never more than the partner holds (M-6.3)."""
        now = workflow.now()
        self.steps.show()
        await call(
            MigrationActivities.notify_partner,
            self._notification(now),
            summary="notify partner",
        )
        self.state.window_end = now + migration_window(self.inp.trigger, self.policy)
        partner = await call(
            MigrationActivities.partner_state,
            self.inp.partner_id,
            summary="read partner state",
        )
        permissions = fallback_permissions(list(partner.permissions))
        refuse_decision(check_fallback(permissions, list(partner.permissions)), "bad fallback")
        self.state.fallback = Fallback(
            active=True,
            until=fallback_until(now, self.inp.fallback_months),
            permissions=permissions,
        )
        self.steps.show()
        await self.ledger.emit(
            "notice",
            "notice",
            actor=self.inp.requested_by,
            rules=NOTICE_RULES,
            data=self._notice_data(self.state.fallback),
        )

    async def _notice_to_plan(self) -> None:
        """M-4.1 as `_notice` then the move to Plan, in one activity: it notifies the partner,
        reads its grants for the read-only fallback (M-6.1, M-6.3) and records `notice` and
        `stage:Plan` in one transaction, keyed and filled as the two steps record them."""
        now = workflow.now()
        self.steps.show()
        self.state.window_end = now + migration_window(self.inp.trigger, self.policy)
        until = fallback_until(now, self.inp.fallback_months)
        noticed = self.state.model_copy(update={"fallback": Fallback(active=True, until=until)})
        result = await call(
            MigrationActivities.notice,
            NoticeInput(
                note=self._notification(now),
                partner_id=self.inp.partner_id,
                state=noticed,
                notice=self.ledger.now_event(
                    "notice",
                    "notice",
                    actor=self.inp.requested_by,
                    rules=NOTICE_RULES,
                    data=self._notice_data(noticed.fallback),
                ).model_copy(update={"state": None}),
                plan=self._stage_changed(MigrationStage.PLAN).model_copy(update={"state": None}),
            ),
            summary="notice: notify, fallback, record notice and Plan",
        )
        refuse_decision(result.refused, "bad fallback")
        # A decline accepted meanwhile (M-2.2) ends the run here. The move to Plan went on
        # record with the notice; the decline's record, later in workflow time, is what the
        # projection keeps.
        self.steps.ensure_active()
        self.state.fallback = Fallback(active=True, until=until, permissions=result.permissions)
        self._move_to(MigrationStage.PLAN)

    def _noticed_by_fanout(
        self, noticed: NoticeRecords
    ) -> tuple[datetime, Callable[[], Awaitable[None]]]:
        """M-4.1 done by the fan-out with its page (kwanus.notice): `notice`, the move to Plan
        and the plan window's opening are on record, and the run is at Plan (from its input).
        Left: the plan step, opened when and as recorded — no activity, one timer."""
        window = noticed.events[-1]
        self.noticed = None  # what a cached run keeps: not three copies of its state
        self.ledger.seq = window.seq - 1  # `notice` and `stage:Plan`; the window's is next

        async def recorded() -> None:
            self.ledger.seq = window.seq
            self.ledger.recorded = window.state

        return window.at, recorded

    def _notification(self, now: datetime) -> Notification:
        return Notification(
            key=f"{self.state.workflow_id}:notice",
            partner_id=self.inp.partner_id,
            process_id=self.state.workflow_id,
            kind="migration_notice",
            message=f"Migration {self.inp.migration_id} ({self.inp.trigger.value}, "
            f"{self.inp.type_.value}/{self.inp.subtype}) has started.",
            at=now,
        )

    def _notice_data(self, fallback: Fallback) -> dict[str, object]:
        return notice_data(self.state, fallback, self.inp.origin)

    @workflow.signal(name="remediation_closed")
    def remediation_closed(self, msg: RemediationClosed) -> None:
        for link in self.state.remediations:
            if link.id == msg.remediation_id:
                # Only a remediation that completes just now (not a missed one, not one closed
                # before) hands over its fixes' manifest, validated again next (M-8.1).
                completes = (
                    link.status is ProcessStatus.ACTIVE
                    and msg.status is ProcessStatus.COMPLETED
                    and self.state.stage is MigrationStage.VALIDATION
                )
                link.status = msg.status
                if msg.escalation_migration:
                    self.escalation = msg.escalation_migration
                if completes:
                    self.state.manifest = msg.manifest or self.state.manifest
                    self.state.moved_at = msg.fixed_at or self.state.moved_at

    async def _monitoring(self) -> None:
        """M-4.6: workflow reliability, permission usage and API error rates, checked weekly
        through the fallback period — durable timers, not a cron poll (M-6.2). The fallback
        period is months long: the run continues as a new one when the server suggests it, the
        checks so far carried in the state. Unhealthy (or silent) at the fallback's end, TSC or
        CGB decides within the review deadline — extend it, or remediate (the default, P-3)."""
        if self.state.stage is not MigrationStage.MONITORING:  # a continued run is in it already
            await self._enter(MigrationStage.MONITORING)
        interval = self.policy.monitoring.check_interval
        checks = self.state.monitoring
        decides = workflow.patched(FALLBACK_DECISION_PATCH)
        while True:
            until = self.state.fallback.until
            assert until is not None

            def going(_: datetime, until: datetime = until) -> bool:
                """Through the fallback period, and on until a check is healthy (M-4.7) — or,
                where a decision is taken, until a check at the end has found it unhealthy."""
                ended = workflow.now() >= until and bool(checks)
                if ended and checks[-1].healthy:
                    return False
                return not (decides and ended and checks[-1].at >= until)

            def pause(until: datetime = until) -> timedelta:
                now = workflow.now()
                return min(interval, until - now) if now < until else interval

            await monitor(
                self.ledger,
                checks,
                since=checks[-1].at if checks else workflow.now(),
                going=going,
                pause=pause,
                resume=lambda: self.inp.model_copy(update={"resume": self.state}),
                policy=self.policy,
                rules=["M-4.6"],
                moved_off=sorted({k for r in self.state.validation.values() for k in r.moved_off}),
                moves_to=self._moves_to(),
            )
            if checks[-1].healthy:
                return
            await self._decide_on_the_fallback()

    async def _completion(self) -> None:
        """M-4.7: fallback removed, migration complete, the partner's lifecycle record updated."""
        assert self.state.fallback.until is not None
        latest = self.state.monitoring[-1]
        decision = completion_allowed(
            now=workflow.now(),
            fallback_until=self.state.fallback.until,
            health=Decision(findings=tuple(latest.findings)),
        )
        assert decision.allowed, decision
        await self._enter(MigrationStage.COMPLETION)
        self.state.fallback = Fallback(active=False, until=self.state.fallback.until)
        # A tier moved at the rollout (M-4.5) is not moved again: it may have moved since.
        target = {
            k: v
            for k, v in self.inp.target.items()
            if not (k == "tier" and self.state.tier_change is not None)
        }
        manifest = self._validated_manifest()
        enforced = self.state.decision if manifest is None else None
        await call(
            MigrationActivities.apply_lifecycle,
            LifecycleInput(
                event=self.ledger.now_event(
                    "lifecycle",
                    "lifecycle_updated",
                    rules=["M-4.7"],
                    data={"target": target},
                ),
                partner_id=self.inp.partner_id,
                target=target,
                manifest=manifest,
                validated_at=max((r.at for r in self.state.validation.values()), default=None),
                enforced_at=enforced.at if enforced is not None else None,
            ),
            summary="update partner lifecycle",
        )
        await self.steps.close(ProcessStatus.COMPLETED, "completed", rules=["M-4.7", "M-6.2"])

    def _moves_to(self) -> dict[str, str]:
        """The versions the target moves the partner to, when no validated manifest says what
        it ships — a forced target applied before validation passed (M-2.3), or a run
        validated before manifests: monitoring watches what the registered manifest leaves."""
        if self._validated_manifest() is not None:
            return {}
        return {k: v for k, v in self.inp.target.items() if k in MANIFEST_TARGET_KEYS}

    def _validated_manifest(self) -> Manifest | None:
        """M-4.7: the manifest the last validation passed — none when a forced target applied
        before it passed (M-2.3): the shipped one was never validated, so the registered one
        moves to the target instead."""
        results = {name: r.passed for name, r in self.state.validation.items()}
        return self.state.manifest if validation_passed(results) else None

    # --- partner steps (Updates) -----------------------------------------------------------

    @workflow.update(name="plan")
    async def plan(self, act: Act[MigrationPlan]) -> MigrationStatus:
        async with self.steps.taking():
            await self.steps.take("plan", act, rules=["M-4.2"])
        return self.state

    @plan.validator
    def _check_plan(self, act: Act[MigrationPlan]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "plan")

    @workflow.update(name="implementation")
    async def implementation(self, act: Act[MigrationImplementation]) -> MigrationStatus:
        """M-4.3 with the manifest the partner ships, which validation inspects (M-8.1)."""
        async with self.steps.taking():
            if self.state.implementation is None:  # a second copy is refused by `take`
                self.state.manifest = act.body.manifest
                self.state.moved_at = workflow.now()
            await self.steps.take("implementation", act, rules=["M-4.3", "M-8.1"])
        return self.state

    @implementation.validator
    def _check_implementation(self, act: Act[MigrationImplementation]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "implementation")
        if act.body.manifest is None:
            refuse(
                Refusal.INVALID,
                "a migration's implementation carries the manifest the partner ships",
                rule="M-8.1",
                errors={"manifest": "required (M-8.1)"},
            )
        refuse_decision(act.body.references())  # E-2.6 (a validator: never run on replay)

    @workflow.update(name="documentation")
    async def documentation(self, act: Act[MigrationDocumentation]) -> MigrationStatus:
        async with self.steps.taking():
            await self.steps.take("documentation", act, rules=["M-7.1"])
        return self.state

    @documentation.validator
    def _check_documentation(self, act: Act[MigrationDocumentation]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "documentation")
        refuse_decision(act.body.references())  # M-7.1 (a validator: never run on replay)

    @workflow.update(name="rollout")
    async def rollout(self, act: Act[Rollout]) -> MigrationStatus:
        async with self.steps.taking():
            self.state.rollout = StepRecord(body=act.body, actor=act.actor.name, at=workflow.now())
            if workflow.patched(ROLLOUT_PATCH):
                await self._roll_out(act)
            else:
                await legacy.rollout_to_the_matrix(self.ledger, act, self.state.fallback.active)
        return self.state

    async def _roll_out(self, act: Act[Rollout]) -> None:
        """M-4.5: the rollout takes effect with its record — the partner's declared
        compatibility (E-9.2) and a tier migration's tier, judged against the tier now (E-7.1,
        E-7.2); the fallback stays until completion."""
        tier = self.inp.target.get("tier") if self.inp.type_ is MigrationType.TIER else None
        event = self.ledger.now_event(
            "rollout",
            "rolled_out",
            actor=act.actor.name,
            rules=["M-4.5", "M-5.2", "E-9.2"] + (["E-7.1", "E-7.2"] if tier else []),
            data={"version": act.body.version, "fallback_active": self.state.fallback.active},
        )
        self.state.tier_change = await call(
            MigrationActivities.roll_out,
            RolloutInput(
                event=event,
                partner_id=self.inp.partner_id,
                release=act.body.version,
                declared=list(act.body.compatibility),
                tier=tier,
                trigger=self.inp.trigger,
                subtype=self.inp.subtype,
                origin=self.inp.origin,
                with_tier=self.inp.with_tier,
                type_=self.inp.type_,
            ),
            summary="roll out" + (f": tier {tier}" if tier else ""),
        )

    @rollout.validator
    def _check_rollout(self, act: Act[Rollout]) -> None:
        self.steps.require_partner_step(act, self.inp.partner_id, "rollout")

    @workflow.update(name="fallback_decision")
    async def fallback_decision(self, act: Act[FallbackDecision]) -> MigrationStatus:
        async with self.steps.taking():
            record: StepRecord[FallbackDecision] = StepRecord(
                body=act.body, actor=act.actor.name, at=workflow.now()
            )
            self.state.fallback_decisions.append(record)
            await self.ledger.emit(
                f"fallback_decided:{len(self.state.fallback_decisions)}",
                "fallback_decided",
                actor=act.actor.name,
                rules=["M-4.7", "P-3"],
                data={
                    "decision": act.body.decision,
                    "months": act.body.months,
                    "rationale": act.body.rationale,
                },
            )
        return self.state

    @fallback_decision.validator
    def _check_fallback_decision(self, act: Act[FallbackDecision]) -> None:
        require_role(act.actor, Role.TSC, Role.CGB)
        self.steps.require_step(f"fallback_decision:{len(self.state.fallback_decisions) + 1}")
        if act.body.decision == "extend":
            assert self.state.fallback.until is not None
            refuse_decision(
                check_fallback_extension(
                    self.state.started_at, self.state.fallback.until, act.body.months, self.policy
                ),
                "the fallback cannot be extended so far",
            )

    @workflow.update(name="decline")
    async def decline(self, act: Act[Withdrawal]) -> MigrationStatus:
        async with self.steps.taking():
            self.state.declined = StepRecord(body=act.body, actor=act.actor.name, at=workflow.now())
            self.state.fallback = Fallback(active=False, until=self.state.fallback.until)
            await self.steps.close(
                ProcessStatus.DECLINED,
                "declined",
                actor=act.actor.name,
                rules=["M-2.2"],
                data={"reason": act.body.reason},
                end_run=False,
            )
        return self.state

    @decline.validator
    def _check_decline(self, act: Act[Withdrawal]) -> None:
        require_partner(act.actor, self.inp.partner_id)
        self.steps.require_active()
        refuse_decision(may_decline(self.inp.trigger), "this migration cannot be declined")
        if self.state.stage not in BEFORE_ROLLOUT:
            refuse(Refusal.WRONG_STAGE, "a migration can be declined only before validation")

    @workflow.update(name=OPENED_UPDATE)
    async def opened(self) -> None:
        """A start's Update (P-8): returns once the first step is open, or the process closed."""
        await self.steps.first_step()

    @workflow.query(name="status")
    def status(self) -> MigrationStatus:
        return self.state

    # --- helpers ---------------------------------------------------------------------------

    async def _enter(self, stage: MigrationStage) -> None:
        self.steps.ensure_active()
        self._move_to(stage)
        await self.ledger.write(self._stage_changed(stage))

    def _move_to(self, stage: MigrationStage) -> None:
        """The run at `stage`, awaiting nobody yet; ops see it."""
        self.state.stage = stage
        self.steps.clear()
        self.steps.show()

    def _stage_changed(self, stage: MigrationStage) -> RecordEvent:
        """The move to `stage`, as the run records it (awaiting nobody yet)."""
        return self.ledger.event(
            f"stage:{stage.value}",
            event="stage_changed",
            actor="system",
            stage=stage,
            status=self.state.status,
            awaiting=[],
            rules=["M-4.1"],
        )

    async def _partner_step(
        self,
        step: str,
        action: str,
        rule: str,
        done: Callable[[], bool],
        *,
        opened: tuple[datetime, Callable[[], Awaitable[None]]] | None = None,
    ) -> None:
        """A partner step, due by the end of the migration window (M-2.x); missed → expired.
        `opened`: its window is on record already — when it opened, and what stands for its
        record."""
        assert self.state.window_end is not None
        done_in_time = await self.steps.wait(
            Step(
                name=step,
                window=self.policy.partner_step,
                actors=lambda: [Awaiting(actor=self.partner, action=action)],
                done=done,
                rules=("P-3", rule),
                due=self.state.window_end,
                opened=opened[0] if opened else None,
                opening=opened[1] if opened else None,
            )
        )
        if not done_in_time:
            if self._enforces():
                await self._enforce(step)
                raise Enforced
            await self.steps.close(ProcessStatus.EXPIRED, "expired", rules=["P-3", rule])
