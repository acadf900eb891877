"""Structured logs (issue 23): JSON lines in production, readable lines in `kwanus dev`, each
with the request, partner, workflow and run it was logged in — and no secret, ever: the real
`kwanus api` and `kwanus worker` run a short governance process with webhooks, a console
sign-in and refused credentials, and every line they wrote is read."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from temporalio import activity, workflow
from temporalio.testing import WorkflowEnvironment

from api.deps import CONSOLE_TOKEN
from api.request_id import RequestId
from app.dev import child_env
from kwanus import contract, logs
from kwanus.settings import Settings
from store import repo
from store.db import Database
from store.repo.notifications import new_secret
from store.schemas import TokenCreate
from testdata.factories import partner_body, proposal_body
from tests.apistack import Api, eventually, unique
from tests.conftest import end_runs
from tests.processes import Process, api_up, free_port, polling, product_env
from tests.receiver import Receiver

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def a_token() -> str:
    """A bearer token of the store's shape (store/repo/tokens.py), never issued."""
    return f"kw1.tok_{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"


def written(log_format: str, emit: Callable[[logging.Logger], None]) -> str:
    """What one logger, through the product's handler in `log_format`, writes for `emit`."""
    out = io.StringIO()
    log = logging.getLogger(f"kwanus.test.{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(logs.handler(log_format, out))
    emit(log)
    return out.getvalue()


# --- Formats --------------------------------------------------------------------------------


def test_a_json_line_has_time_level_logger_message_and_its_context() -> None:
    def emit(log: logging.Logger) -> None:
        with logs.scope(request_id="req-1"):
            logs.bind(partner_id="acme")
            log.info("hello %s", "world", extra={"delivery": 7})
        log.warning(  # as the Temporal SDK's workflow logger attaches the run
            "step opened",
            extra={"temporal_workflow": {"workflow_id": "expansion-x", "run_id": "r-1"}},
        )
        log.debug(  # as its activity logger does
            "sent",
            extra={
                "temporal_activity": {
                    "workflow_id": "webhook-1",
                    "workflow_run_id": "r-2",
                    "activity_type": "deliver_webhook",
                    "activity_id": "1",
                }
            },
        )
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")

    lines = [json.loads(line) for line in written("json", emit).splitlines()]
    assert len(lines) == 4
    first, wf, act, failed = lines
    assert ISO_UTC.match(first["time"]), first
    assert first["logger"].startswith("kwanus.test.")
    assert {k: v for k, v in first.items() if k not in ("time", "logger")} == {
        "level": "INFO",
        "message": "hello world",
        "delivery": 7,
        "request_id": "req-1",
        "partner_id": "acme",
    }
    assert (wf["level"], wf["workflow_id"], wf["run_id"]) == ("WARNING", "expansion-x", "r-1")
    assert "temporal_workflow" not in wf  # flattened, not nested
    assert (act["workflow_id"], act["run_id"]) == ("webhook-1", "r-2")
    assert (act["activity_type"], act["activity_id"]) == ("deliver_webhook", "1")
    assert failed["message"] == "failed" and failed["level"] == "ERROR"
    assert failed["exc_info"].startswith("Traceback") and "ValueError: boom" in failed["exc_info"]


def test_a_text_line_is_readable_with_its_context_after_the_message() -> None:
    def emit(log: logging.Logger) -> None:
        with logs.scope(request_id="req-1", partner_id="acme"):
            log.info(
                "recorded %s", "submitted", extra={"temporal_workflow": {"workflow_id": "w-1"}}
            )
        log.info("plain")

    first, plain = written("text", emit).splitlines()
    stamp, rest = first.split(" ", 1)
    assert ISO_UTC.match(stamp)
    assert re.fullmatch(
        r"INFO +kwanus\.test\.\w+: recorded submitted  req=req-1 partner=acme wf=w-1", rest
    )
    assert re.fullmatch(r"\S+ INFO +kwanus\.test\.\w+: plain", plain)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_secrets_of_every_known_shape_are_redacted_wherever_they_are(log_format: str) -> None:
    token, hook, password, session = a_token(), new_secret(), secrets.token_hex(8), "s3ss10n"
    said = [
        f"Authorization: Bearer {token}",
        f"GET /v1/partners?token={token} HTTP/1.1",
        f"GET /v1/partners?t={quote(token, safe='')}&h={quote(hook, safe='')} HTTP/1.1",
        f"{{'authorization': 'Bearer opaque-{password}'}}",
        f"signed with {hook}",
        f"postgresql+psycopg://kwanus:{password}@db:5432/kwanus",
        f"cookie: kwanus_session={session}",
        f"Set-Cookie: __Host-kwanus_session={session}; Path=/",
    ]

    def emit(log: logging.Logger) -> None:
        for text in said:
            log.info("%s", text, extra={"note": text})
        try:
            raise RuntimeError(f"could not reach postgresql://u:{password}@h/db with {hook}")
        except RuntimeError:
            log.exception("in the traceback too")

    out = written(log_format, emit)
    hidden = (token.rsplit(".", 1)[1], hook, hook.removeprefix("whsec_"), password, session)
    for secret in hidden:
        assert secret not in out
        assert quote(secret, safe="") not in out
    assert token.rsplit(".", 1)[0] + ".[redacted]" in out  # the token's id still names it
    assert "whsec_[redacted]" in out and "kwanus:[redacted]@db" in out
    # Prose is not taken for a credential.
    assert logs.redact("the bearer token is unknown, revoked or expired") == (
        "the bearer token is unknown, revoked or expired"
    )


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The process's logging as it was, after a test that configures it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    others = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", *logs.QUIET)
    }
    flags = (workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message)
    hook = sys.excepthook
    yield
    sys.excepthook = hook
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (was, its) in others.items():
        logging.getLogger(name).setLevel(was)
        logging.getLogger(name).handlers[:] = its
    workflow.logger.workflow_info_on_message, activity.logger.activity_info_on_message = flags


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_configure_sends_every_logger_through_one_handler(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(Settings(log_format=log_format, log_level="DEBUG"))
    root = logging.getLogger()
    [handler] = root.handlers
    formatter = logs.JsonFormatter if log_format == "json" else logs.TextFormatter
    assert isinstance(handler.formatter, formatter)
    assert any(isinstance(f, logs.ContextFilter) for f in handler.filters)
    assert root.level == logging.DEBUG
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    # SQL parameters and request URLs stay out even at DEBUG.
    assert logging.getLogger("sqlalchemy.engine").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert not workflow.logger.workflow_info_on_message
    # A warning and a crash are lines in the format too, not Python's raw text.
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated knob", UserWarning, stacklevel=1)
    try:
        raise RuntimeError(f"crashed with {a_token()}")
    except RuntimeError as exc:
        sys.excepthook(RuntimeError, exc, exc.__traceback__)
    written_lines = capsys.readouterr().err.splitlines()
    if log_format == "json":
        lines = [json.loads(line) for line in written_lines if line.startswith("{")]
        assert [(x["logger"], x["level"]) for x in lines] == [
            ("py.warnings", "WARNING"),
            ("kwanus", "CRITICAL"),
        ], written_lines
        assert "RuntimeError: crashed with kw1.tok_" in lines[1]["exc_info"]
        assert ".[redacted]" in lines[1]["exc_info"]
    else:
        assert any("WARNING py.warnings:" in line for line in written_lines), written_lines
        assert any("CRITICAL kwanus: uncaught exception" in line for line in written_lines)


def test_kwanus_dev_has_its_children_log_text_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KWANUS_LOG_FORMAT", raising=False)
    assert child_env(Settings(state_dir=tmp_path))["KWANUS_LOG_FORMAT"] == "text"
    monkeypatch.setenv("KWANUS_LOG_FORMAT", "json")
    assert child_env(Settings(state_dir=tmp_path))["KWANUS_LOG_FORMAT"] == "json"
    assert Settings().log_format == "json"  # production's default


# --- The request id -------------------------------------------------------------------------


async def _seen_by_the_app(
    headers: dict[str, str | bytes], *, nested: bool = False
) -> tuple[str, str]:
    """(the X-Request-ID answered, the request id the app's log context had)."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(logs.current().get("request_id", ""))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guarded = RequestId(app)

    async def as_console(scope: Any, receive: Any, send: Any) -> None:
        # As api.console.gateway calls the app: the scope names the session's token.
        await guarded({**scope, CONSOLE_TOKEN: "tok"}, receive, send)

    transport = httpx.ASGITransport(app=as_console if nested else guarded)
    async with httpx.AsyncClient(transport=transport, base_url="http://kwanus") as http:
        if nested:  # the console's in-process call, inside its page's request
            with logs.scope(request_id="page-request"):
                resp = await http.get("/", headers=headers)
        else:
            resp = await http.get("/", headers=headers)
    return resp.headers["x-request-id"], seen[0]


async def test_a_sane_request_id_is_kept_in_the_logs_and_the_answer() -> None:
    for given in ("abc-123", "7f3e.trace_id", "A" * 128):
        assert await _seen_by_the_app({"X-Request-ID": given}) == (given, given)


@pytest.mark.parametrize(
    "given",
    ["", "A" * 129, "two words", "id\rinjected: yes", "a/b", "x;y", "ünï".encode(), "{json}"],
)
async def test_any_other_request_id_is_replaced_by_a_new_one(given: str | bytes) -> None:
    answered, logged = await _seen_by_the_app({"X-Request-ID": given})
    assert answered == logged and re.fullmatch(r"[0-9a-f]{32}", answered)


async def test_a_request_without_an_id_gets_a_new_one_each_time() -> None:
    first, _ = await _seen_by_the_app({})
    second, _ = await _seen_by_the_app({})
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


async def test_the_consoles_in_process_call_keeps_its_pages_request_id() -> None:
    assert await _seen_by_the_app({"X-Request-ID": "other"}, nested=True) == (
        "page-request",
        "page-request",
    )


async def test_the_api_answers_with_the_request_id_refused_or_not(api: Api) -> None:
    ok = await api.http.get("/healthz", headers={"X-Request-ID": "probe-1"})
    assert ok.headers["x-request-id"] == "probe-1"
    refused = await api.http.get("/v1/partners", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["x-request-id"])
    listed = await api.http.get("/v1/partners", headers={**api.admin, "X-Request-ID": "r.2"})
    assert listed.status_code == 200 and listed.headers["x-request-id"] == "r.2"


# --- A full run -----------------------------------------------------------------------------


def _with_a_password(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL with a password in it (the test server trusts loopback, so one is made
    up when the URL has none) and that password: it must never be logged. SQLite: no
    password."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url, None
    if parsed.password:
        return url, str(parsed.password)
    password = f"pw{secrets.token_hex(10)}"
    with_pw = parsed.set(password=password).render_as_string(hide_password=False)
    engine = sa.create_engine(with_pw)
    try:
        with engine.connect():
            return with_pw, password
    except sa.exc.OperationalError:  # the server checks passwords: none to make up
        return url, None
    finally:
        engine.dispose()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
async def test_a_full_run_logs_json_lines_with_their_context_and_no_secret(
    dev_env: WorkflowEnvironment,
    db: Database,
    tmp_path: Path,
    level: str,
    request: pytest.FixtureRequest,
) -> None:
    url, db_password = _with_a_password(db.url)
    with db.session() as session:
        admin_token = repo.create_token(session=session, token=TokenCreate(role="admin")).token
    port = free_port()
    env = product_env(
        dev_env,
        url,
        tmp_path,
        KWANUS_API_PORT=str(port),
        KWANUS_WEBHOOKS_ALLOW_PRIVATE="true",
        KWANUS_CONSOLE_SECURE_COOKIE="false",
        KWANUS_LOG_LEVEL=level,
    )
    worker = Process("worker", env, tmp_path / "worker.log")
    api = Process("api", env, tmp_path / "api.log")
    tsc_hook, acme_hook = Receiver(), Receiver(answers=[503])  # the partner's first: refused
    pid, eid, rid = unique("logs"), unique("logs"), unique("logs")
    secrets_seen: dict[str, str] = {"admin token": admin_token}
    if db_password:
        secrets_seen["database password"] = db_password
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            await api_up(http, worker, api)
            await polling(worker)

            admin = {"Authorization": f"Bearer {admin_token}"}
            resp = await http.post("/v1/partners", json=partner_body(pid), headers=admin)
            assert resp.status_code == 201, resp.text
            resp = await http.post(
                "/v1/tokens", json={"role": "partner", "partner_id": pid}, headers=admin
            )
            secrets_seen["partner token"] = resp.json()["token"]
            acme = {"Authorization": f"Bearer {secrets_seen['partner token']}"}

            # Webhooks: a body's (its step.opened is delivered in this run) and the partner's,
            # whose secret is rotated — both secrets of the rotation sign its deliveries.
            hook = {"url": tsc_hook.url, "body": "TSC"}
            resp = await http.post("/v1/webhooks", json=hook, headers=admin)
            assert resp.status_code == 201, resp.text
            secrets_seen["TSC's webhook secret"] = resp.json()["secret"]
            resp = await http.post("/v1/webhooks", json={"url": acme_hook.url}, headers=acme)
            assert resp.status_code == 201, resp.text
            secrets_seen["the partner's webhook secret"] = resp.json()["secret"]
            rotate = f"/v1/webhooks/{resp.json()['id']}/rotate-secret"
            resp = await http.post(rotate, headers=acme)
            assert resp.status_code == 200, resp.text
            secrets_seen["the partner's rotated webhook secret"] = resp.json()["secret"]

            # Refused credentials, and a token where none belongs: in the query string, which
            # the access log prints.
            wrong = a_token()
            secrets_seen["a wrong token"] = wrong
            for bearer in (wrong, f"opaque-{secrets.token_hex(12)}"):
                resp = await http.get("/v1/partners", headers={"Authorization": f"Bearer {bearer}"})
                assert resp.status_code == 401, resp.text
            resp = await http.get("/v1/partners", params={"token": admin_token})
            assert resp.status_code in (401, 422), resp.text

            # The console: a sign-in with the admin token, its session cookie, a page.
            form = await http.get("/console/sign-in")
            nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
            assert nonce, form.text
            secrets_seen["console sign-in nonce"] = http.cookies["kwanus_signin"]
            signed = await http.post(
                "/console/sign-in", data={"nonce": nonce[1], "token": admin_token}
            )
            assert signed.status_code == 303, signed.text
            secrets_seen["console session"] = http.cookies["kwanus_session"]
            inbox = await http.get("/console/inbox", headers={"X-Request-ID": "console-page-1"})
            assert inbox.status_code == 200 and inbox.headers["x-request-id"] == "console-page-1"
            http.cookies.clear()

            # A governance process: the partner submits; TSC's review opens and is delivered.
            resp = await http.post(
                "/v1/expansions",
                json=proposal_body(id=eid),
                headers={**acme, "X-Request-ID": "submit-1"},
            )
            assert resp.status_code == 202, resp.text
            assert resp.headers["x-request-id"] == "submit-1"
            assert await eventually(lambda: _now(bool(tsc_hook.of_type("step.opened"))), 30)
            # SCO reports a violation: the partner's remediation opens; the partner hears of it.
            resp = await http.post("/v1/tokens", json={"role": "SCO"}, headers=admin)
            secrets_seen["SCO's token"] = sco_token = resp.json()["token"]
            sco = {"Authorization": f"Bearer {sco_token}"}
            violation = {"id": rid, "kind": "data_leak", "severity": "severe", "description": "x"}
            resp = await http.post(f"/v1/partners/{pid}/violations", json=violation, headers=sco)
            assert resp.status_code == 202, resp.text
            assert await eventually(lambda: _now(len(acme_hook.requests) >= 2), 30)

            def attempts() -> list[dict[str, Any]]:
                return [
                    json.loads(line)
                    for line in worker.text().splitlines()
                    if "webhook delivery" in line
                ]

            assert await eventually(lambda: _now(len(attempts()) >= 3), 15)
        runs = [contract.EXPANSION.workflow_id(eid), contract.REMEDIATION.workflow_id(rid)]
        # The refused delivery waits for its retry: ended here.
        retrying = [a["workflow_id"] for a in attempts() if "answered 503" in a["message"]]
        assert len(retrying) == 1, attempts()
        await end_runs(dev_env.client, [*runs, *retrying], request.node.name)
    finally:
        api.stop()
        worker.stop()
        tsc_hook.close()
        acme_hook.close()

    lines: list[dict[str, Any]] = []
    for proc in (api, worker):
        for raw in proc.text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                pytest.fail(f"{proc.log.name}: not a JSON line: {raw!r}")
            assert {"time", "level", "logger", "message"} <= line.keys(), raw
            assert ISO_UTC.match(line["time"]), raw
            lines.append(line)

    whole = api.text() + worker.text()
    for what, secret in secrets_seen.items():
        assert secret not in whole, f"{what} is in the logs"
        # A token's secret part, a webhook secret's key, a cookie's value: not even alone.
        assert secret.rsplit(".", 1)[-1].removeprefix("whsec_") not in whole, what

    def of(logger: str) -> list[dict[str, Any]]:
        return [line for line in lines if line["logger"] == logger]

    # The API's lines: uvicorn's access log through the same handler, each request with its id,
    # a partner's with its partner; the id the caller chose is the one logged.
    access = of("uvicorn.access")
    assert access and all(re.fullmatch(r"[\w.-]{1,128}", a.get("request_id", "")) for a in access)
    [submit] = [a for a in access if a["request_id"] == "submit-1"]
    assert "POST /v1/expansions" in submit["message"] and submit["partner_id"] == pid
    assert any(a["request_id"] == "console-page-1" for a in access)
    assert "kw1." in whole and ".[redacted]" in whole  # the token in the query, redacted
    # The workflows' lines: their id, run and partner.
    for run in runs:
        recorded = [w for w in of("temporalio.workflow") if w.get("workflow_id") == run]
        assert recorded, (run, [line["message"] for line in lines])
        assert all(w.get("run_id") and w.get("partner_id") == pid for w in recorded), recorded
        assert "'run_id'" not in recorded[0]["message"]  # the run is in fields, not the text
    # The activities' lines: the delivery's workflow, run, activity and the receiver's partner
    # (TSC is a body: none); lines of the libraries an activity calls carry them too.
    delivered = of("kwanus.webhooks")
    assert delivered and all(d.get("workflow_id", "").startswith("webhook-") for d in delivered)
    assert all(d.get("run_id") and d.get("activity_type") == "deliver_webhook" for d in delivered)
    assert {d.get("partner_id") for d in delivered} == {None, pid}, delivered
    if level == "DEBUG":
        sent = [h for h in lines if h["logger"].startswith("httpcore") and h.get("activity_id")]
        assert sent and all(h["workflow_id"].startswith("webhook-") for h in sent)
        # The SDK's own line on the refused attempt (DEBUG: a receiver's failure is benign),
        # its traceback formatted in the line.
        [failed] = [f for f in of("temporalio.activity") if "exc_info" in f]
        assert failed["workflow_id"] == retrying[0] and "answered 503" in failed["exc_info"]


async def _now(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
