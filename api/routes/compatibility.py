"""The compatibility matrix (E-9, M-5): versioned, changed by releases, rollouts and TSC — never
silently: every change is numbered in its history and carried by an audit event naming the
process (or the TSC member) behind it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CurrentPrincipal, Limit, Principal, SessionDep, platform_may, require
from api.problems import Problem
from policy.evidence import CompatibilityMatrix, MatrixEntry
from policy.types import Text
from policy.vocabulary import Role
from store import repo

router = APIRouter(prefix="/compatibility-matrix", tags=["compatibility"])
TscDep = Annotated[Principal, Depends(require(Role.TSC))]


class MatrixChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entries: list[MatrixEntry] = Field(min_length=1, max_length=100)
    reason: Text


class MatrixChangeRecord(BaseModel):
    matrix_version: int
    kind: str
    name: str
    version: str
    status: str
    previous: str | None
    at: datetime
    source: str
    actor: str
    audit_key: str


@router.get("", response_model=CompatibilityMatrix)
@platform_may
def get_matrix(_: CurrentPrincipal, session: SessionDep) -> CompatibilityMatrix:
    """OS, API and runtime versions, each supported, deprecated or retired; `version` counts
    the changes so far."""
    return repo.compatibility_matrix(session=session)


@router.put("", response_model=CompatibilityMatrix)
def change_matrix(
    body: MatrixChange, principal: TscDep, session: SessionDep
) -> CompatibilityMatrix:
    """TSC changes entries directly (with a reason, audited); unchanged entries change nothing."""
    try:
        repo.change_matrix(
            session=session, entries=body.entries, actor=principal.actor, reason=body.reason
        )
    except repo.AlreadyExists:
        raise Problem(409, "another matrix change landed first; read it and try again") from None
    return repo.compatibility_matrix(session=session)


@router.get("/history", response_model=list[MatrixChangeRecord])
@platform_may
def matrix_history(
    _: CurrentPrincipal,
    session: SessionDep,
    limit: Limit = 100,
) -> list[MatrixChangeRecord]:
    """Every change, newest first: what changed, from what, when, by which process or member."""
    return [
        MatrixChangeRecord(
            matrix_version=c.matrix_version,
            kind=c.kind,
            name=c.name,
            version=c.version,
            status=c.status,
            previous=c.previous,
            at=repo.as_utc(c.at) or c.at,
            source=c.source,
            actor=c.actor,
            audit_key=c.audit_key,
        )
        for c in repo.matrix_history(session=session, limit=limit)
    ]
