"""What every process route does the same way: read a process's live state (the workflow's
`status` query, or the store once the run is gone), and send a human step as an Update whose
refusal maps to its HTTP status (P-2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Principal
from api.problems import Problem, not_found
from kwanus import contract
from kwanus.contract import ProcessType, Refusal
from kwanus.models.common import Act, Actor, Awaiting
from kwanus.temporal import start
from policy.access import RemediationRecord
from policy.compatibility import check_declared
from policy.decisions import Decision
from policy.evidence import PlatformRef
from policy.vocabulary import ProcessStatus, Role
from store import records, repo
from store.records import ProcessRecord
from store.tables import Process

QUERY_TIMEOUT = timedelta(seconds=5)
UPDATE_TIMEOUT = timedelta(seconds=30)

S = TypeVar("S", bound=BaseModel)
In = TypeVar("In", bound=BaseModel)


async def live_state(client: Client, workflow_id: str, state_type: type[S]) -> S | None:
    """The run's `status` query; None when the run is gone, no worker answers in time, or the
    worker cannot rebuild the run (its workflow task failing, e.g. non-determinism): the
    caller then answers from the store's projection, and ops see the failure in the UI."""
    try:
        state: S = await client.get_workflow_handle(workflow_id).query(
            "status", result_type=state_type, rpc_timeout=QUERY_TIMEOUT
        )
    except WorkflowQueryFailedError:
        return None
    except RPCError as exc:
        # Gone, or no worker answered in time (the client's own timeout reports CANCELLED).
        if exc.status in (
            RPCStatusCode.NOT_FOUND,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
        ):
            return None
        raise
    return state


async def started_owner(client: Client, workflow_id: str) -> str | None:
    """The partner of a run whose first event the store has not recorded yet, from the search
    attribute set when it was started: the server answers, no worker needed (a query could
    time out behind a busy worker). None when there is no such run."""
    try:
        run = await client.get_workflow_handle(workflow_id).describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise
    return run.typed_search_attributes.get(contract.PARTNER_ID) or ""


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
    client: Client,
    session: Session,
    principal: Principal,
    workflow_id: str,
    state_type: type[S],
    what: str,
) -> S:
    """Live state, or the projection's last copy once the run has left Temporal; another
    partner's process is 404 (P-6)."""
    row = await run_in_threadpool(repo.get_process, session=session, workflow_id=workflow_id)
    if row is not None:
        principal.ensure_sees(row.partner_id, what)
    state = await live_state(client, workflow_id, state_type)
    if state is None and row is not None and row.state:
        state = state_type.model_validate(row.state)
    if state is None:
        raise not_found(what)
    principal.ensure_sees(getattr(state, "partner_id", ""), what)
    return for_caller(principal, state)


async def send_step(
    client: Client,
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
    owner = row.partner_id if row is not None else await started_owner(client, workflow_id)
    if owner is None:
        raise not_found(what)
    principal.ensure_sees(owner, what)
    if judge is not None:
        decision = await run_in_threadpool(judge)
        if not decision.allowed:
            raise Problem.refused(decision, f"the {update.replace('_', ' ')} breaks a rule")
    actor = Actor(role=principal.role, token_id=principal.token_id, partner_id=principal.partner_id)
    try:
        # Act[Any] serializes the body as what it is; the workflow reads it as its own type.
        state: S = await client.get_workflow_handle(workflow_id).execute_update(
            update,
            Act[Any](actor=actor, body=body),
            result_type=state_type,
            rpc_timeout=UPDATE_TIMEOUT,
        )
    except WorkflowUpdateFailedError as exc:
        raise refusal_problem(exc) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            if row is not None:
                raise Problem(409, f"the {what} is {row.status}: nothing is awaited") from None
            raise not_found(what) from None
        raise
    return for_caller(principal, state)


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
    client: Client,
    process: ProcessType[In, Any],
    arg: In,
    *,
    process_id: str,
    task_queue: str,
    partner_id: str | None,
    content_sha256: str,
    summary: str,
    what: str,
) -> str:
    """Start a process under its business ID once (P-1) and return its stage. The same content
    again is the same process; the ID under another partner or with other content is a 409
    that reveals nothing of the owner. FAIL (rather than USE_EXISTING) is what lets us tell
    the two apart; REJECT_DUPLICATE keeps an ID from ever naming a second process."""
    try:
        await start(
            client,
            process,
            arg,
            process_id=process_id,
            task_queue=task_queue,
            partner_id=partner_id,
            summary=summary,
            memo={"partner_id": partner_id, "content_sha256": content_sha256},
        )
    except WorkflowAlreadyStartedError:
        desc = await client.get_workflow_handle(process.workflow_id(process_id)).describe()
        memo = await desc.memo()
        if memo.get("partner_id") != partner_id:
            raise Problem(409, f"this {what} id is already in use; choose another") from None
        if memo.get("content_sha256") != content_sha256:
            raise Problem(
                409, f"this {what} id was already used for different content; choose another"
            ) from None
        return desc.typed_search_attributes.get(contract.STAGE) or process.first_stage
    return process.first_stage


class Accepted(BaseModel):
    """202 to a started process: its id, workflow id and stage."""

    id: str
    workflow_id: str
    stage: str


class ProcessSummary(BaseModel):
    id: str
    workflow_id: str
    partner_id: str
    stage: str
    status: ProcessStatus
    next_deadline: datetime | None
    awaiting: list[Awaiting]


def summary(row: Process) -> ProcessSummary:
    return ProcessSummary(
        id=row.process_id,
        workflow_id=row.workflow_id,
        partner_id=row.partner_id,
        stage=row.stage,
        status=ProcessStatus(row.status),
        next_deadline=repo.as_utc(row.next_deadline),
        awaiting=[Awaiting.model_validate(a) for a in row.awaiting],
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
