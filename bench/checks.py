"""What must hold after any crash: every governance write a run scheduled is in the audit log
exactly once, no event is in it twice under two keys, and no workflow task failed on
non-determinism — in the live histories and when they are replayed against today's code.
Shared by the crash tests and the soak."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import worker
from kwanus.notice import notice_keys
from store.db import Database
from store.tables import AuditEvent, NotificationRow

NDE = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
BUG = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE


async def histories(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """Every run of a workflow id (a continued-as-new process has several), oldest first."""
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    runs.sort(key=lambda wf: wf.start_time)
    out = []
    for wf in runs:
        handle = client.get_workflow_handle(workflow_id, run_id=wf.run_id)
        out.append(await handle.fetch_history())
    return out


def _is_event(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("key"), str)
        and isinstance(value.get("event"), str)
        and "workflow_id" in value
    )


def _audit_keys(arg: Any) -> list[str]:
    """The audit keys of a governance write's input: a RecordEvent, one under `event`, or the
    migration notice's two (`notice` and `plan`, written in one transaction)."""
    if not isinstance(arg, dict):
        return []
    if _is_event(arg):
        return [str(arg["key"])]
    return [str(arg[f]["key"]) for f in ("event", "notice", "plan") if _is_event(arg.get(f))]


def _noticed_by_fanout(history: WorkflowHistory) -> list[str]:
    """A migration a deprecation's page started with its notice on record (`noticed` in its
    input, kwanus.notice): the page wrote its first three rows before the start, which stands
    for their scheduling."""
    if not history.events:
        return []
    first = history.events[0]
    if first.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return []
    for payload in first.workflow_execution_started_event_attributes.input.payloads:
        try:
            arg = json.loads(payload.data)
        except ValueError:
            continue
        if isinstance(arg, dict) and arg.get("noticed") and not arg.get("resume"):
            return notice_keys(history.workflow_id)
    return []


def _scheduled(history: WorkflowHistory) -> dict[int, list[str]]:
    """Scheduled event id → the audit keys of the governance write it scheduled (the start's
    id for a fanned-out migration's notice records, written before it)."""
    out: dict[int, list[str]] = {}
    noticed = _noticed_by_fanout(history)
    if noticed:
        out[history.events[0].event_id] = noticed
    for ev in history.events:
        if ev.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        for payload in ev.activity_task_scheduled_event_attributes.input.payloads:
            try:
                keys = _audit_keys(json.loads(payload.data))
            except ValueError:
                continue
            if keys:
                out.setdefault(ev.event_id, []).extend(keys)
    return out


def scheduled_writes(history: WorkflowHistory) -> list[str]:
    """The audit keys of every governance write the run scheduled (once per scheduled
    activity; its retries are attempts of the same scheduled event)."""
    return [k for keys in _scheduled(history).values() for k in keys]


CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def due_writes(history: WorkflowHistory) -> list[str]:
    """The audit keys that must be in the log once this history was read: every write the run
    scheduled if it had closed; while it runs, those whose activity had completed (its row
    commits before the completion is recorded) — one in flight may not have written yet."""
    scheduled = _scheduled(history)
    if history.events and history.events[-1].event_type in CLOSED:
        return [k for keys in scheduled.values() for k in keys]
    done = {
        ev.activity_task_completed_event_attributes.scheduled_event_id
        for ev in history.events
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
    }
    if history.events:  # a fanned-out migration's notice records: on record before its start
        done.add(history.events[0].event_id)
    return [k for event_id, keys in scheduled.items() if event_id in done for k in keys]


@dataclass
class TaskFailures:
    nondeterminism: list[str] = field(default_factory=list)
    bugs: list[str] = field(default_factory=list)
    other: Counter[str] = field(default_factory=Counter)  # server-side causes, benign


def task_failures(workflow_id: str, history: WorkflowHistory) -> TaskFailures:
    out = TaskFailures()
    for ev in history.events:
        if ev.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            continue
        attrs = ev.workflow_task_failed_event_attributes
        message = attrs.failure.message
        where = f"{workflow_id} event {ev.event_id}: {message[:200]}"
        if attrs.cause == NDE or "nondetermin" in message.lower():
            out.nondeterminism.append(where)
        elif attrs.cause == BUG:
            out.bugs.append(where)
        else:
            out.other[WorkflowTaskFailedCause.Name(attrs.cause)] += 1
    return out


async def replay_failures(all_histories: Iterable[WorkflowHistory]) -> dict[str, str]:
    """Replay every history against the product's workflows (worker.WORKFLOWS): run id →
    failure. A history that replays is today's code taking the same decisions it took live."""
    replayer = Replayer(
        workflows=worker.WORKFLOWS,
        data_converter=pydantic_data_converter,
        workflow_runner=worker.WORKFLOW_RUNNER,
    )
    failures: dict[str, str] = {}
    for history in all_histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        if result.replay_failure is not None:
            failures[f"{history.workflow_id}"] = str(result.replay_failure)[:300]
    return failures


@dataclass
class AuditCheck:
    rows: int = 0
    duplicate_keys: list[str] = field(default_factory=list)  # a key twice (the unique index)
    duplicate_events: list[str] = field(default_factory=list)  # one event under two keys
    missing: list[str] = field(default_factory=list)  # scheduled, never written
    unexpected: list[str] = field(default_factory=list)  # written, never scheduled
    unexpected_in: dict[str, list[str]] = field(default_factory=dict)  # the same, by workflow
    scheduled_twice: list[str] = field(default_factory=list)  # a key a run scheduled twice
    duplicate_notifications: list[str] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return (
            len(self.duplicate_keys)
            + len(self.duplicate_events)
            + len(self.scheduled_twice)
            + len(self.duplicate_notifications)
        )

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected)


def check_audit(
    db: Database,
    scheduled: Mapping[str, Sequence[str]],
    *,
    notifications: bool = True,
    due: Mapping[str, Sequence[str]] | None = None,
) -> AuditCheck:
    """The audit log against what the runs scheduled (workflow id → audit keys, from their
    histories): every key exactly once, and no two rows of one workflow alike but for the key
    (same event, actor, stage, time and data: one effect written twice). With `due`
    (`due_writes`), a key is missing only if it is due; every scheduled one is expected."""
    ids = list(scheduled)
    out = AuditCheck()
    with db.session() as session:
        rows = session.exec(select(AuditEvent).where(col(AuditEvent.workflow_id).in_(ids))).all()
        twice = session.exec(
            select(AuditEvent.key).group_by(col(AuditEvent.key)).having(func.count() > 1)
        ).all()
        if notifications:
            notes = session.exec(
                select(NotificationRow.key)
                .group_by(col(NotificationRow.key))
                .having(func.count() > 1)
            ).all()
            out.duplicate_notifications = [str(k) for k in notes]
    out.rows = len(rows)
    out.duplicate_keys = [str(k) for k in twice]
    alike = Counter(
        (
            r.workflow_id,
            r.event,
            r.actor,
            r.stage,
            r.at.isoformat(),
            json.dumps(r.data, sort_keys=True),
        )
        for r in rows
    )
    out.duplicate_events = [f"{k[0]} {k[1]} at {k[4]}" for k, n in alike.items() if n > 1]
    written = Counter(r.key for r in rows)
    for workflow_id, keys in scheduled.items():
        counts = Counter(keys)
        out.scheduled_twice += [k for k, n in counts.items() if n > 1]
        must = counts if due is None else Counter(due.get(workflow_id, ()))
        out.missing += [k for k in must if written[k] == 0]
        unexpected = [r.key for r in rows if r.workflow_id == workflow_id and r.key not in counts]
        out.unexpected += unexpected
        if unexpected:
            out.unexpected_in[workflow_id] = unexpected
    return out


async def written_since(client: Client, audit: AuditCheck) -> list[str]:
    """Of the rows `check_audit` found unscheduled, those a run still open scheduled after its
    history was read (a migration in monitoring records a check every interval): its history,
    read again now — after the audit was — schedules every row the audit held. They are taken
    out of `audit.unexpected` and returned; what is left was never scheduled."""
    later: list[str] = []
    for workflow_id, keys in audit.unexpected_in.items():
        now = {k for h in await histories(client, workflow_id) for k in scheduled_writes(h)}
        later += [k for k in keys if k in now]
        audit.unexpected_in[workflow_id] = [k for k in keys if k not in now]
    gone = set(later)
    audit.unexpected = [k for k in audit.unexpected if k not in gone]
    return later
