"""The policy document: readable by every role; a new version by CGB or admin (P-5: running
workflows keep the version they started with)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import CurrentPrincipal, Principal, SessionDep, platform_may, require
from api.problems import Problem
from policy.document import PolicyChange, PolicyContent, PolicyDocument, check_update
from policy.vocabulary import Role
from store import repo

router = APIRouter(prefix="/policy", tags=["policy"])


@router.get("", response_model=PolicyDocument)
@platform_may
def get_policy(_: CurrentPrincipal, session: SessionDep) -> PolicyDocument:
    """The policy version in force. `tiers` is the tier catalogue: what a partner on each tier
    may hold — every capability and integration kind and permission action a proposal
    requests must be in its requested tier's entry (E-7.4). Independently of the tier, a
    kind's permissions must fit it (E-6.1, E-8.1): `read_only`, `ui_component`,
    `workflow_trigger`, `api`, `extension`, `workflow` carry `read` only; `write` and
    `intelligence_workflow` `read` and `write`; `advanced_permission` any bounded action."""
    return repo.current_policy(session=session)


@router.put("", response_model=PolicyDocument)
def put_policy(
    body: PolicyContent,
    principal: Annotated[Principal, Depends(require(Role.CGB, Role.ADMIN))],
    session: SessionDep,
) -> PolicyDocument:
    """Make a new policy version (CGB, admin). It may tighten the spec's hard floors, never
    loosen them: a loosening is refused with the rule it would break."""
    current = repo.current_policy(session=session)
    decision = check_update(current, body)
    if not decision.allowed:
        raise Problem.refused(decision, "the policy would loosen a rule of the spec")
    try:
        return repo.save_policy(session=session, content=body, actor=principal.actor)
    except repo.AlreadyExists:
        raise Problem(409, "another policy change landed first; read it and try again") from None


@router.get("/history", response_model=list[PolicyChange])
@platform_may
def policy_history(_: CurrentPrincipal, session: SessionDep) -> list[PolicyChange]:
    """Every stored policy version, oldest first: its author — the role that put it, or the
    expansion whose category-D release published it (E-3.4) — when, and the fields it changed.
    Running processes keep the version they started with (P-5)."""
    return repo.policy_history(session=session)
