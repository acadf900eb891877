"""DeprecationNotice: one TSC notice fanned out to a required migration for every affected
partner (M-2.1), page by page from an activity with bounded concurrency.

The run is short — the migrations it starts are linked, not children, and live on their own
12-month timers. The notice's workflow id is its idempotency key (P-1), and each migration's
id is `<notice>.<partner>`, so neither a replayed notice nor a retried page doubles anything.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from activities.processes import ProcessStarter
    from kwanus.contract import DEPRECATION, DEPRECATION_WORKFLOW, OPENED_UPDATE
    from kwanus.models.deprecation import (
        DeprecationBatch,
        DeprecationInput,
        DeprecationProgress,
        DeprecationStatus,
        NoticedInput,
    )
    from policy.vocabulary import ProcessKind, ProcessStatus
    from workflows.common import ACTIVITY_RETRY, Ledger, call

STAGE = DEPRECATION.first_stage
# Notices recorded before a notice marked its version deprecated in the matrix replay without.
MATRIX_PATCH = "notice-deprecates-its-version"
# Fan-outs before every read came from the store (P-8) kept their progress in the run alone.
PROGRESS_PATCH = "fan-out-progress-on-record"
BATCH_TIMEOUT = timedelta(minutes=10)
BATCH_HEARTBEAT = timedelta(seconds=60)


@workflow.defn(name=DEPRECATION_WORKFLOW)
class DeprecationFanOut:
    @workflow.init
    def __init__(self, inp: DeprecationInput) -> None:
        self.inp = inp
        self.ledger = Ledger(
            process=ProcessKind.DEPRECATION,
            process_id=inp.notice_id,
            partner_id="",
            policy_version=inp.policy.version,
            snapshot=lambda: self.state.model_dump(mode="json"),
            view=lambda: (self.state.stage, self.state.status, []),
        )
        self.noticed = inp.progress is not None  # a continued run: its notice is on record
        self.state = DeprecationStatus(
            id=inp.notice_id,
            workflow_id=workflow.info().workflow_id,
            notice=inp.notice,
            stage=STAGE,
            status=ProcessStatus.ACTIVE,
            progress=inp.progress or DeprecationProgress(),
            migration_id_prefix=f"{inp.notice_id}.",
            policy_version=inp.policy.version,
            started_at=workflow.info().start_time,
        )

    @workflow.run
    async def run(self, inp: DeprecationInput) -> DeprecationStatus:
        progress = self.state.progress
        if inp.progress is None:  # the first run, not a continuation
            self.ledger.show(stage=STAGE, status=self.state.status, awaiting=[])
            await self._noticed(inp)
            self.noticed = True
        after = inp.after
        while True:
            result = await workflow.execute_activity_method(
                ProcessStarter.start_deprecation_batch,
                DeprecationBatch(
                    notice_id=inp.notice_id,
                    notice=inp.notice,
                    policy=inp.policy,
                    requested_by=inp.requested_by,
                    origin=self.state.workflow_id,
                    after=after,
                    limit=inp.batch_size,
                ),
                start_to_close_timeout=BATCH_TIMEOUT,
                heartbeat_timeout=BATCH_HEARTBEAT,
                retry_policy=ACTIVITY_RETRY,  # the ids make a retried page start nothing twice
                summary=f"migrations for partners after {after or 'the first'}",
            )
            progress.scanned += result.scanned
            progress.affected += result.affected
            progress.started += result.started
            progress.batches += 1
            if result.last is None:
                break
            if workflow.patched(PROGRESS_PATCH):  # how far it has gone, readable meanwhile
                await self.ledger.emit(
                    f"page:{progress.batches}",
                    "deprecation_page",
                    rules=["M-2.1"],
                    data=result.model_dump(),
                )
            after = result.last
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(
                    inp.model_copy(update={"after": after, "progress": progress})
                )
        self.state.status = ProcessStatus.COMPLETED
        self.state.closed_at = workflow.now()
        await self.ledger.emit(
            "finished:completed",
            "deprecation_fanned_out",
            rules=["M-2.1"],
            data=progress.model_dump(),
        )
        return self.state

    async def _noticed(self, inp: DeprecationInput) -> None:
        """M-2.1: the notice on record; M-5.1: with it, the platform's matrix marks the version
        deprecated (platform rows change only by TSC and platform processes, E-9.2)."""
        rules = ["M-2.1", "M-4.1"]
        data = inp.notice.model_dump(mode="json", exclude_none=True)
        if not workflow.patched(MATRIX_PATCH):
            await self.ledger.emit(
                "noticed", "deprecation_noticed", actor=inp.requested_by, rules=rules, data=data
            )
            return
        event = self.ledger.now_event(
            "noticed",
            "deprecation_noticed",
            actor=inp.requested_by,
            rules=[*rules, "M-5.1"],
            data=data,
        )
        await call(
            GovernanceActivities.record_deprecation,
            NoticedInput(event=event, notice=inp.notice),
            summary="record the notice; mark its version deprecated",
        )

    @workflow.update(name=OPENED_UPDATE)
    async def opened(self) -> None:
        """A start's Update (P-8): returns once the notice is on record (the fan-out goes on)."""
        await workflow.wait_condition(lambda: self.noticed)

    @workflow.query(name="status")
    def status(self) -> DeprecationStatus:
        return self.state
