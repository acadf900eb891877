"""The console's only way to the product: the API itself, called in process as the signed-in
user. Every read and every step goes through the same route, dependencies, rules, Updates and
audit as a `curl` with that user's token would — the console adds no rule and no second way to
change state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import CONSOLE_TOKEN


@dataclass(frozen=True)
class Answer:
    """What the API answered: its status, JSON body (a problem+json on refusal) and headers."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def detail(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("title") or "")
        return ""

    @property
    def errors(self) -> dict[str, str]:
        """A refusal's field → message (422), as the API names the fields."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return {str(k): str(v) for k, v in errors.items()} if isinstance(errors, dict) else {}

    @property
    def rule(self) -> str | None:
        rule = self.body.get("rule") if isinstance(self.body, dict) else None
        return str(rule) if rule else None


class Gateway:
    """Calls `app` (the API's ASGI app, its middleware included) as the token `token_id`."""

    def __init__(self, app: ASGIApp, token_id: str, client: tuple[str, int]) -> None:
        async def as_user(scope: Scope, receive: Receive, send: Send) -> None:
            await app({**scope, CONSOLE_TOKEN: token_id}, receive, send)

        self._transport = httpx.ASGITransport(
            app=as_user, raise_app_exceptions=False, client=client
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer:
        async with httpx.AsyncClient(
            transport=self._transport, base_url="http://console.internal"
        ) as http:
            resp = await http.request(method, path, json=json, params=params)
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        return Answer(status=resp.status_code, body=body, headers=dict(resp.headers))

    async def get(self, path: str, **params: str) -> Answer:
        return await self.call("GET", path, params={k: v for k, v in params.items() if v})

    async def post(self, path: str, body: Any) -> Answer:
        return await self.call("POST", path, json=body)
