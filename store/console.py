"""Sign-ins to the web console: the browser holds a random session id (HttpOnly cookie), stored
here only as its sha256; a session acts as the API token it was opened with, checked again on
every request. The console reaches nothing else of the store (the API does, for it)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from store.repo.common import as_utc
from store.repo.tokens import authenticate, digest, live_token
from store.tables import ApiToken, ConsoleSession


@dataclass(frozen=True)
class ConsoleSignIn:
    """A console session just opened: the id for the cookie (shown once, stored hashed)."""

    session_id: str
    csrf: str
    token: ApiToken
    expires_at: datetime


def open_console_session(
    *, session: Session, raw: str, now: datetime, lifetime: timedelta
) -> ConsoleSignIn | None:
    """Sign in to the console with a bearer token: a new session acting as it, or None when the
    token does not authenticate (the same check as the API's)."""
    token = authenticate(session=session, raw=raw, now=now)
    if token is None:
        return None
    session_id = secrets.token_urlsafe(32)
    expires = now + lifetime
    if token.expires_at is not None:
        expires = min(expires, as_utc(token.expires_at) or expires)
    row = ConsoleSession(
        id_sha256=digest(session_id),
        token_id=token.id,
        csrf=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=expires,
    )
    session.add(row)
    session.commit()
    return ConsoleSignIn(session_id=session_id, csrf=row.csrf, token=token, expires_at=expires)


def console_session(
    *, session: Session, session_id: str, now: datetime
) -> tuple[ConsoleSession, ApiToken] | None:
    """The live console session behind a cookie's id, with the token it acts as — neither
    ended, expired, nor acting as a token that no longer may — or None."""
    row = session.get(ConsoleSession, digest(session_id))
    if row is None or row.ended_at is not None or (as_utc(row.expires_at) or now) <= now:
        return None
    token = live_token(session=session, token_id=row.token_id, now=now)
    return None if token is None else (row, token)


def end_console_session(*, session: Session, session_id: str, now: datetime) -> None:
    """Sign out: the session acts no more (its row stays, with when it ended)."""
    row = session.get(ConsoleSession, digest(session_id))
    if row is not None and row.ended_at is None:
        row.ended_at = now
        session.add(row)
        session.commit()
