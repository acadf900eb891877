"""Resource limits (OWASP API4): a request-body cap (413, so nothing oversized ever reaches
Temporal, whose payload limit is 2 MB) and a per-credential rate limit (429 with Retry-After),
both pure ASGI middleware applied before any route runs; and the buckets that throttle failed
authentications per client address (`Buckets`, used by the API's and the console's sign-in).
Every limit is per API process."""

from __future__ import annotations

import hashlib
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
    titles = {
        405: "Method Not Allowed",
        413: "Content Too Large",
        422: "Unprocessable Content",
        429: "Too Many Requests",
    }
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


# The methods HTTP defines for resources (RFC 9110) and PATCH: anything else is refused before
# it is measured, so a made-up method cannot add a series to the HTTP metrics (each `method`
# label value is one) or reach a route.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class KnownMethods:
    """405 for a request whose method is not one of METHODS (the outermost middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in METHODS:
            detail = f"method {scope['method'][:20]!r} is not supported"
            await _problem(send, 405, detail, {"allow": ", ".join(sorted(METHODS))})
            return
        await self.app(scope, receive, send)


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
class Buckets:
    """Token buckets by key: `per_minute` a minute, bursts up to the same number. Full buckets
    are let go once there are many, so made-up keys cannot grow it without bound."""

    per_minute: int
    clock: Callable[[], float] = time.monotonic
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    max_keys: int = 10_000

    def _refilled(self, key: str) -> _Bucket:
        now, rate = self.clock(), self.per_minute / 60.0
        bucket = self.buckets.get(key) or _Bucket(tokens=float(self.per_minute), at=now)
        bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if key not in self.buckets and len(self.buckets) >= self.max_keys:
            self.buckets = {
                k: b
                for k, b in self.buckets.items()
                if b.tokens + (now - b.at) * rate < self.per_minute
            }
        self.buckets[key] = bucket
        return bucket

    def wait(self, key: str) -> int:
        """Seconds until `key` may spend one (0: now), spending nothing."""
        bucket = self._refilled(key)
        return 0 if bucket.tokens >= 1 else math.ceil((1 - bucket.tokens) * 60 / self.per_minute)

    def take(self, key: str) -> int:
        """Spend one for `key`: 0 when there was one, else the seconds to wait (nothing spent)."""
        wait = self.wait(key)
        if wait == 0:
            self.buckets[key].tokens -= 1
        return wait


def bearer_key(scope: Scope) -> str | None:
    """The bucket of a request's credential: the console's in-process call (the token its
    session acts as), or the whole bearer string — never the id a bearer merely claims, so
    no one spends a token's budget without its secret."""
    console = scope.get("kwanus.console.token_id")  # api.deps.CONSOLE_TOKEN
    if isinstance(console, str):
        return f"console:{console}"
    auth = dict(scope.get("headers") or []).get(b"authorization", b"")
    if not auth:
        return None
    return "bearer:" + hashlib.sha256(auth).hexdigest()[:32]


def client_key(scope: Scope) -> str:
    client = scope.get("client") or ("?", 0)
    return f"client:{client[0]}"


class RateLimit:
    """`per_minute` requests a minute per credential (per client address without one), bursts
    up to the same number; 429 with Retry-After beyond."""

    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.limits = Buckets(per_minute)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        wait = self.limits.take(bearer_key(scope) or client_key(scope))
        if wait:
            await _problem(
                send,
                429,
                f"more than {self.limits.per_minute} requests a minute; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
            return
        await self.app(scope, receive, send)
