"""The bare-Temporal side of the benchmark: three trivial workflows and a bare worker that runs
them on its own task queue, against the same dev server as the product, in the same run.

- `BenchTrivial` returns its argument: the floor of "start a workflow and have a worker run its
  first task" (the fan-out baseline).
- `BenchParked` sleeps on one durable timer: the floor of "a process parked for a year" (the
  parked-processes baseline: worker memory, server database, restart).
- `BenchSteps` takes any number of `step` Updates, each accepted at once (no stage to wait for),
  answers a `status` query with the steps taken, and ends on a `close` signal: the floor of
  "submit, then take the first step" and "take a step, then read it" (issue 19, read-your-writes).

Run as its own process (`python -m bench.baseline --address … --task-queue …`), so its memory and
CPU are measured apart from the bench driver, like the product worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

# The bench waits for this line in the worker's log (as for the product worker).
READY = "baseline worker polling"


@workflow.defn(name="BenchTrivial")
class Trivial:
    @workflow.run
    async def run(self, n: int) -> int:
        return n


@workflow.defn(name="BenchParked")
class Parked:
    @workflow.run
    async def run(self, days: int) -> None:
        await workflow.sleep(timedelta(days=days))


@workflow.defn(name="BenchSteps")
class Steps:
    def __init__(self) -> None:
        self.steps: list[str] = []
        self.closed = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.closed)
        return self.steps

    @workflow.update
    def step(self, name: str) -> list[str]:
        self.steps.append(name)
        return list(self.steps)

    @workflow.query
    def status(self) -> list[str]:
        return list(self.steps)

    @workflow.signal
    def close(self) -> None:
        self.closed = True


async def serve(address: str, namespace: str, task_queue: str, max_cached: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await Client.connect(address, namespace=namespace)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[Trivial, Parked, Steps],
        max_cached_workflows=max_cached,
    )
    async with worker:
        logging.info("%s %s", READY, task_queue)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", default="bench-baseline")
    parser.add_argument("--max-cached", type=int, default=10_000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s baseline %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.address, args.namespace, args.task_queue, args.max_cached))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # a process that used a Temporal client may crash in finalization


if __name__ == "__main__":
    main()
