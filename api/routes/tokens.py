"""API tokens (admin data): each bound to one role, and a partner token to one partner."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminDep, Limit, SessionDep
from api.problems import Problem, not_found
from store import repo
from store.schemas import TokenCreate, TokenCreated, TokenPublic
from store.tables import utcnow

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
def create_token(body: TokenCreate, _: AdminDep, session: SessionDep) -> TokenCreated:
    """Issue a bearer token (admin). The token is in this response only; only its hash is kept."""
    try:
        return repo.create_token(session=session, token=body)
    except repo.UnknownPartner:
        raise Problem(422, "no such partner", errors={"partner_id": "unknown partner"}) from None


@router.get("", response_model=list[TokenPublic])
def list_tokens(_: AdminDep, session: SessionDep, limit: Limit = 100) -> list[TokenPublic]:
    """Every token's id, role, binding, expiry and revocation (never a secret)."""
    return [repo.token_public(row) for row in repo.list_tokens(session=session, limit=limit)]


@router.delete("/{token_id}", response_model=TokenPublic)
def revoke_token(token_id: str, _: AdminDep, session: SessionDep) -> TokenPublic:
    """Revoke a token (admin): it is refused (401) from the next request on."""
    row = repo.revoke_token(session=session, token_id=token_id, now=utcnow())
    if row is None:
        raise not_found("token")
    return repo.token_public(row)
