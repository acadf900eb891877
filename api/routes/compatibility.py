"""The compatibility matrix (E-9, M-5): changed by releases and rollouts, read by everyone."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CurrentPrincipal, SessionDep
from policy.evidence import CompatibilityMatrix
from store import repo

router = APIRouter(prefix="/compatibility-matrix", tags=["compatibility"])


@router.get("", response_model=CompatibilityMatrix)
def get_matrix(_: CurrentPrincipal, session: SessionDep) -> CompatibilityMatrix:
    """OS, API and runtime versions, each supported, deprecated or retired."""
    return repo.compatibility_matrix(session=session)
