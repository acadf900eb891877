"""A reproduction: a worker start unpauses the stewardship schedule (README, Known issues).

Every `kwanus worker` applies the yearly stewardship schedule at start-up (app/schedules.py:
create, or update an existing one with the whole of `stewardship_schedule()`). The update
carries the schedule's state too — not paused, no note — so a schedule ops paused is running
again after the next start of any worker (a deploy, a crash restart, a second replica).

On a real dev server: apply (a worker's first start), pause with a note (ops), apply again (a
worker restarts), and print the schedule's state after each.

    python -m bench.findings.schedule_unpaused
"""

from __future__ import annotations

import asyncio

from temporalio.testing import WorkflowEnvironment

from app import binaries, schedules
from kwanus import contract

TASK_QUEUE = "kwanus-governance"


async def main() -> bool:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(binaries.temporal_cli()),
        dev_server_extra_args=contract.search_attribute_flags(),
    )
    try:
        client = env.client
        handle = client.get_schedule_handle(schedules.SCHEDULE_ID)

        async def state(what: str) -> bool:
            s = (await handle.describe()).schedule.state
            print(f"{what:<38} paused={s.paused!s:<5} note={s.note!r}")
            return s.paused

        print(f"a worker starts: {await schedules.apply(client, TASK_QUEUE)}")
        await state("the schedule")
        await handle.pause(note="ops: no stewardship review this year")
        await state("ops paused it")
        print(f"a worker (re)starts: {await schedules.apply(client, TASK_QUEUE)}")
        still_paused = await state("after the worker's start")
    finally:
        await env.shutdown()
    print("still paused" if still_paused else "UNPAUSED by a worker start (the bug)")
    return still_paused


if __name__ == "__main__":
    asyncio.run(main())
