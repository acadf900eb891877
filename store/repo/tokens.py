"""API tokens `kw1.<id>.<secret>`: only the secret's sha256 is stored, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from policy.vocabulary import Role
from store.repo.common import UnknownPartner, as_utc
from store.schemas import TokenCreate, TokenCreated, TokenPublic
from store.tables import ApiToken, Partner, utcnow

TOKEN_PREFIX = "kw1"  # noqa: S105 (the token format tag, not a secret)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(*, session: Session, token: TokenCreate) -> TokenCreated:
    """A new bearer token `kw1.<id>.<secret>`; only sha256(secret) is stored, the token itself is
    returned once."""
    if token.partner_id is not None and session.get(Partner, token.partner_id) is None:
        raise UnknownPartner(token.partner_id)
    token_id = "tok_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiToken(
        id=token_id,
        secret_sha256=digest(secret),
        role=token.role,
        partner_id=token.partner_id,
        label=token.label,
        created_at=utcnow(),
        expires_at=token.expires_at,
    )
    session.add(row)
    session.commit()
    return TokenCreated(
        id=row.id,
        role=token.role,
        partner_id=row.partner_id,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        token=f"{TOKEN_PREFIX}.{token_id}.{secret}",
    )


def authenticate(*, session: Session, raw: str, now: datetime) -> ApiToken | None:
    """The live token behind a bearer string, or None. The lookup is by the public id and the
    secret is compared in constant time, so response time reveals nothing about the secret."""
    parts = raw.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    row = session.get(ApiToken, parts[1])
    if row is None or not hmac.compare_digest(row.secret_sha256, digest(parts[2])):
        return None
    return row if _live(row, now) else None


def _live(row: ApiToken, now: datetime) -> bool:
    expires = as_utc(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > now)


def live_token(*, session: Session, token_id: str, now: datetime) -> ApiToken | None:
    """The token `token_id` while it may act (not revoked, not expired), or None: a console
    session acts as its token, checked again on every request."""
    row = session.get(ApiToken, token_id)
    return row if row is not None and _live(row, now) else None


def revoke_token(*, session: Session, token_id: str, now: datetime) -> ApiToken | None:
    """Revoke a token (it fails authentication from now on); None when there is no such token.
    Revoking twice keeps the first time."""
    row = session.get(ApiToken, token_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
        session.commit()
    return row


def list_tokens(*, session: Session, limit: int = 100) -> Sequence[ApiToken]:
    return session.exec(select(ApiToken).order_by(col(ApiToken.created_at)).limit(limit)).all()


def token_public(row: ApiToken) -> TokenPublic:
    return TokenPublic(
        id=row.id,
        role=Role(row.role),
        partner_id=row.partner_id,
        label=row.label,
        created_at=as_utc(row.created_at) or row.created_at,
        expires_at=as_utc(row.expires_at),
        revoked_at=as_utc(row.revoked_at),
    )


def role_of(token: ApiToken) -> Role:
    return Role(token.role)
