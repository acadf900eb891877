"""API tokens (admin data): each bound to one role, and a partner token to one partner."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminDep, SessionDep
from api.problems import Problem
from store import repo
from store.schemas import TokenCreate, TokenCreated

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(body: TokenCreate, _: AdminDep, session: SessionDep) -> TokenCreated:
    """Issue a bearer token (admin). The token is in this response only; only its hash is kept."""
    try:
        return repo.create_token(session=session, token=body)
    except repo.UnknownPartner:
        raise Problem(422, "no such partner", errors={"partner_id": "unknown partner"}) from None
