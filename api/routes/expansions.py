"""Expansion proposals: submitted by partners, carried by the `PartnerExpansion` workflow."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import (
    After,
    AfterDeadline,
    CurrentPrincipal,
    Limit,
    ListOrder,
    PartnerDep,
    PolicyDep,
    Principal,
    SessionDep,
    SettingsDep,
    Temporal,
    TemporalDep,
    require,
)
from api.problems import Problem, not_found
from api.processes import (
    Accepted,
    ProcessSummary,
    answer_started,
    decision_record,
    declared_in_matrix,
    read_state,
    send_step,
    start_once,
    summary,
    unless_restricted,
)
from kwanus import contract
from kwanus.hashing import canonical_sha256
from kwanus.models.expansion import ExpansionInput, ExpansionStatus
from policy.access import may_act_while
from policy.decisions import Decision
from policy.document import PolicyDocument, apply_change
from policy.expansion import check_category
from policy.forms import (
    DeadlineExtension,
    ImplementationReportRequest,
    IntegrationPlan,
    MonitoringDecision,
    OutcomeReview,
    Plans,
    ReleaseRequest,
    Withdrawal,
)
from policy.grants import check_against_holdings
from policy.proposal import Proposal, check_submission
from policy.review import Review
from policy.tiers import is_upgrade, upgrade_evidence
from policy.validation import check_against_manifest
from policy.vocabulary import ExpansionStage, ProcessKind, ProcessStatus, Role
from policy.vote import Vote
from store import repo
from store.records import ProcessRecord
from store.tables import Partner, utcnow

router = APIRouter(prefix="/expansions", tags=["expansions"])

ExpansionId = Annotated[str, StringConstraints(pattern=contract.CLIENT_ID)]


class ExpansionCreate(Proposal):
    id: ExpansionId | None = Field(
        default=None,
        description="Client-chosen id: submitting the same proposal under it again returns the "
        "same process (P-1). Generated when absent.",
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def submit_expansion(
    body: ExpansionCreate,
    principal: PartnerDep,
    policy: PolicyDep,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    response: Response,
) -> Accepted:
    """Submit a proposal (partner): refused with 422 before any workflow starts when incomplete
    (E-2.1), malformed for its category (E-3.x) or forbidden (E-5.2, E-6.3, E-8.3). Answers once
    the reviews are open (P-8) — a review sent right after the answer is taken — or, when no
    worker opened them within the wait, with what is stored and Retry-After; the same proposal
    sent again under its `id` is the same process (P-1)."""
    assert principal.partner_id is not None
    proposal = Proposal.model_validate(body.model_dump(exclude={"id"}))
    partner = await run_in_threadpool(
        repo.get_partner, session=session, partner_id=principal.partner_id
    )
    if partner is None:
        raise not_found("partner")
    expansion_id = body.id or secrets.token_hex(8)
    workflow_id = contract.expansion_workflow_id(expansion_id)
    sha = canonical_sha256(proposal)
    # P-1: the same proposal sent again under its id, by its partner, is answered as the process
    # it started — not judged again against what its own release has since changed. Anything
    # else is judged as new (and start_once refuses an id in use).
    known = await run_in_threadpool(repo.expansion_status, session=session, workflow_id=workflow_id)
    if known is not None and (known.partner_id, known.proposal_sha256) == (partner.id, sha):
        # Answered from the record, never started again — not even once Temporal has let the
        # closed run go (an id is never reused).
        return await answer_started(temporal, session, response, contract.EXPANSION, expansion_id)
    if known is not None:  # the id names another proposal on record, its run gone or not (P-1)
        raise Problem(409, "this expansion id is already in use; choose another")
    await _admissible(proposal, partner, policy, session)
    return await start_once(
        temporal,
        session,
        response,
        contract.EXPANSION,
        ExpansionInput(
            expansion_id=expansion_id,
            partner_id=principal.partner_id,
            partner_tier=partner.tier,
            proposal=proposal,
            proposal_sha256=sha,
            policy=policy,
            submitted_by=principal.token_id,
        ),
        process_id=expansion_id,
        task_queue=settings.task_queue,
        partner_id=principal.partner_id,
        content_sha256=sha,
        summary=f"Expansion {expansion_id} · partner {principal.partner_id} · "
        f"category {proposal.category.value}",
        what="expansion",
    )


async def _admissible(
    proposal: Proposal, partner: Partner, policy: PolicyDocument, session: Session
) -> None:
    """A new proposal, judged before anything starts: complete and allowed (E-2.1, E-5.2,
    E-6, E-8, E-7.4), of its category's shape (E-3.x), against what the partner holds (E-2.7),
    an upgrade on the recorded evidence (E-7.1), within the cap on open proposals (API4) — and
    never from a restricted partner (M-9.2: 403)."""
    await unless_restricted(
        session,
        partner.id,
        lambda records: may_act_while(records, "submit expansions"),
        "a restricted partner submits no expansion (M-9.2)",
    )
    decision = Decision.merge(
        check_submission(proposal, policy),
        check_category(proposal, partner.tier),
        check_against_holdings(proposal.grants_requested, proposal.removes, repo.holdings(partner)),
        check_against_manifest(
            proposal.grants_requested,
            await run_in_threadpool(repo.current_manifest, session=session, partner=partner),
            repo.holdings(partner),
            proposal.removes,
        ),
    )
    if proposal.policy_change:  # E-3.4: the policy it would make holds the spec's floors
        decision = Decision.merge(decision, apply_change(policy, proposal.policy_change)[1])
    if is_upgrade(proposal, partner.tier, policy):  # E-7.1 on the recorded evidence
        evidence = await run_in_threadpool(
            repo.tier_evidence, session=session, partner_id=partner.id, now=utcnow()
        )
        decision = Decision.merge(decision, upgrade_evidence(evidence, now=utcnow(), policy=policy))
    if not decision.allowed:
        raise Problem.refused(decision, "the proposal breaks a governance rule")
    open_now = await run_in_threadpool(
        repo.count_open, session=session, kind=ProcessKind.EXPANSION, partner_id=partner.id
    )
    if open_now >= policy.max_open_proposals_per_partner:
        raise Problem(
            429,
            f"{open_now} proposals are open; the policy allows "
            f"{policy.max_open_proposals_per_partner} (max_open_proposals_per_partner)",
            headers={"Retry-After": "3600"},
        )


@router.get("", response_model=list[ProcessSummary])
def list_expansions(
    principal: CurrentPrincipal,
    session: SessionDep,
    partner_id: Annotated[str | None, Query(max_length=64)] = None,
    stage: ExpansionStage | None = None,
    status_: Annotated[ProcessStatus | None, Query(alias="status")] = None,
    after: After = None,
    order: ListOrder = "id",
    after_deadline: AfterDeadline = None,
    limit: Limit = 100,
) -> list[ProcessSummary]:
    """List expansions from the store (no Temporal query); a partner sees its own."""
    rows = repo.list_processes(
        session=session,
        kind=ProcessKind.EXPANSION,
        partner_id=principal.partner_id or partner_id,
        stage=stage,
        status=status_,
        after=after,
        limit=limit,
        summaries=True,
        by_deadline=order == "deadline",
        after_deadline=after_deadline,
    )
    return [summary(r) for r in rows]


@router.get("/{expansion_id}/decision-record", response_model=ProcessRecord)
def get_decision_record(
    expansion_id: str, principal: CurrentPrincipal, session: SessionDep
) -> ProcessRecord:
    """One exportable record of the expansion: the sha256 of what was submitted, every review,
    vote, decision and step with who acted and the rules applied, the policy version and
    timestamps — served from the store, complete after the run has left Temporal."""
    return decision_record(
        session, principal, contract.expansion_workflow_id(expansion_id), "expansion"
    )


@router.get("/{expansion_id}", response_model=ExpansionStatus)
async def get_expansion(
    expansion_id: str, principal: CurrentPrincipal, session: SessionDep, temporal: TemporalDep
) -> ExpansionStatus:
    """An expansion's state, from the store (P-8): what every answer of its steps said, or
    later — while its run lives, after it left Temporal's retention, with or without workers."""
    workflow_id = contract.expansion_workflow_id(expansion_id)
    return await read_state(temporal, session, principal, workflow_id, ExpansionStatus, "expansion")


# --- human steps: each a Temporal Update, judged again by the workflow's validator (P-2) -----

BodyDep = Annotated[Principal, Depends(require(Role.TSC, Role.SCO, Role.ERC, Role.CGB))]
CgbDep = Annotated[Principal, Depends(require(Role.CGB))]
ExtenderDep = Annotated[Principal, Depends(require(Role.CGB, Role.ADMIN))]


async def _step(
    temporal: Temporal,
    session: Session,
    principal: Principal,
    expansion_id: str,
    update: str,
    body: BaseModel,
    *,
    judge: Callable[[], Decision] | None = None,
) -> ExpansionStatus:
    workflow_id = contract.expansion_workflow_id(expansion_id)
    return await send_step(
        temporal,
        session,
        principal,
        workflow_id,
        update,
        body,
        ExpansionStatus,
        "expansion",
        judge=judge,
    )


@router.post("/{expansion_id}/reviews", response_model=ExpansionStatus)
async def review(
    expansion_id: str, body: Review, principal: BodyDep, session: SessionDep, temporal: TemporalDep
) -> ExpansionStatus:
    """A body's review (TSC, SCO, ERC, CGB): its own criteria, once, during Evaluation (E-2.2,
    E-4)."""
    return await _step(temporal, session, principal, expansion_id, "review", body)


@router.post("/{expansion_id}/plans", response_model=ExpansionStatus)
async def plans(
    expansion_id: str,
    body: Plans,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """Plans the risk assessment asks for before the vote (partner; E-2.3, E-5.1)."""
    return await _step(temporal, session, principal, expansion_id, "plans", body)


@router.post("/{expansion_id}/votes", response_model=ExpansionStatus)
async def vote(
    expansion_id: str, body: Vote, principal: BodyDep, session: SessionDep, temporal: TemporalDep
) -> ExpansionStatus:
    """A body's vote, once (E-2.4)."""
    return await _step(temporal, session, principal, expansion_id, "vote", body)


@router.post("/{expansion_id}/integration-plan", response_model=ExpansionStatus)
async def integration_plan(
    expansion_id: str,
    body: IntegrationPlan,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """The integration plan: versioning, compatibility rules, rollout plan (partner; E-2.5)."""
    return await _step(temporal, session, principal, expansion_id, "integration_plan", body)


@router.post("/{expansion_id}/implementation", response_model=ExpansionStatus)
async def implementation(
    expansion_id: str,
    body: ImplementationReportRequest,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """Development, testing and documentation reported done, each a reference (partner;
    E-2.6)."""
    return await _step(temporal, session, principal, expansion_id, "implementation", body)


@router.post("/{expansion_id}/release", response_model=ExpansionStatus)
async def release(
    expansion_id: str,
    body: ReleaseRequest,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """The versioned release (partner): the governance update happens here — the approved
    grants added to what the partner holds, only `removes` taken away (E-2.7). `compatibility`
    names the platform versions the release works with, stored as the partner's own; a version
    the matrix does not list, or has retired, is refused (E-9.2)."""
    assert principal.partner_id is not None
    await unless_restricted(  # M-9.2: nothing grows while restricted; the step waits
        session,
        principal.partner_id,
        lambda records: may_act_while(records, "release a governance update"),
        "a restricted partner releases nothing (M-9.2)",
    )
    row = await run_in_threadpool(
        repo.get_process, session=session, workflow_id=contract.expansion_workflow_id(expansion_id)
    )
    # Only the partner's own expansion is read (another's is the step's 404, P-6).
    mine = row is not None and row.partner_id == principal.partner_id
    known = repo.state_of(row, contract.EXPANSION) if mine else None
    if known is not None and known.policy_change:
        current = await run_in_threadpool(repo.current_policy, session=session)
        _, holds = apply_change(current, known.policy_change)
        if not holds.allowed:  # E-3.4: the policy in force moved on; the step stays open
            raise Problem.refused(holds, "the policy change no longer holds", 409)
    judge = declared_in_matrix(session, body.compatibility)
    return await _step(temporal, session, principal, expansion_id, "release", body, judge=judge)


@router.post("/{expansion_id}/monitoring-decision", response_model=ExpansionStatus)
async def monitoring_decision(
    expansion_id: str,
    body: MonitoringDecision,
    principal: Annotated[Principal, Depends(require(Role.CGB, Role.SCO))],
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """CGB's decision on a monitoring check that breached the policy's thresholds (E-12.1 stage
    6, P-3), within the review deadline: `continue`, `roll_back` (the release's grants
    revoked, before and after on record) or `remediate` — what a missed deadline applies. SCO
    may recommend first: on record for CGB, deciding nothing."""
    return await _step(temporal, session, principal, expansion_id, "monitoring_decision", body)


@router.post("/{expansion_id}/outcome-review", response_model=ExpansionStatus)
async def outcome_review(
    expansion_id: str,
    body: OutcomeReview,
    principal: CgbDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """CGB's review of the outcome (stage 7)."""
    return await _step(temporal, session, principal, expansion_id, "outcome_review", body)


@router.post("/{expansion_id}/withdraw", response_model=ExpansionStatus)
async def withdraw(
    expansion_id: str,
    principal: PartnerDep,
    session: SessionDep,
    temporal: TemporalDep,
    body: Withdrawal | None = None,
) -> ExpansionStatus:
    """Withdraw the proposal before its release (partner)."""
    return await _step(temporal, session, principal, expansion_id, "withdraw", body or Withdrawal())


@router.post("/{expansion_id}/deadline", response_model=ExpansionStatus)
async def extend_deadline(
    expansion_id: str,
    body: DeadlineExtension,
    principal: ExtenderDep,
    session: SessionDep,
    temporal: TemporalDep,
) -> ExpansionStatus:
    """Move the pending step's deadline later (CGB, admin; P-3)."""
    return await _step(temporal, session, principal, expansion_id, "extend_deadline", body)
