"""The console as tests drive it without a browser: one cookie jar per signed-in actor, forms
posted as a browser posts them (urlencoded, with the page's CSRF token)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.apistack import Api

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@dataclass
class Browserless:
    """One actor in the console: its own cookies, the CSRF token of the last page it read."""

    http: httpx.AsyncClient
    csrf: str = ""
    last: httpx.Response | None = field(default=None, repr=False)

    async def sign_in(self, token: str) -> httpx.Response:
        form = await self.http.get("/console/sign-in")
        nonce = NONCE.search(form.text)
        assert nonce, form.text
        resp = await self.http.post(
            "/console/sign-in",
            data={"nonce": nonce.group(1), "token": token, "next": "/console/inbox"},
        )
        if resp.status_code == 303:
            await self.page("/console/inbox")
        return resp

    async def page(self, path: str) -> httpx.Response:
        resp = await self.http.get(path, follow_redirects=True)
        found = CSRF.search(resp.text)
        if found:
            self.csrf = found.group(1)
        self.last = resp
        return resp

    async def send(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        """Post a form as the page showed it; 303 when the API took it."""
        body = {**data, "csrf": self.csrf} if csrf else dict(data)
        resp = await self.http.post(path, data=body)
        return resp


def actor(api: Api) -> Browserless:
    assert api.transport is not None
    return Browserless(httpx.AsyncClient(transport=api.transport, base_url="http://kwanus"))


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")
