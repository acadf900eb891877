"""One way to reach Temporal: the pydantic data converter on every client (DESIGN.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.contrib.pydantic import pydantic_data_converter

from kwanus.settings import Settings

log = logging.getLogger(__name__)


async def connect(settings: Settings, *, wait: float = 60.0) -> Client:
    """Connect, retrying with backoff for up to `wait` seconds, so a worker or API started
    before the Temporal server comes up waits for it instead of crashing."""
    delay = 0.2
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                data_converter=pydantic_data_converter,
            )
        except RuntimeError as exc:  # the core bridge reports connection failures this way
            if loop.time() + delay > give_up:
                raise
            log.warning(
                "Temporal at %s not reachable (%s); retrying", settings.temporal_address, exc
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


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
) -> None:
    """Start one governance process under its business ID, once (P-1): FAIL on a running ID
    and REJECT_DUPLICATE on a closed one, so an ID never names a second process — the caller
    catches `WorkflowAlreadyStartedError`. The search attributes ops filter on in the UI are
    set from the first event (ids and enums only, never confidential text)."""
    from kwanus import contract

    await client.start_workflow(
        run,
        arg,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                *([SearchAttributePair(contract.PARTNER_ID, partner_id)] if partner_id else []),
                SearchAttributePair(contract.PROCESS, kind),
                SearchAttributePair(contract.STAGE, stage),
            ]
        ),
        memo=memo,
        static_summary=summary,
    )
