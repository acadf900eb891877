"""The web console (`/console`): sign-in with an API token, the inbox, lists, case pages and a
form for every human step. Server-rendered, no JavaScript. Every read and every step is the API
itself called in process as the signed-in user (`gateway.Gateway`), so the roles, the BOLA
rules, the validation, the Updates and the audit are the API's, row for row."""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from api.console import forms
from api.console.gateway import Answer, Gateway
from api.console.steps import STEPS, offered, step_form
from api.deps import AuthFailures
from api.problems import Problem
from kwanus import contract
from kwanus.settings import Settings
from policy.proposal import Proposal
from policy.review import MEANING
from policy.vocabulary import (
    Category,
    ExpansionStage,
    MigrationStage,
    ProcessKind,
    ProcessStatus,
    Role,
)
from store import console as sessions
from store.db import Database
from store.tables import utcnow

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["error_for"] = forms.error_for

router = APIRouter(prefix="/console", include_in_schema=False)

KINDS = {
    "expansions": ProcessKind.EXPANSION,
    "migrations": ProcessKind.MIGRATION,
    "remediations": ProcessKind.REMEDIATION,
}
PLURAL = {kind: plural for plural, kind in KINDS.items()}
REMEDIATION = ProcessKind.REMEDIATION
STAGES: dict[ProcessKind, list[str]] = {
    ProcessKind.EXPANSION: [s.value for s in ExpansionStage],
    ProcessKind.MIGRATION: [s.value for s in MigrationStage],
    # A remediation stays in one stage: its timeline is M-9.1's steps.
    ProcessKind.REMEDIATION: ["root_cause", "plan", "fixes", "revalidation"],
}
# Lists: processes of these kinds are listed (remediations are reached from their cases).
LISTED = ("expansions", "migrations")
PAGE = 50

# Every console response: no framing, no outside asset, nothing cached.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _cookie(settings: Settings, name: str) -> str:
    # `__Host-`: the browser keeps it only if Secure, for this host and path / (no subdomain).
    return f"__Host-{name}" if settings.console_secure_cookie else name


def _cookie_attrs(settings: Settings) -> dict[str, Any]:
    """Every console cookie's: the whole site, HTTPS only outside development, never read by
    a script, never sent by another site's request."""
    return {
        "path": "/",
        "secure": settings.console_secure_cookie,
        "httponly": True,
        "samesite": "strict",
    }


@dataclass(frozen=True)
class User:
    """The signed-in actor: the token its session acts as, and the session's CSRF token."""

    token_id: str
    role: Role
    partner_id: str | None
    csrf: str

    @property
    def actor(self) -> str:
        return f"partner:{self.partner_id}" if self.role is Role.PARTNER else self.role.value


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _session_id(request: Request) -> str | None:
    return request.cookies.get(_cookie(_settings(request), "kwanus_session"))


def _user(request: Request) -> User | None:
    raw = _session_id(request)
    if not raw:
        return None
    with _db(request).session() as session:
        found = sessions.console_session(session=session, session_id=raw, now=utcnow())
        if found is None:
            return None
        row, token = found
        return User(token.id, Role(token.role), token.partner_id, row.csrf)


async def user_of(request: Request) -> User | None:
    return await run_in_threadpool(_user, request)


def gateway(request: Request, user: User) -> Gateway:
    client = request.client
    return Gateway(
        request.app, user.token_id, (client.host, client.port) if client else ("console", 0)
    )


def page(
    request: Request,
    template: str,
    user: User | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    settings = _settings(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "kinds": LISTED,
            "ui": settings.temporal_ui_url.rstrip("/"),
            "namespace": settings.temporal_namespace,
            **context,
        },
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def to_sign_in(request: Request) -> RedirectResponse:
    query = request.scope.get("query_string", b"").decode("latin-1")
    target = request.url.path + (f"?{query}" if query else "")
    return RedirectResponse(f"/console/sign-in?next={quote(target)}", status_code=303)


def refused(request: Request, user: User | None, answer: Answer) -> HTMLResponse:
    """A read the API refused: its status and message (a 404 is also "not yours", P-6)."""
    title = {404: "Not found", 403: "Not allowed", 401: "Signed out"}.get(answer.status, "Refused")
    return page(
        request,
        "problem.html",
        user,
        answer.status,
        title=title,
        detail=answer.detail or "the API refused this request",
        rule=answer.rule,
    )


# Checked before it becomes part of a path (`.` and `..` would move the API call).
PROCESS_ID = re.compile(contract.PROCESS_ID)


def _id_ok(process_id: str) -> bool:
    return PROCESS_ID.fullmatch(process_id) is not None


def _not_found(request: Request, user: User | None) -> HTMLResponse:
    return page(request, "problem.html", user, 404, title="Not found", detail="", rule=None)


def _now_iso() -> str:
    """Now as the API writes datetimes (`…Z`), so deadlines compare as strings."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _csrf_ok(expected: str, form: Mapping[str, list[str]]) -> bool:
    sent = (form.get("csrf") or [""])[-1]
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def _csrf_refused(request: Request, user: User | None) -> HTMLResponse:
    return page(
        request,
        "problem.html",
        user,
        403,
        title="Form refused",
        detail="the form's CSRF token is missing or out of date: nothing was sent. Reload the "
        "page and send the form again.",
        rule=None,
    )


async def _form(request: Request) -> dict[str, list[str]]:
    data = await request.form()
    out: dict[str, list[str]] = {}
    for key, value in data.multi_items():
        if isinstance(value, str):
            out.setdefault(key, []).append(value)
    return out


async def _posted(request: Request) -> tuple[User, dict[str, list[str]]] | Response:
    """A form posted by a signed-in user with the session's CSRF token: the user and the form;
    otherwise the answer (to sign in, or the refusal — nothing is sent)."""
    user = await user_of(request)
    form = await _form(request)
    if user is None:
        return to_sign_in(request)
    if not _csrf_ok(user.csrf, form):
        return _csrf_refused(request, user)
    return user, form


# --- sign-in and sign-out ------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    return RedirectResponse("/console/inbox", status_code=303)


def _sign_in_page(
    request: Request, next_: str, error: str = "", status_code: int = 200
) -> HTMLResponse:
    settings = _settings(request)
    nonce = secrets.token_urlsafe(24)
    response = page(
        request, "sign_in.html", None, status_code, nonce=nonce, next=next_, error=error
    )
    # Login CSRF: the form's nonce must come back with this cookie (double submit).
    response.set_cookie(
        _cookie(settings, "kwanus_signin"),
        nonce,
        max_age=3600,
        **_cookie_attrs(settings),
    )
    return response


def _safe_next(target: str) -> str:
    """Only a console path: never an open redirect."""
    return target if target.startswith("/console/") and "//" not in target else "/console/inbox"


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_form(request: Request, next: str = "/console/inbox") -> Response:
    return _sign_in_page(request, _safe_next(next))


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(request: Request) -> Response:
    settings = _settings(request)
    form = await _form(request)
    next_ = _safe_next((form.get("next") or [""])[-1])
    nonce = request.cookies.get(_cookie(settings, "kwanus_signin"), "")
    if not nonce or not _csrf_ok(nonce, {"csrf": form.get("nonce") or []}):
        return _sign_in_page(request, next_, "The sign-in form expired; send it again.", 403)
    raw = (form.get("token") or [""])[-1].strip()
    failures = AuthFailures(request)
    try:
        failures.refuse_while_exhausted()
    except Problem as refused_:
        return _sign_in_page(request, next_, refused_.detail, 429)

    def open_session() -> sessions.ConsoleSignIn | None:
        with _db(request).session() as session:
            return sessions.open_console_session(
                session=session,
                raw=raw,
                now=utcnow(),
                lifetime=timedelta(hours=settings.console_session_hours),
            )

    signed_in = await run_in_threadpool(open_session) if raw else None
    if signed_in is None:
        failures.spend()
        return _sign_in_page(request, next_, "This token is unknown, revoked or expired.", 401)
    response = RedirectResponse(next_, status_code=303)
    response.set_cookie(
        _cookie(settings, "kwanus_session"),
        signed_in.session_id,
        expires=signed_in.expires_at.astimezone(UTC),
        **_cookie_attrs(settings),
    )
    response.delete_cookie(_cookie(settings, "kwanus_signin"), **_cookie_attrs(settings))
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(request: Request) -> Response:
    user = await user_of(request)
    form = await _form(request)
    if user is not None and not _csrf_ok(user.csrf, form):
        return _csrf_refused(request, user)
    raw = _session_id(request)
    if raw:

        def end() -> None:
            with _db(request).session() as session:
                sessions.end_console_session(session=session, session_id=raw, now=utcnow())

        await run_in_threadpool(end)
    settings = _settings(request)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(_cookie(settings, "kwanus_session"), **_cookie_attrs(settings))
    return response


# --- a partner's proposal -------------------------------------------------------------------

# E-3.x: what each category asks for, beside what every proposal carries (E-2.1).
CATEGORY_FIELDS: dict[Category, tuple[str, ...]] = {
    Category.CAPABILITY: ("requested_capabilities", "integrations", "removes"),
    Category.TIER: ("requested_tier", "new_tier", "requested_capabilities", "removes"),
    Category.INTEGRATION: ("integrations", "requested_capabilities", "removes"),
    Category.GOVERNANCE: ("policy_change",),
}
COMMON_FIELDS = (
    "description",
    "justification",
    "governance_alignment",
    "compatibility_impact",
    "security_impact",
    "lifecycle_plan",
    "migration_plan",
    "breaking_change",
    "release_version",
    "risk_mitigation",
    "fallback_plan",
    "monitoring_plan",
)


def proposal_fields(category: Category) -> tuple[forms.Field, ...]:
    return forms.fields_of(Proposal, only=(*COMMON_FIELDS, *CATEGORY_FIELDS[category]))


async def _proposal_page(
    request: Request,
    user: User,
    category: Category | None,
    shown: forms.Shown | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    tier = ""
    if user.partner_id:
        me = await gateway(request, user).get(f"/v1/partners/{quote(user.partner_id)}")
        tier = me.body.get("tier", "") if me.ok else ""
    if category is not None and shown is None:
        shown = forms.Shown(proposal_fields(category))
    return page(
        request,
        "proposal.html",
        user,
        status_code,
        categories=list(Category),
        category=category,
        tier=tier,
        shown=shown,
    )


@router.get("/propose", response_class=HTMLResponse)
async def new_proposal(request: Request, category: str = "") -> Response:
    user = await user_of(request)
    if user is None:
        return to_sign_in(request)
    if user.role is not Role.PARTNER:
        return page(
            request,
            "problem.html",
            user,
            403,
            title="Not allowed",
            detail="only a partner submits proposals",
            rule=None,
        )
    chosen = Category(category) if category in {c.value for c in Category} else None
    return await _proposal_page(request, user, chosen)


@router.post("/propose", response_class=HTMLResponse)
async def submit_proposal(request: Request) -> Response:
    sent = await _posted(request)
    if isinstance(sent, Response):
        return sent
    user, form_data = sent
    raw = (form_data.get("category") or [""])[-1]
    if raw not in {c.value for c in Category}:
        return await _proposal_page(request, user, None, status_code=422)
    category = Category(raw)
    fields = proposal_fields(category)
    body, unreadable = forms.body_of(fields, form_data)
    body["category"] = category.value
    if "requested_tier" not in body:  # A, C, D keep the tier: the form carries the partner's
        body["requested_tier"] = (form_data.get("requested_tier") or [""])[-1]
    if unreadable:
        shown = forms.Shown(fields, form_data, unreadable, "Some fields could not be read.")
        return await _proposal_page(request, user, category, shown, 422)
    answer = await gateway(request, user).post("/v1/expansions", body)
    if answer.ok:
        return RedirectResponse(f"/console/expansions/{quote(answer.body['id'])}", status_code=303)
    shown = forms.Shown(fields, form_data, answer.errors, answer.detail, answer.rule)
    return await _proposal_page(request, user, category, shown, answer.status)


# --- the inbox and the lists --------------------------------------------------------------


def console_link(api_path: str) -> str:
    """The console's page of what an API path names (`/v1/expansions/x` →
    `/console/expansions/x`), or "" where it has none (a stewardship review's sign-off is sent
    through the API)."""
    parts = api_path.split("/")
    ok = len(parts) == 4 and parts[:2] == ["", "v1"] and parts[2] in KINDS and _id_ok(parts[3])
    return f"/console/{parts[2]}/{parts[3]}" if ok else ""


templates.env.globals["console_link"] = console_link


@router.get("/inbox", response_class=HTMLResponse)
async def inbox(request: Request) -> Response:
    user = await user_of(request)
    if user is None:
        return to_sign_in(request)
    api = gateway(request, user)
    pending = await api.get("/v1/me/pending")
    if not pending.ok:
        return refused(request, user, pending)
    notes = await api.get("/v1/notifications", limit="20")
    return page(
        request,
        "inbox.html",
        user,
        pending=pending.body,
        notifications=notes.body if notes.ok else [],
    )


@router.get("/{kinds}", response_class=HTMLResponse)
async def process_list(
    request: Request,
    kinds: str,
    stage: str = "",
    status: str = "",
    partner_id: str = "",
    after: str = "",
    after_deadline: str = "",
) -> Response:
    user = await user_of(request)
    if user is None:
        return to_sign_in(request)
    if kinds not in LISTED:
        return _not_found(request, user)
    kind = KINDS[kinds]
    params = {
        "stage": stage,
        "status": status,
        "partner_id": partner_id,
        "after": after,
        "after_deadline": after_deadline,
        "order": "deadline",
        "limit": str(PAGE),
    }
    answer = await gateway(request, user).get(f"/v1/{kinds}", **params)
    if not answer.ok:
        return refused(request, user, answer)
    rows = answer.body  # each says whether it is overdue (the API's rule, P-3)
    more = None
    if len(rows) == PAGE:
        last = rows[-1]
        more = urlencode(
            {
                k: v
                for k, v in {
                    "stage": stage,
                    "status": status,
                    "partner_id": partner_id,
                    "after": last["workflow_id"],
                    "after_deadline": last.get("next_deadline") or "",
                }.items()
                if v
            }
        )
    return page(
        request,
        "list.html",
        user,
        kinds=kinds,
        kind=kind,
        rows=rows,
        more=more,
        stages=STAGES[kind],
        statuses=[s.value for s in ProcessStatus],
        filters={"stage": stage, "status": status, "partner_id": partner_id},
    )


# --- a case: its page, its decision record, and its forms ---------------------------------


async def _case(
    request: Request,
    user: User,
    kind: ProcessKind,
    process_id: str,
    shown: dict[str, forms.Shown] | None = None,
    status_code: int = 200,
    done: str = "",
) -> HTMLResponse:
    api = gateway(request, user)
    plural = PLURAL[kind]
    answer = await api.get(f"/v1/{plural}/{quote(process_id, safe='')}")
    if not answer.ok:
        return refused(request, user, answer)
    state = answer.body
    audit = await api.get("/v1/audit", workflow_id=state["workflow_id"], limit="500")
    rows = audit.body if audit.ok else []
    entered: dict[str, str] = {}
    for row in rows:  # the first event in each stage: when the case entered it
        entered.setdefault(row["stage"], row["at"])
    steps_taken = state.get("steps") or {}
    timeline = [
        {
            "label": name.replace("_", " ").capitalize(),
            "current": name == (state.get("step") if kind is REMEDIATION else state["stage"]),
            "at": (steps_taken.get(name) or {}).get("at")
            if kind is REMEDIATION
            else entered.get(name),
        }
        for name in STAGES[kind]
    ]
    role = user.role
    shown = dict(shown or {})
    for form in offered(kind, state, role, user.actor):
        shown.setdefault(form.key, forms.Shown(fields=form.fields(role)))
    return page(
        request,
        "case.html",
        user,
        status_code,
        kind=kind,
        plural=plural,
        state=state,
        audit=rows,
        timeline=timeline,
        meaning=MEANING,
        now_iso=_now_iso(),
        steps={f.key: f for f in STEPS if f.kind is kind},
        shown=shown,
        done=done,
        show_ui=role in (Role.OPS, Role.ADMIN),
    )


@router.get("/{kinds}/{process_id}", response_class=HTMLResponse)
async def case(request: Request, kinds: str, process_id: str, done: str = "") -> Response:
    user = await user_of(request)
    if user is None:
        return to_sign_in(request)
    if kinds not in KINDS or not _id_ok(process_id):
        return _not_found(request, user)
    form = step_form(KINDS[kinds], done) if done else None
    return await _case(request, user, KINDS[kinds], process_id, done=form.title if form else "")


@router.get("/{kinds}/{process_id}/decision-record")
async def decision_record(request: Request, kinds: str, process_id: str) -> Response:
    user = await user_of(request)
    if user is None:
        return to_sign_in(request)
    if kinds not in KINDS or not _id_ok(process_id):
        return _not_found(request, user)
    answer = await gateway(request, user).call(
        "GET", f"/v1/{kinds}/{quote(process_id, safe='')}/decision-record"
    )
    if not answer.ok:
        return refused(request, user, answer)
    return Response(
        json.dumps(answer.body, indent=2, sort_keys=True),
        media_type="application/json",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{kinds[:-1]}-{process_id}.json"',
        },
    )


@router.post("/{kinds}/{process_id}/{path}", response_class=HTMLResponse)
async def take_step(request: Request, kinds: str, process_id: str, path: str) -> Response:
    sent = await _posted(request)
    if isinstance(sent, Response):
        return sent
    user, form_data = sent
    kind = KINDS.get(kinds)
    form = step_form(kind, path) if kind else None
    if kind is None or form is None or not _id_ok(process_id):
        return _not_found(request, user)
    # A role the step is not for sends nothing of its own: the API answers it (403).
    fields = form.fields(user.role) if user.role in form.roles else ()
    body, unreadable = forms.body_of(fields, form_data)
    if unreadable:  # nothing sent: the browser's text is not even JSON
        shown = forms.Shown(fields, form_data, unreadable, "Some fields could not be read.")
        return await _case(request, user, kind, process_id, {form.key: shown}, 422)
    answer = await gateway(request, user).post(
        f"/v1/{kinds}/{quote(process_id, safe='')}/{path}", body
    )
    if answer.ok:
        return RedirectResponse(
            f"/console/{kinds}/{quote(process_id)}?done={form.path}", status_code=303
        )
    shown = forms.Shown(fields, form_data, answer.errors, answer.detail, answer.rule)
    return await _case(request, user, kind, process_id, {form.key: shown}, answer.status)


def install(app: FastAPI) -> None:
    # The stylesheet first: `/console/{kinds}/{id}` would take its path otherwise.
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
