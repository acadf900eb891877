"""Checks on a run's recorded history."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory

E = EventType
# What a workflow task's commands leave in the history right after its completion.
COMMAND_EVENTS = {
    E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
    E.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
    E.EVENT_TYPE_TIMER_STARTED,
    E.EVENT_TYPE_TIMER_CANCELED,
    E.EVENT_TYPE_MARKER_RECORDED,
    E.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES,
    E.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED,
    E.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED,
    E.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    E.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


def openings_taken(events: list[HistoryEvent], *records: str) -> list[tuple[int, int]]:
    """Per completion of a step's opening record (an activity whose input names one of
    `records`, e.g. ":window:"): its index in `events` and that of the workflow task that took
    it (the run's completed task after it). Completions no task has taken yet are left out."""
    opening = {
        e.event_id
        for e in events
        if e.event_type == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and any(
            r.encode() in p.data
            for r in records
            for p in e.activity_task_scheduled_event_attributes.input.payloads
        )
    }
    taken: list[tuple[int, int]] = []
    for i, e in enumerate(events):
        if (
            e.event_type != E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            or e.activity_task_completed_event_attributes.scheduled_event_id not in opening
        ):
            continue
        task = next(
            (
                j
                for j in range(i + 1, len(events))
                if events[j].event_type == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
            ),
            None,
        )
        if task is not None:
            taken.append((i, task))
    return taken


def commands_on_step_opening(history: WorkflowHistory, *records: str) -> list[str]:
    """The commands a run made on taking the completion of a step's opening record (an
    activity whose input names one of `records`, e.g. ":window:"), before any Update that
    task accepted. There must be none: an Update for the step can reach the worker in the same
    workflow task as that completion and be applied after it live, before it on replay (README,
    Known issues); only a completion that makes no command replays the same in both orders.
    Left out: the answers of Updates held until the step opened (a start's `opened`, the
    previous step's at-rest answer, P-8) — the one exposure left, reachable only through an
    operator's query now that the API asks no workflow (README, Known issues)."""
    events = list(history.events)
    taken = openings_taken(events, *records)
    assert taken, f"no record named {records} taken in the history"
    found: list[str] = []
    for done, task in taken:
        for c in events[task + 1 :]:
            if c.event_type == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                continue
            if c.event_type not in COMMAND_EVENTS:  # an accepted Update, or the next task
                break
            if c.event_type == E.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
                continue  # an answer held for the opening (P-8)
            found.append(
                f"{E.Name(c.event_type)} (event {c.event_id}, record {events[done].event_id})"
            )
    return found
