"""Resource limits (OWASP API4) applied before any route runs: a request-body cap (413, so
nothing oversized ever reaches Temporal, whose payload limit is 2 MB) and a per-token rate limit
(429 with Retry-After). Both are pure ASGI middleware; the rate limit is per API process."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _problem(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    titles = {413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests"}
    body = json.dumps(
        {"type": "about:blank", "title": titles[status], "status": status, "detail": detail}
    ).encode()
    raw = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _has_nul(body: bytes, scope: Scope) -> bool:
    """A NUL character, raw or as a JSON escape, anywhere in the request: no text store takes
    it (PostgreSQL refuses it outright), so it is refused up front rather than failing later."""
    url = scope.get("raw_path", b"") + b"?" + scope.get("query_string", b"")
    return b"\x00" in body or b"\\u0000" in body or b"%00" in url or b"\x00" in url


class BodyLimit:
    """413 for a body over `max_bytes`: by its Content-Length at once, or counted as it
    streams in (a chunked body is read before the route runs, never more than the cap)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is larger than {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _problem(send, 413, detail, {})
            return
        # No trustworthy length: read the body here (it is small by definition), counting.
        chunks: list[Message] = []
        seen = 0
        while True:
            message = await receive()
            chunks.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await _problem(send, 413, detail, {})
                return
            if not message.get("more_body", False):
                break

        body = b"".join(m.get("body", b"") for m in chunks if m["type"] == "http.request")
        if _has_nul(body, scope):
            await _problem(
                send, 422, "NUL characters are not accepted in any field (nor in the URL)", {}
            )
            return

        async def replay() -> Message:
            return chunks.pop(0) if chunks else await receive()

        await self.app(scope, replay, send)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class RateLimit:
    """A token bucket per bearer token id (per client address without one): `per_minute`
    requests a minute, bursts up to the same number."""

    app: ASGIApp
    per_minute: int
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, _Bucket] = field(default_factory=dict)

    def _key(self, scope: Scope) -> str:
        console = scope.get("kwanus.console.token_id")  # api.deps.CONSOLE_TOKEN
        if isinstance(console, str):
            return f"token:{console}"
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        parts = auth.removeprefix("Bearer ").split(".")
        if len(parts) == 3:
            return f"token:{parts[1]}"
        client = scope.get("client") or ("?", 0)
        return f"client:{client[0]}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        now, rate = self.clock(), self.per_minute / 60.0
        key = self._key(scope)
        bucket = self.buckets.get(key) or _Bucket(tokens=float(self.per_minute), at=now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        self.buckets[key] = bucket
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / rate)
            await _problem(
                send,
                429,
                f"more than {self.per_minute} requests a minute; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
            return
        bucket.tokens -= 1
        await self.app(scope, receive, send)
