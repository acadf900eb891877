"""RFC 9457 problem+json errors: `type`, `title`, `status`, `detail`, plus `errors`
(field -> message) for 422 and `rule` (an ID from spec/RULES.md) when a rule refused."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from policy.decisions import Decision

PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        rule: str | None = None,
        errors: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.rule = rule
        self.errors = dict(errors) if errors else None
        self.headers = dict(headers) if headers else None

    @classmethod
    def refused(cls, decision: Decision, detail: str, status: int = 422) -> Problem:
        """422 (or `status`) for a policy decision that refused: every finding by field, the
        rules named."""
        return cls(status, detail, rule=", ".join(decision.rules), errors=decision.errors())


def unauthorized(detail: str = "a valid bearer token is required") -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def not_found(what: str) -> Problem:
    return Problem(404, f"{what} not found")


def problem_response(p: Problem, request: Request) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": p.title,
        "status": p.status,
        "detail": p.detail,
        "instance": request.url.path,
    }
    if p.errors is not None:
        body["errors"] = p.errors
    if p.rule:
        body["rule"] = p.rule
    return JSONResponse(body, status_code=p.status, media_type=PROBLEM, headers=p.headers)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(x) for x in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_problem(exc: RequestValidationError) -> Problem:
    errors: dict[str, str] = {}
    rules: set[str] = set()
    for err in exc.errors():
        field = _field(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid"))
        errors[field] = f"{errors[field]}; {msg}" if field in errors else msg
        ctx = err.get("ctx") or {}
        if isinstance(ctx, dict) and isinstance(ctx.get("rule"), str):
            rules.add(ctx["rule"])
    names = ", ".join(sorted(errors))
    return Problem(
        422,
        f"invalid request: {names}",
        title="Unprocessable Content",
        rule=", ".join(sorted(rules)) or None,
        errors=errors,
    )


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc), request)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem_response(
            Problem(exc.status_code, str(exc.detail), headers=exc.headers), request
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
