"""Structured logs (issue 23): one set-up for every process (`configure`), JSON lines in
production and readable lines in `kwanus dev`, each line carrying the context it was logged in
— the request id and the partner a request acts for (the API), the workflow id, run id and
partner of a workflow or an activity (the worker) — and never a secret.

Context comes from three places, all read when a line is written (`ContextFilter`):
- `scope` / `bind`: fields of the unit of work in a context variable — a request (the API's
  request-id middleware opens it, `current_principal` binds the partner), an activity
  (`LogContext`, a worker interceptor). Every line logged inside it carries them: our
  loggers', the libraries' (httpx, uvicorn's access log), in threads the work hands off to.
- the Temporal SDK's own `workflow.logger` and `activity.logger`, which attach the run's
  details to a record as `temporal_workflow` / `temporal_activity`: flattened here.
- the workflow's `KwanusPartnerId` search attribute, for a workflow's lines (read, never
  written: logging is not a command and changes nothing on replay).

Secrets stay out in three ways: nothing of ours logs settings, headers, bodies or URLs with
credentials; the loggers that would at some level are held at WARNING (`QUIET`); and every
line is redacted for the shapes a secret has (`redact`) as the last step of formatting."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter
from temporalio import activity, workflow
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from kwanus.contract import PARTNER_ID
from kwanus.settings import Settings

# The context fields a line may carry, in the order they are written, with their short names
# in the text format.
FIELDS = {
    "request_id": "req",
    "partner_id": "partner",
    "workflow_id": "wf",
    "run_id": "run",
    "activity_type": "act",
    "activity_id": "act_id",
}
# Loggers held at WARNING whatever the level: at INFO SQLAlchemy logs every statement with its
# parameters (a webhook secret as it is inserted) and httpx every request's URL (a receiver's
# URL may carry its own key in the query). What they would tell is in our own lines.
QUIET = ("sqlalchemy", "httpx")

_context: ContextVar[dict[str, str] | None] = ContextVar("kwanus_log_context", default=None)


@contextmanager
def scope(**fields: str | None) -> Iterator[dict[str, str]]:
    """Log context for one unit of work (a request, an activity): every line logged inside
    carries `fields`, and what `bind` adds — from anywhere inside, a thread it handed work to
    included (the mapping is shared, not copied, with the contexts copied from this one)."""
    ctx = {k: v for k, v in fields.items() if v}
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Add `fields` to the current unit of work's context (nothing outside one)."""
    ctx = _context.get()
    if ctx is not None:
        ctx.update({k: v for k, v in fields.items() if v})


def current() -> Mapping[str, str]:
    """The current unit of work's context fields (empty outside one)."""
    return dict(_context.get() or {})


# --- Secrets --------------------------------------------------------------------------------

_REDACTIONS = (
    # API tokens `kw1.<id>.<secret>` (store/repo/tokens.py): the id is kept, it names the token.
    # Percent-encoded too (`kw1%2E…`, a `+` of a secret as `%2B`): a URL's query prints so.
    (re.compile(r"\b(kw1(?:\.|%2[Ee])[A-Za-z0-9_]+(?:\.|%2[Ee]))[A-Za-z0-9_-]+"), r"\1[redacted]"),
    # Standard Webhooks signing secrets (store/repo/notifications.py).
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=%]+"), "whsec_[redacted]"),
    # A bearer credential (a token's shape: not an English word), and the value of an
    # Authorization or a Cookie header however it is printed (`Authorization: Basic …`,
    # `{'cookie': …}`, `(b'authorization', …)`).
    (re.compile(r"(?i)\b(bearer\s+)(?=\S*[\d._~+/=-])[\w.~+/=-]+"), r"\1[redacted]"),
    (
        re.compile(
            r"(?i)(\b(?:authorization|cookie)(?:\s*[:=]\s*|['\"]\s*[:=,]\s*b?)['\"]?)[^'\"\r\n]+"
        ),
        r"\1[redacted]",
    ),
    # A password in a URL: postgresql+psycopg://user:pw@host/db. The scheme starts where a run
    # of scheme characters starts, not at each word boundary inside one: tried from every `.`
    # of `a.a.a.…` the pattern was quadratic in a request's query (the access line).
    (
        re.compile(r"((?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s/'\"]+@"),
        r"\1[redacted]@",
    ),
    # The console's cookies (session and sign-in nonce), as a header or a repr prints them.
    (
        re.compile(r"((?:__Host-)?kwanus_(?:session|signin)['\"]?\s*[=:]\s*['\"]?)[^\s'\";,)]+"),
        r"\1[redacted]",
    ),
)


def redact(text: str) -> str:
    """`text` with every secret of a known shape replaced by `[redacted]`."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


# --- Records --------------------------------------------------------------------------------


def _workflow_partner() -> str | None:
    """The partner of the workflow this line is logged in, from its search attribute (None
    outside a workflow or without one). A read of the run's info: no command, no side effect."""
    try:
        if workflow.in_workflow():
            return workflow.info().typed_search_attributes.get(PARTNER_ID)
    except Exception:  # a log line must never fail a workflow task
        return None
    return None


def context_of(record: logging.LogRecord) -> dict[str, str]:
    """The context fields of `record`: the Temporal SDK's details of the run it was logged in,
    then the unit of work's (`scope`), then the workflow's partner."""
    found: dict[str, Any] = {}
    wf = getattr(record, "temporal_workflow", None)
    if isinstance(wf, Mapping):
        found.update(workflow_id=wf.get("workflow_id"), run_id=wf.get("run_id"))
    act = getattr(record, "temporal_activity", None)
    if isinstance(act, Mapping):
        found.update(
            workflow_id=act.get("workflow_id"),
            run_id=act.get("workflow_run_id"),
            activity_type=act.get("activity_type"),
            activity_id=act.get("activity_id"),
        )
    found.update(_context.get() or {})
    if isinstance(wf, Mapping) and not found.get("partner_id"):
        found["partner_id"] = _workflow_partner()
    return {k: str(found[k]) for k in FIELDS if found.get(k)}


class ContextFilter(logging.Filter):
    """Sets the context fields (`FIELDS`) on every record the handler writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in context_of(record).items():
            setattr(record, key, value)
        return True


def _time(record: logging.LogRecord) -> str:
    """ISO 8601, UTC, milliseconds: 2025-06-01T12:00:00.123Z."""
    at = datetime.fromtimestamp(record.created, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# What a record holds that is no field of a line: the Temporal SDK's nested details (flattened
# into FIELDS), uvicorn's coloured copy of its message.
_NOT_FIELDS = ("temporal_workflow", "temporal_activity", "workflow_info", "activity_info")


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time, level, logger, message, the context fields, exc_info, and
    any other `extra` a call passed — redacted."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*RESERVED_ATTRS, *_NOT_FIELDS, "color_message", "taskName"],
            json_ensure_ascii=False,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = _time(record)
        super().add_fields(log_data, record, message_dict)

    def jsonify_log_record(self, log_data: dict[str, Any]) -> str:
        """Serialized once (every value becomes JSON), then each string redacted and the line
        serialized again: redacting the serialized line could take the backslash of an escaped
        quote with a secret (`cookie=…\\"`), and the line would be JSON no more."""
        plain = json.loads(super().jsonify_log_record(log_data))
        return json.dumps(_redacted(plain), ensure_ascii=False)


def _redacted(value: Any) -> Any:
    """`value` (parsed JSON) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """A readable line: `time LEVEL logger: message  req=… partner=… wf=… run=…`, a traceback
    on the lines after it — redacted."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{short}={getattr(record, key)}"
            for key, short in FIELDS.items()
            if getattr(record, key, None)
        )
        # The message and the traceback redacted each on its own: a secret's pattern runs to the
        # end of its text, never into the context after it.
        message = redact(record.getMessage())
        line = f"{_time(record)} {record.levelname:<7} {record.name}: {message}"
        if context:
            line += f"  {context}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + redact(record.exc_text)
        if record.stack_info:
            line += "\n" + redact(self.formatStack(record.stack_info))
        return line


def handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """The one handler every line goes through: standard error (or `stream`), the format, the
    context."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    out.addFilter(ContextFilter())
    return out


def configure(settings: Settings) -> None:
    """Every log line of this process — ours, the libraries', uvicorn's (run it with
    `log_config=None`), the Temporal SDK's — through one handler in `settings.log_format`, at
    `settings.log_level`."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(settings.log_format))
    root.setLevel(settings.log_level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        own = logging.getLogger(name)
        own.handlers.clear()
        own.propagate = True
    for name in QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Every line in the format, a warning's and a crash's too (not Python's raw text).
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    # The run's details are fields of the line; the SDK would also append them to the message.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def _uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("kwanus").critical("uncaught exception", exc_info=(kind, value, tb))


# --- The worker -----------------------------------------------------------------------------

# The header a workflow's activities carry its partner in (from the workflow's search
# attribute): an activity's info names its workflow, not the workflow's search attributes.
PARTNER_HEADER = "kwanus-partner-id"


class LogContext(Interceptor):
    """A worker interceptor: each activity runs in a log `scope` of its workflow id, run id,
    type, id and partner, so every line logged while it runs carries them — its own, the
    store's, httpx's; a workflow passes its partner to its activities in a header."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityScope(next)

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        return _PartnerToActivities


class _ActivityScope(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        partner = None
        if PARTNER_HEADER in input.headers:
            try:
                partner = activity.payload_converter().from_payload(
                    input.headers[PARTNER_HEADER], str
                )
            except Exception:  # a header of another shape: the lines go without the partner
                partner = None
        with scope(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            partner_id=partner,
        ):
            return await self.next.execute_activity(input)


class _PartnerToActivities(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_PartnerHeader(outbound))


class _PartnerHeader(WorkflowOutboundInterceptor):
    """Adds the workflow's partner to each activity it schedules. A header is no part of the
    command's identity: replaying a history recorded with or without it is the same."""

    def start_activity(self, input: StartActivityInput) -> workflow.ActivityHandle[Any]:
        partner = workflow.info().typed_search_attributes.get(PARTNER_ID)
        if partner:
            payload = workflow.payload_converter().to_payload(partner)
            input.headers = {**input.headers, PARTNER_HEADER: payload}
        return self.next.start_activity(input)
