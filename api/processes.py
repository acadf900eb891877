"""What every process route does the same way: start a process and answer once its first step is
open, send a human step as an Update whose refusal maps to its HTTP status (P-2), and read a
process's state — from the store's projection only, never by querying its workflow (P-8)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal, Temporal
from api.problems import Problem, not_found, problem_response
from kwanus import contract
from kwanus.contract import ProcessType, Refusal
from kwanus.models.common import Act, Actor, Awaiting
from kwanus.temporal import BACKGROUND_RPC_TIMEOUT, opened, start_opened, within
from policy.access import RemediationRecord
from policy.compatibility import check_declared
from policy.decisions import Decision
from policy.evidence import PlatformRef
from policy.vocabulary import ProcessStatus, Role
from store import records, repo
from store.records import ProcessRecord
from store.tables import Process, utcnow

DESCRIBE_TIMEOUT = timedelta(seconds=5)

S = TypeVar("S", bound=BaseModel)
In = TypeVar("In", bound=BaseModel)


async def started_owner(client: Client, workflow_id: str) -> str | None:
    """The partner of a run whose first event the store has not recorded yet, from the search
    attribute set when it was started: the server answers, no worker needed. None when there
    is no such run."""
    try:
        run = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=DESCRIBE_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return run.typed_search_attributes.get(contract.PARTNER_ID) or ""


def retry_after(temporal: Temporal) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(temporal.wait.total_seconds())))}


CONFIDENTIAL = "confidential_notes"


def _drop_confidential(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_confidential(v) for k, v in value.items() if k != CONFIDENTIAL}
    if isinstance(value, list):
        return [_drop_confidential(v) for v in value]
    return value


def for_caller(principal: Principal, state: S) -> S:
    """What a partner may read of a process: everything but the bodies' confidential notes
    (OWASP API3, property level). Other roles read it whole."""
    if principal.role is not Role.PARTNER:
        return state
    return type(state).model_validate(_drop_confidential(state.model_dump(mode="json")))


async def read_state(
    temporal: Temporal,
    session: Session,
    principal: Principal,
    workflow_id: str,
    state_type: type[S],
    what: str,
) -> S:
    """A process's state from the store's projection, never from its workflow (P-8): it answers
    in its usual time whatever the workers do, and shows every step a caller was answered for.
    Another partner's process is 404 (P-6); one started but not yet recorded by any worker is
    503 with Retry-After (the server says it exists; nothing of it is stored yet)."""
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    if row is None or not row.state:
        owner = await started_owner(temporal.client, workflow_id)
        if owner is None:
            raise not_found(what)
        principal.ensure_sees(owner, what)
        raise Problem(
            503,
            f"the {what} is started; no worker has recorded it yet",
            headers=retry_after(temporal),
        )
    return shown(principal, row, state_type, what)


def shown(principal: Principal, row: Process, state_type: type[S], what: str) -> S:
    """The state a row of the projection holds, as the caller may read it (P-6)."""
    principal.ensure_sees(row.partner_id, what)
    return for_caller(principal, state_type.model_validate(row.state))


async def stored_state(
    session: Session, principal: Principal, workflow_id: str, state_type: type[S], what: str
) -> S | None:
    """The projection as it is now — read in a new transaction, after what this request read
    before (a step's record, committed while the request waited)."""
    await run_in_threadpool(session.rollback)
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    if row is None or not row.state:
        return None
    return shown(principal, row, state_type, what)


async def send_step(
    temporal: Temporal,
    session: Session,
    principal: Principal,
    workflow_id: str,
    update: str,
    body: BaseModel,
    state_type: type[S],
    what: str,
    *,
    judge: Callable[[], Decision] | None = None,
) -> S:
    """Send one human step to a process's workflow (its validator judges it again). `judge`
    refuses, once the caller is known to see the process, what only the store can tell (a
    declaration against the platform's matrix, say): 422 naming the rule, nothing sent."""
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    owner = row.partner_id if row is not None else await started_owner(temporal.client, workflow_id)
    if owner is None:
        raise not_found(what)
    principal.ensure_sees(owner, what)
    if judge is not None:
        decision = await run_in_threadpool(judge)
        if not decision.allowed:
            raise Problem.refused(decision, f"the {update.replace('_', ' ')} breaks a rule")
    actor = Actor(role=principal.role, token_id=principal.token_id, partner_id=principal.partner_id)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + temporal.wait.total_seconds()
    try:
        # Act[Any] serializes the body as what it is; the workflow reads it as its own type.
        taken = await within(
            temporal.client.get_workflow_handle(workflow_id).start_update(
                update,
                Act[Any](actor=actor, body=body),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=state_type,
                rpc_timeout=BACKGROUND_RPC_TIMEOUT,
            ),
            temporal.wait,
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal_problem(exc) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise Problem(
            503,
            f"no worker took the {update.replace('_', ' ')} within "
            f"{temporal.wait.total_seconds():g} s; it may still be taken once one does — send "
            "it again after Retry-After (a step already taken is refused 409, naming it)",
            headers=retry_after(temporal),
        ) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            if row is not None:
                raise Problem(409, f"the {what} is {row.status}: nothing is awaited") from None
            raise not_found(what) from None
        raise  # too many steps in flight on it, Temporal down: 503 (`install`)
    try:
        live: S = await within(
            taken.result(rpc_timeout=BACKGROUND_RPC_TIMEOUT),
            timedelta(seconds=max(give_up - loop.time(), 0.1)),
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal_problem(exc) from None
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # Taken: it is being recorded and the process goes on; not at rest yet.
        state = await stored_state(session, principal, workflow_id, state_type, what)
        raise InProgress(state, retry_after(temporal)) from None
    # P-8: the Update returns once the step's record is stored and the process is at rest
    # (its next step open), so the answer is what any read shows from now on.
    stored = await stored_state(session, principal, workflow_id, state_type, what)
    return stored if stored is not None else for_caller(principal, live)


class InProgress(Exception):
    """A step taken (accepted by its workflow) but not at rest within the wait: 202 with
    what is stored and Retry-After."""

    def __init__(self, state: BaseModel | None, headers: dict[str, str]) -> None:
        super().__init__("in progress")
        self.state = state
        self.headers = headers


def install(app: FastAPI) -> None:
    async def on_in_progress(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InProgress)
        body = exc.state.model_dump(mode="json") if exc.state is not None else {}
        return JSONResponse(body, status_code=202, headers=exc.headers)

    async def on_temporal(request: Request, exc: Exception) -> JSONResponse:
        """Temporal unreachable, slow or busy: 503 with Retry-After — anything else it says, 500."""
        assert isinstance(exc, RPCError)
        transient = exc.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.RESOURCE_EXHAUSTED,
            RPCStatusCode.CANCELLED,
        )
        problem = (
            Problem(503, "Temporal did not answer; send it again", headers={"Retry-After": "5"})
            if transient
            else Problem(500, "Temporal refused the call")
        )
        return problem_response(problem, request)

    app.add_exception_handler(InProgress, on_in_progress)
    app.add_exception_handler(RPCError, on_temporal)


def declared_in_matrix(session: Session, refs: Sequence[PlatformRef]) -> Callable[[], Decision]:
    """A release's or rollout's `judge`: what it declares it works with is listed in the
    platform's matrix, and not retired (E-9.2)."""
    return lambda: check_declared("compatibility", refs, repo.compatibility_matrix(session=session))


def decision_record(
    session: Session, principal: Principal, workflow_id: str, what: str
) -> ProcessRecord:
    """The process's decision record, from the store alone; another partner's is 404."""
    row = repo.get_process(session=session, workflow_id=workflow_id)
    if row is None:
        raise not_found(what)
    principal.ensure_sees(row.partner_id, what)  # before anything of it is read
    return for_caller(principal, records.decision_record(session=session, row=row))


def refusal_problem(exc: WorkflowUpdateFailedError) -> Problem:
    cause = exc.cause
    if not isinstance(cause, ApplicationError):
        return Problem(500, "the step failed")
    details = cause.details[0] if cause.details else {}
    if not isinstance(details, dict):
        details = {}
    return Problem(
        Refusal.STATUS.get(cause.type or "", 422),
        cause.message,
        rule=details.get("rule"),
        errors=details.get("errors") or None,
    )


async def start_once(
    temporal: Temporal,
    session: Session,
    response: Response | None,
    process: ProcessType[In, Any],
    arg: In,
    *,
    process_id: str,
    task_queue: str,
    partner_id: str | None,
    content_sha256: str,
    summary: str,
    what: str,
) -> Accepted:
    """Start a process under its business ID once (P-1) and answer once its first step is open
    (P-8): its `opened` Update goes with the start (update-with-start). The same content again
    is the same process, answered the same way; the ID under another partner or with other
    content is a 409 that reveals nothing of the owner. FAIL (rather than USE_EXISTING) is what
    lets us tell the two apart; REJECT_DUPLICATE keeps an ID from ever naming a second process.
    When no worker opens the first step within the wait, the answer is what is stored, with
    Retry-After: the process is started (or its start still on its way — never answered "not
    started", which a client without an id would take for a cue to start a second one) and goes
    on when a worker takes it."""
    workflow_id = process.workflow_id(process_id)
    memo = {"partner_id": partner_id, "content_sha256": content_sha256}
    # The store outlives Temporal's retention: an id another partner's process holds on record
    # is never taken, nor is its record shown (P-1, P-6).
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    if row is not None and row.partner_id != (partner_id or ""):
        raise Problem(409, f"this {what} id is already in use; choose another")
    try:
        ready = await start_opened(
            temporal.client,
            process,
            arg,
            process_id=process_id,
            task_queue=task_queue,
            partner_id=partner_id,
            summary=summary,
            memo=memo,
            wait=temporal.wait,
        )
    except WorkflowAlreadyStartedError:
        await ensure_same(temporal, workflow_id, memo, what)
        return await answer_started(temporal, session, response, process, process_id)
    if not ready:
        # Its call goes on in the background (never cancelled): whatever holds the id now —
        # this start, or another partner's process — is judged as a start sent again; nothing
        # yet (the call still on its way) is this start, accepted, its id in Location.
        await ensure_same(temporal, workflow_id, memo, what, missing_ok=True)
    return await accepted(session, response, temporal, process, process_id, ready=ready)


async def ensure_same(
    temporal: Temporal,
    workflow_id: str,
    memo: dict[str, Any],
    what: str,
    *,
    missing_ok: bool = False,
) -> None:
    """The run under this id is the start sent again (P-1): the same partner, the same content —
    else a 409 that reveals nothing of the owner. No run: fine with `missing_ok`, else 404."""
    try:
        desc = await temporal.client.get_workflow_handle(workflow_id).describe(
            rpc_timeout=DESCRIBE_TIMEOUT
        )
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND and missing_ok:
            return
        raise
    held = await desc.memo()
    if held.get("partner_id") != memo["partner_id"]:
        raise Problem(409, f"this {what} id is already in use; choose another")
    if held.get("content_sha256") != memo["content_sha256"]:
        raise Problem(409, f"this {what} id was already used for different content; choose another")


class Accepted(BaseModel):
    """A started process (202): its state once its first step is open (P-8) — the step that
    may be sent now and who it is awaited from — or, with `Retry-After`, what is stored while
    no worker has opened it yet (`step` null)."""

    id: str
    workflow_id: str
    stage: str
    status: ProcessStatus
    step: str | None = None
    awaiting: list[Awaiting] = Field(default_factory=list)
    next_deadline: datetime | None = None


async def answer_started(
    temporal: Temporal,
    session: Session,
    response: Response | None,
    process: ProcessType[Any, Any],
    process_id: str,
) -> Accepted:
    """A start sent again (P-1): answered as the first, once the first step is open."""
    workflow_id = process.workflow_id(process_id)
    ready = await opened(temporal.client, workflow_id, wait=temporal.wait)
    return await accepted(session, response, temporal, process, process_id, ready=ready)


async def accepted(
    session: Session,
    response: Response | None,
    temporal: Temporal,
    process: ProcessType[Any, Any],
    process_id: str,
    *,
    ready: bool,
) -> Accepted:
    """A start's answer from the projection (read after the opening record was stored), with
    the process's address, and Retry-After while it is not open yet."""
    workflow_id = process.workflow_id(process_id)
    await run_in_threadpool(session.rollback)  # a new transaction: see what was just stored
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    if response is not None:
        response.headers["Location"] = contract.resource_path(process.kind, process_id)
        if row is None or (not ready and row.status == ProcessStatus.ACTIVE.value):
            response.headers.update(retry_after(temporal))
    if row is None:
        return Accepted(
            id=process_id,
            workflow_id=workflow_id,
            stage=process.first_stage,
            status=ProcessStatus.ACTIVE,
        )
    step = (row.state or {}).get("step")
    return Accepted(
        id=process_id,
        workflow_id=workflow_id,
        stage=row.stage,
        status=ProcessStatus(row.status),
        step=step if isinstance(step, str) else None,
        awaiting=[Awaiting.model_validate(a) for a in row.awaiting],
        next_deadline=repo.as_utc(row.next_deadline),
    )


class ProcessSummary(BaseModel):
    id: str
    workflow_id: str
    partner_id: str
    stage: str
    status: ProcessStatus
    next_deadline: datetime | None
    awaiting: list[Awaiting]
    overdue: bool = Field(
        default=False, description="Open, and its next deadline has passed (P-3)."
    )


def summary(row: Process) -> ProcessSummary:
    deadline = repo.as_utc(row.next_deadline)
    status = ProcessStatus(row.status)
    return ProcessSummary(
        id=row.process_id,
        workflow_id=row.workflow_id,
        partner_id=row.partner_id,
        stage=row.stage,
        status=status,
        next_deadline=deadline,
        awaiting=[Awaiting.model_validate(a) for a in row.awaiting],
        overdue=status is ProcessStatus.ACTIVE and deadline is not None and deadline < utcnow(),
    )


async def unless_restricted(
    session: Session,
    partner_id: str,
    judge: Callable[[Sequence[RemediationRecord]], Decision],
    detail: str,
) -> None:
    """M-9.2 (Decision): 403 naming the rule when the partner's restriction — derived from its
    remediations — forbids what it asks (`judge`: a policy.access decision)."""
    records = await run_in_threadpool(repo.remediations_of, session=session, partner_id=partner_id)
    may = judge(records)
    if not may.allowed:
        raise Problem.refused(may, detail, 403)
