"""One way to reach Temporal: the pydantic data converter on every client (DESIGN.md)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    Plugin,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import Runtime
from temporalio.service import RPCError, RPCStatusCode

from kwanus.contract import OPENED_UPDATE, PARTNER_ID, PROCESS, STAGE, ProcessType
from kwanus.settings import Settings

log = logging.getLogger(__name__)


# A TCP connect to a host that does not answer fails after this, not the OS's minutes.
CONNECT_TIMEOUT = timedelta(seconds=5)
MAX_BACKOFF = 10.0


async def connect(
    settings: Settings,
    *,
    wait: float | None = 60.0,
    runtime: Runtime | None = None,
    plugins: Sequence[Plugin] = (),
) -> Client:
    """Connect, retrying with capped exponential backoff (0.2 s doubling up to 10 s) for up to
    `wait` seconds — or for as long as it takes with `wait=None` (the worker) — so a process
    started before the Temporal server comes up waits for it instead of crashing. Every failed
    attempt is logged; cancelling the caller (a signal) stops the wait. `runtime` and
    `plugins` carry metrics and traces (kwanus.telemetry)."""
    delay = 0.2
    loop = asyncio.get_running_loop()
    give_up = None if wait is None else loop.time() + wait
    attempt = 1
    while True:
        try:
            client = await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
                connect_timeout=CONNECT_TIMEOUT,
                runtime=runtime,
                plugins=plugins,
            )
        except RuntimeError as exc:  # the core bridge reports connection failures this way
            if give_up is not None and loop.time() + delay > give_up:
                raise
            log.warning(
                "Temporal at %s not reachable (attempt %d: %s); retrying in %.1f s",
                settings.temporal_address,
                attempt,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
            attempt += 1
            continue
        if attempt > 1:
            log.info("Temporal at %s reachable (attempt %d)", settings.temporal_address, attempt)
        return client


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register the custom search attributes where a server was not started with them (the
    time-skipping test server; a cluster without the compose set-up step)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    from kwanus.contract import SEARCH_ATTRIBUTES

    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(int(key.indexed_value_type))
                for key in SEARCH_ATTRIBUTES
            },
        )
    )


In = TypeVar("In", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


async def start(
    client: Client,
    process: ProcessType[In, R],
    arg: In,
    *,
    process_id: str,
    task_queue: str,
    partner_id: str | None,
    summary: str,
    memo: dict[str, Any] | None = None,
) -> WorkflowHandle[Any, R]:
    """Start one governance process of `process`'s type under its business ID
    (`process.workflow_id(process_id)`), once (`start_process`), filed under its kind and first
    stage; the handle's result is the process's status."""
    return await start_process(
        client,
        process.name,
        arg,
        workflow_id=process.workflow_id(process_id),
        task_queue=task_queue,
        partner_id=partner_id,
        kind=process.kind.value,
        stage=process.first_stage,
        summary=summary,
        memo=memo,
        result_type=process.result,
    )


def _options(
    *,
    workflow_id: str,
    task_queue: str,
    partner_id: str | None,
    kind: str,
    stage: str,
    summary: str,
    memo: dict[str, Any] | None,
) -> dict[str, Any]:
    """How every process is started (P-1): FAIL on a running ID and REJECT_DUPLICATE on a
    closed one, so an ID never names a second process; filed under the search attributes ops
    filter on in the UI (ids and enums only, never confidential text)."""
    return {
        "id": workflow_id,
        "task_queue": task_queue,
        "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "search_attributes": TypedSearchAttributes(
            [
                *([SearchAttributePair(PARTNER_ID, partner_id)] if partner_id else []),
                SearchAttributePair(PROCESS, kind),
                SearchAttributePair(STAGE, stage),
            ]
        ),
        "memo": memo,
        "static_summary": summary,
    }


async def start_process(
    client: Client,
    run: Any,
    arg: Any,
    *,
    workflow_id: str,
    task_queue: str,
    partner_id: str | None,
    kind: str,
    stage: str,
    summary: str,
    memo: dict[str, Any] | None = None,
    result_type: type | None = None,
) -> WorkflowHandle[Any, Any]:
    """Start a workflow under its business ID, once (P-1): the caller catches
    `WorkflowAlreadyStartedError`. The processes start through `start` or `start_opened`;
    this untyped form is for tests and the bench."""
    return await client.start_workflow(
        run,
        arg,
        result_type=result_type,
        **_options(
            workflow_id=workflow_id,
            task_queue=task_queue,
            partner_id=partner_id,
            kind=kind,
            stage=stage,
            summary=summary,
            memo=memo,
        ),
    )


# How long a Temporal call left to finish in the background (`within`) may go on.
BACKGROUND_RPC_TIMEOUT = timedelta(minutes=2)
T = TypeVar("T")


async def within(call: Awaitable[T], wait: timedelta) -> T:
    """A Temporal client call awaited at most `wait` (then TimeoutError) — never cancelled:
    cancelling an RPC in flight corrupts the interpreter's thread state (temporalio 1.35's
    bridge; a later `ast.parse` fails with "AST constructor recursion depth mismatch", or the
    process aborts at exit). It finishes in the background, bounded by its own rpc_timeout
    (BACKGROUND_RPC_TIMEOUT), its outcome dropped."""
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.wait_for(asyncio.shield(task), wait.total_seconds())
    except TimeoutError:
        task.add_done_callback(_dropped)
        raise


def _dropped(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an outcome nobody waits for any more is no error


async def start_opened(
    client: Client,
    process: ProcessType[In, R],
    arg: In,
    *,
    process_id: str,
    task_queue: str,
    partner_id: str | None,
    summary: str,
    memo: dict[str, Any] | None = None,
    wait: timedelta,
) -> bool:
    """Start a process once (as `start`) with its `opened` Update (update-with-start, P-8):
    True once its first step is open, False when no worker opened it within `wait` — it is
    started all the same and goes on when a worker takes it. `WorkflowAlreadyStartedError`
    when the ID is taken (the time-skipping test server says so as an RPC error)."""
    workflow_id = process.workflow_id(process_id)
    operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
        process.name,
        arg,
        result_type=process.result,
        **_options(
            workflow_id=workflow_id,
            task_queue=task_queue,
            partner_id=partner_id,
            kind=process.kind.value,
            stage=process.first_stage,
            summary=summary,
            memo=memo,
        ),
    )
    try:
        await within(
            client.execute_update_with_start_workflow(
                OPENED_UPDATE,
                start_workflow_operation=operation,
                rpc_timeout=BACKGROUND_RPC_TIMEOUT,
            ),
            wait,
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.ALREADY_EXISTS:
            raise WorkflowAlreadyStartedError(workflow_id, process.name) from exc
        raise
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError):
        # Started (or on its way); no worker — or only one from before the Update — opened it
        # yet. What the start's own handle will say is nobody's concern any more.
        asyncio.ensure_future(operation.workflow_handle()).add_done_callback(_dropped)
        return False
    return True


async def opened(client: Client, workflow_id: str, *, wait: timedelta) -> bool:
    """A running process's `opened` Update (P-8): True once its first step has opened (at once
    for a process past it) or it closed; False when no worker answered within `wait`, or the
    run is gone or predates the Update."""
    try:
        await within(
            client.get_workflow_handle(workflow_id).execute_update(
                OPENED_UPDATE, rpc_timeout=BACKGROUND_RPC_TIMEOUT
            ),
            wait,
        )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, WorkflowUpdateFailedError):
        return False
    except RPCError as exc:
        # Gone; or too many Updates in flight on the run (retries while no worker runs).
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.RESOURCE_EXHAUSTED):
            return False
        raise
    return True
