"""The annual stewardship Schedule (E-13.1, M-10.1), applied idempotently: at worker start-up and
by `kwanus schedules apply`. Applying twice leaves one schedule, updated to the current spec and
action — its state (paused by ops, with a note) kept."""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from kwanus import contract
from kwanus.models.stewardship import StewardshipInput

log = logging.getLogger(__name__)

SCHEDULE_ID = "kwanus-stewardship"
# Every 1 January, 06:00 UTC. The run's workflow id is `stewardship-<scheduled time>`.
YEARLY = "0 6 1 1 *"


def stewardship_schedule(task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            contract.STEWARDSHIP.name,
            StewardshipInput(),  # the policy in force is read when the run starts (P-5)
            id="stewardship",
            task_queue=task_queue,
            typed_search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(contract.PROCESS, contract.STEWARDSHIP.kind.value),
                    SearchAttributePair(contract.STAGE, contract.STEWARDSHIP.first_stage),
                ]
            ),
        ),
        spec=ScheduleSpec(cron_expressions=[YEARLY]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def apply(client: Client, task_queue: str) -> str:
    """Create the schedule, or bring an existing one up to date. Returns what it did."""
    schedule = stewardship_schedule(task_queue)
    try:
        await client.create_schedule(SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:

        def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
            # The spec and action as the code says; the state as ops left it (paused, its note):
            # a worker's start-up must not undo an operator's pause.
            schedule.state = current.description.schedule.state
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SCHEDULE_ID).update(update)
        log.info("schedule %s updated", SCHEDULE_ID)
        return "updated"
    log.info("schedule %s created", SCHEDULE_ID)
    return "created"
