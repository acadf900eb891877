"""Dependencies as annotated aliases: the settings, a store session, the one Temporal client
(made in the lifespan, never per request) and the caller's principal (P-6)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime
from sqlmodel import Session
from temporalio.client import Client

from api.limits import Buckets, client_key
from api.problems import Problem, not_found, unauthorized
from kwanus import logs
from kwanus.settings import Settings
from policy.document import PolicyDocument
from policy.vocabulary import Role
from store import repo
from store.db import Database
from store.tables import WORKFLOW_ID_LENGTH, utcnow


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    db: Database = request.app.state.db
    with db.session() as session:
        yield session


@dataclass(frozen=True)
class Temporal:
    """The API's way to its workflows: starts and steps (Updates), each waiting for a worker at
    most `wait` before it answers (202 with Retry-After, or 503) — never a query: every read
    is answered from the store (P-8)."""

    client: Client
    wait: timedelta


def get_temporal(request: Request) -> Temporal:
    settings: Settings = request.app.state.settings
    return Temporal(
        client=request.app.state.temporal, wait=timedelta(seconds=settings.worker_wait_seconds)
    )


SettingsDep = Annotated[Settings, Depends(get_settings)]
# Lists are keyset pages of bounded size (API4: no unbounded reads).
MAX_PAGE = 500
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Page size, at most {MAX_PAGE}.")]
After = Annotated[
    str | None,
    Query(max_length=WORKFLOW_ID_LENGTH, description="The last workflow_id of the previous page."),
]
# `order=deadline`: soonest next deadline first — overdue first — and the page after the last
# row's (`after_deadline`, `after` = its next_deadline and workflow_id).
ListOrder = Annotated[
    Literal["id", "deadline"],
    Query(description="`id` (default) or `deadline`: soonest next deadline first, overdue first."),
]
AfterDeadline = Annotated[
    AwareDatetime | None,
    Query(description="With order=deadline: the last row's next_deadline (absent if it had none)."),
]
SessionDep = Annotated[Session, Depends(get_session)]


def get_policy(session: SessionDep) -> PolicyDocument:
    """The policy version in force: what a process started now receives and keeps (P-5)."""
    return repo.current_policy(session=session)


TemporalDep = Annotated[Temporal, Depends(get_temporal)]
PolicyDep = Annotated[PolicyDocument, Depends(get_policy)]

_bearer = HTTPBearer(auto_error=False, description="`kw1.<id>.<secret>` from POST /v1/tokens")


@dataclass(frozen=True)
class Principal:
    """Who is calling: one token, one role; a partner token is bound to its partner."""

    token_id: str
    role: Role
    partner_id: str | None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"partner:{self.partner_id}" if self.role is Role.PARTNER else self.role.value

    def can_see(self, partner_id: str) -> bool:
        """P-6: a partner sees its own records only; every other role reads all."""
        return self.role is not Role.PARTNER or self.partner_id == partner_id

    def ensure_sees(self, partner_id: str, what: str) -> None:
        """404, not 403: another partner's records are never revealed to exist."""
        if not self.can_see(partner_id):
            raise not_found(what)


F = TypeVar("F", bound=Callable[..., Any])
PLATFORM_MARK = "__kwanus_platform__"


def platform_may(endpoint: F) -> F:
    """Marks an operation the `platform` role (the KWANUS OS runtime as a service) may call. It
    is refused (403) everywhere else, deny by default: it reports the evidence (E-7.1) and
    reads what partners hold and what the platform lists — never processes, the audit log or
    anyone's steps."""
    setattr(endpoint, PLATFORM_MARK, True)
    return endpoint


class AuthFailures:
    """Failed authentications from one client address, throttled (settings'
    `auth_failures_per_minute`): a guesser gets 429, not another try — whatever it sends."""

    def __init__(self, request: Request) -> None:
        self.buckets: Buckets = request.app.state.auth_failures
        self.key = client_key(request.scope)

    def refuse_while_exhausted(self) -> None:
        wait = self.buckets.wait(self.key)
        if wait:
            raise Problem(
                429,
                f"too many failed authentications from this address; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def spend(self) -> None:
        self.buckets.take(self.key)


# The console (api/console) calls this API in process for a signed-in user: it names the token
# its session acts as in this ASGI scope key, which no HTTP request can set (the server builds
# the scope), and the token is checked here as a bearer token is.
CONSOLE_TOKEN = "kwanus.console.token_id"  # noqa: S105 (a scope key, not a secret)


def current_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    console_token = request.scope.get(CONSOLE_TOKEN)
    if credentials is None and isinstance(console_token, str):
        token = repo.live_token(session=session, token_id=console_token, now=utcnow())
        if token is None:
            raise unauthorized("the console session's token is revoked or expired")
    elif credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized()
    else:
        failures = AuthFailures(request)
        failures.refuse_while_exhausted()
        token = repo.authenticate(session=session, raw=credentials.credentials, now=utcnow())
        if token is None:
            failures.spend()
            raise unauthorized("the bearer token is unknown, revoked or expired")
    role = Role(token.role)
    endpoint = getattr(request.scope.get("route"), "endpoint", None)
    if role is Role.PLATFORM and not getattr(endpoint, PLATFORM_MARK, False):
        raise Problem(
            403,
            "the platform role reports telemetry and reads partners, the compatibility matrix "
            "and the policy; nothing else",
        )
    logs.bind(partner_id=token.partner_id)  # the request's log lines name its partner
    return Principal(token_id=token.id, role=role, partner_id=token.partner_id)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting only `roles` (403 for any other authenticated role)."""
    allowed = frozenset(roles)

    def dependency(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise Problem(403, f"role {principal.role.value} may not do this (allowed: {names})")
        return principal

    return dependency


# Roles that act on nothing themselves: they watch everything (what is overdue, every inbox).
WATCHERS = (Role.OPS, Role.ADMIN)

AdminDep = Annotated[Principal, Depends(require(Role.ADMIN))]
PartnerDep = Annotated[Principal, Depends(require(Role.PARTNER))]
PlatformDep = Annotated[Principal, Depends(require(Role.PLATFORM))]
ScoDep = Annotated[Principal, Depends(require(Role.SCO))]


_KNOWN_QUERY: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def no_unknown_query(request: Request) -> None:
    """Hostile input: a query parameter the operation does not declare is refused (422), not
    silently ignored — a misspelt filter must not quietly return everything."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _KNOWN_QUERY.get(id(route))
    if known is None:
        known = frozenset(_query_names(dependant))
        _KNOWN_QUERY[id(route)] = known
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Problem(
            422,
            f"unknown query parameters: {', '.join(unknown)}",
            errors=dict.fromkeys(unknown, "not a parameter of this operation"),
        )
