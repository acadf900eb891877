"""A migration's notice (M-4.1) as the records it leaves — `notice`, the move to Plan, the plan
window's opening — computed from its input alone, so that a deprecation's fan-out records a
page's notices in one transaction and starts each migration with its notice done, and the
migration's first workflow task rebuilds the very same state without an activity
(bench/RESULTS.md, fan-out). The rows are those a migration started on its own records, field
for field (tests/test_fanout_notice.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kwanus.models.common import Awaiting, RecordEvent
from kwanus.models.migration import Fallback, MigrationInput, MigrationStatus
from policy.migration import (
    NOTICE_ACTIONS,
    fallback_until,
    migration_window,
    trigger_class,
)
from policy.vocabulary import MigrationStage, ProcessKind, ProcessStatus

NOTICE_RULES = ["M-4.1", "M-6.1", "M-6.2", "M-6.3"]
PLAN_STEP = "plan"
PLAN_ACTION = "submit the migration plan"
PLAN_RULES = ("P-3", "M-4.2")


# The steps (audit keys `<workflow id>:<step>`) of the three records, in order.
STEPS = ("notice", f"stage:{MigrationStage.PLAN.value}", f"window:{PLAN_STEP}")


def notice_keys(workflow_id: str) -> list[str]:
    """The audit keys of a migration's notice records (what a fan-out page writes for it)."""
    return [f"{workflow_id}:{step}" for step in STEPS]


@dataclass(frozen=True)
class NoticeRecords:
    """The run at its plan window's opening, and the three events that put it there."""

    state: MigrationStatus
    events: list[RecordEvent]


def started_state(inp: MigrationInput, workflow_id: str, at: datetime) -> MigrationStatus:
    """The run as it starts at `at`: at Notice, nothing done yet."""
    return MigrationStatus(
        id=inp.migration_id,
        workflow_id=workflow_id,
        partner_id=inp.partner_id,
        trigger=inp.trigger,
        trigger_class=trigger_class(inp.trigger),
        type_=inp.type_,
        subtype=inp.subtype,
        target=inp.target,
        stage=MigrationStage.NOTICE,
        status=ProcessStatus.ACTIVE,
        origin=inp.origin,
        policy_version=inp.policy.version,
        started_at=at,
    )


def noticed_state(
    inp: MigrationInput, workflow_id: str, at: datetime, permissions: list[str]
) -> MigrationStatus:
    """The run at its notice: window defined, fallback active with `permissions` (M-6.1)."""
    fallback = Fallback(
        active=True, until=fallback_until(at, inp.fallback_months), permissions=permissions
    )
    return started_state(inp, workflow_id, at).model_copy(
        update={"window_end": at + migration_window(inp.trigger, inp.policy), "fallback": fallback}
    )


def notice_data(
    state: MigrationStatus, fallback: Fallback, origin: str | None
) -> dict[str, object]:
    """The `notice` event's record of M-4.1's three actions: notified, the window defined (its
    end), the fallback active (until, with its read-only permissions)."""
    assert state.window_end is not None
    return {
        "actions": list(NOTICE_ACTIONS),
        "trigger_class": state.trigger_class.value,
        "window_end": state.window_end.isoformat(),
        "fallback_until": fallback.until.isoformat() if fallback.until else None,
        "fallback_permissions": fallback.permissions,
        "origin": origin,
    }


def notice_records(
    inp: MigrationInput, workflow_id: str, at: datetime, permissions: list[str]
) -> NoticeRecords:
    """`notice`, `stage:Plan` and `window:plan` of the migration `workflow_id`, noticed at
    `at` with a read-only fallback of `permissions` — as its run numbers them (1, 2, 3)."""
    noticed = noticed_state(inp, workflow_id, at, permissions)
    assert noticed.window_end is not None
    planned = noticed.model_copy(update={"stage": MigrationStage.PLAN, "step": None})
    awaited = [
        Awaiting(actor=f"partner:{inp.partner_id}", action=PLAN_ACTION, deadline=noticed.window_end)
    ]
    opened = planned.model_copy(update={"awaiting": awaited, "step": PLAN_STEP})

    def event(
        seq: int, step: str, name: str, state: MigrationStatus, **fields: object
    ) -> RecordEvent:
        return RecordEvent.model_validate(
            {
                "key": f"{workflow_id}:{step}",
                "workflow_id": workflow_id,
                "process": ProcessKind.MIGRATION,
                "process_id": inp.migration_id,
                "partner_id": inp.partner_id,
                "event": name,
                "actor": "system",
                "at": at,
                "stage": state.stage,
                "status": state.status,
                "awaiting": [],
                "rules": [],
                "data": {},
                "policy_version": inp.policy.version,
                "state": state.model_dump(mode="json"),
                "seq": seq,
                **fields,
            }
        )

    fallback = noticed.fallback
    return NoticeRecords(
        state=opened,
        events=[
            event(
                1,
                STEPS[0],
                "notice",
                noticed,
                actor=inp.requested_by,
                rules=NOTICE_RULES,
                data=notice_data(noticed, fallback, inp.origin),
            ),
            event(2, STEPS[1], "stage_changed", planned, rules=["M-4.1"]),
            event(
                3,
                STEPS[2],
                "window_opened",
                opened,
                awaiting=awaited,
                next_deadline=noticed.window_end,
                rules=list(PLAN_RULES),
                data={"step": PLAN_STEP, "deadline": noticed.window_end.isoformat()},
            ),
        ],
    )
