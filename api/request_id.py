"""The request id: every request has one — the caller's `X-Request-ID` when it is a sane token,
else a new one — that each log line of the request carries and the answer returns in
`X-Request-ID`, so a caller's report and the logs meet. Pure ASGI middleware, outermost: a
request refused by a limit has its id too."""

from __future__ import annotations

import re
import uuid

from api.deps import CONSOLE_TOKEN
from api.limits import ASGIApp, Message, Receive, Scope, Send
from kwanus import logs

HEADER = b"x-request-id"
# What a caller may choose: bounded, and nothing that could forge a log line or a header.
SANE = re.compile(rb"[A-Za-z0-9._-]{1,128}")


def given(scope: Scope) -> str | None:
    """The caller's request id, if it is a sane token."""
    for name, value in scope.get("headers") or []:
        if name.lower() == HEADER:
            return value.decode("ascii") if SANE.fullmatch(value) else None
    return None


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The console calls this app in process for its page's request: one request, one id.
        # Only that call (its scope names the console's token: no HTTP request can set it)
        # takes the id already in the log context. A request otherwise opens its own scope
        # whatever context it was started in: uvicorn starts a kept-alive connection's next
        # request in the context its reader was last registered in, which may be an earlier
        # request's (one whose body paused and resumed the reading).
        nested = isinstance(scope.get(CONSOLE_TOKEN), str)
        outer = logs.current().get("request_id") if nested else None
        request_id = outer or given(scope) or uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, request_id.encode())]}
            await send(message)

        if outer:
            await self.app(scope, receive, send_with_id)
            return
        with logs.scope(request_id=request_id):
            await self.app(scope, receive, send_with_id)
