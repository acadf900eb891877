"""Driving processes over the HTTP API the way users do, through crashes: every call is retried
while the API, Temporal or the worker is down (5xx, timeouts, refused connections), and a human
step is sent until the process's state shows it taken — a step whose first attempt landed
before its answer was lost is refused the second time (409) and found done. Shared by the crash
tests and the soak."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from policy.vocabulary import Body
from testdata.factories import (
    IMPLEMENTATION,
    INTEGRATION_PLAN,
    MIGRATION_DOCS,
    MIGRATION_PLAN,
    OUTCOME_REVIEW,
    RELEASE,
    ROLLOUT,
    review,
)

State = dict[str, Any]
Headers = dict[str, str]


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


class DriveError(Exception):
    """The API answered something no crash explains (a refusal the plan did not expect)."""


class Driver:
    """An HTTP client of one stack's API that rides out crashes."""

    def __init__(self, http: httpx.AsyncClient, admin: Headers, *, patience: float = 300.0):
        self.http = http
        self.admin = admin
        self.patience = patience  # how long one call may keep failing before we give up
        self.retries = 0  # calls repeated because something was down

    async def call(
        self, method: str, url: str, *, headers: Headers, json: Any = None, ok: tuple[int, ...]
    ) -> httpx.Response:
        """One request, repeated while the answer is a 5xx or no answer; `ok` statuses (and
        4xx ones, which the caller judges) are returned."""
        give_up = time.monotonic() + self.patience
        while True:
            try:
                resp = await self.http.request(method, url, headers=headers, json=json)
                if resp.status_code < 500 or resp.status_code in ok:
                    return resp
            except httpx.TransportError:
                pass
            if time.monotonic() > give_up:
                raise DriveError(f"{method} {url}: still failing after {self.patience:.0f} s")
            self.retries += 1
            await asyncio.sleep(0.5)

    async def token(self, role: str, partner_id: str | None = None) -> Headers:
        body = {"role": role, "partner_id": partner_id}
        resp = await self.call("POST", "/v1/tokens", headers=self.admin, json=body, ok=(201,))
        if resp.status_code != 201:
            raise DriveError(f"token {role}: {resp.status_code} {resp.text}")
        return bearer(str(resp.json()["token"]))

    async def bodies(self) -> dict[Body, Headers]:
        return {b: await self.token(b.value) for b in Body}

    async def partner(self, body: dict[str, Any]) -> Headers:
        """Register a partner (again is fine) and return a token of it."""
        resp = await self.call("POST", "/v1/partners", headers=self.admin, json=body, ok=(201,))
        if resp.status_code not in (201, 409):
            raise DriveError(f"partner {body['id']}: {resp.status_code} {resp.text}")
        return await self.token("partner", str(body["id"]))

    async def put_policy(self, content: dict[str, Any]) -> int:
        resp = await self.call("PUT", "/v1/policy", headers=self.admin, json=content, ok=(200,))
        if resp.status_code != 200:
            raise DriveError(f"policy: {resp.status_code} {resp.text}")
        return int(resp.json()["version"])

    async def start(self, kind: str, body: dict[str, Any], headers: Headers) -> str:
        """Start an expansion or a migration (client-chosen id: a retry is the same process)."""
        resp = await self.call("POST", f"/v1/{kind}", headers=headers, json=body, ok=(202,))
        if resp.status_code != 202:
            raise DriveError(f"start {kind} {body.get('id')}: {resp.status_code} {resp.text}")
        return str(resp.json()["workflow_id"])

    async def state(self, kind: str, pid: str, headers: Headers) -> State | None:
        """The live state (the store's copy while no worker answers); None before the first
        event is anywhere to be read."""
        resp = await self.call("GET", f"/v1/{kind}/{pid}", headers=headers, ok=(200,))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise DriveError(f"GET {kind}/{pid}: {resp.status_code} {resp.text}")
        data: State = resp.json()
        return data

    async def until(
        self,
        kind: str,
        pid: str,
        headers: Headers,
        check: Callable[[State], bool],
        *,
        within: float = 120.0,
        what: str = "",
    ) -> State:
        give_up = time.monotonic() + within
        last: State | None = None
        while True:
            last = await self.state(kind, pid, headers)
            if last is not None and check(last):
                return last
            if time.monotonic() > give_up:
                brief = {k: last.get(k) for k in ("stage", "status", "step")} if last else None
                raise DriveError(
                    f"{kind}/{pid}: not {what or 'there'} within {within:.0f} s: {brief}"
                )
            await asyncio.sleep(0.3)

    async def step(
        self,
        kind: str,
        pid: str,
        action: str,
        body: dict[str, Any],
        headers: Headers,
        *,
        awaited: Callable[[State], bool],
        done: Callable[[State], bool],
        within: float = 180.0,
    ) -> State:
        """Send one human step until the state shows it done. It is sent only while awaited;
        a 409 is re-judged on the state (an earlier attempt may have landed), and so is a 202
        (taken; the process not at rest within the API's wait, P-8)."""
        give_up = time.monotonic() + within
        while True:
            state = await self.state(kind, pid, headers)
            if state is not None and done(state):
                return state
            if state is not None and awaited(state):
                url = f"/v1/{kind}/{pid}/{action}"
                resp = await self.call("POST", url, headers=headers, json=body, ok=(200,))
                if resp.status_code == 200 and done(resp.json()):
                    return dict(resp.json())
                if resp.status_code not in (200, 202, 409):
                    raise DriveError(f"{url}: {resp.status_code} {resp.text}")
            if time.monotonic() > give_up:
                brief = {k: state.get(k) for k in ("stage", "status", "step")} if state else None
                raise DriveError(f"{kind}/{pid}: {action} not taken within {within:.0f} s: {brief}")
            await asyncio.sleep(0.3)


# --- the expansion's steps, as its parties take them ----------------------------------------


def at_step(step: str) -> Callable[[State], bool]:
    return lambda s: s["status"] == "active" and s["step"] == step


async def review_all(d: Driver, eid: str, bodies: dict[Body, Headers]) -> None:
    for body, headers in bodies.items():
        await d.step(
            "expansions",
            eid,
            "reviews",
            review(body),
            headers,
            awaited=at_step("reviews"),
            done=lambda s, b=body.value: b in s["reviews"],  # type: ignore[misc]
        )


async def vote_all(d: Driver, eid: str, bodies: dict[Body, Headers], decision: str) -> State:
    """Each body votes `decision` until the vote is decided (later votes are not awaited)."""
    state: State = {}
    for body, headers in bodies.items():
        state = await d.step(
            "expansions",
            eid,
            "votes",
            {"decision": decision, "rationale": "soak"},
            headers,
            awaited=at_step("votes"),
            done=lambda s, b=body.value: b in s["votes"] or s["decision"] is not None,  # type: ignore[misc]
        )
        if state["decision"] is not None:
            break
    return state


async def decided(
    d: Driver, eid: str, partner: Headers, bodies: dict[Body, Headers], decision: str = "approve"
) -> State:
    """Every body reviews, then votes `decision`: the state once the vote is decided."""
    await review_all(d, eid, bodies)
    await vote_all(d, eid, bodies, decision)
    return await d.until(
        "expansions", eid, partner, lambda s: s["decision"] is not None, what="decided"
    )


async def integrate_and_release(
    d: Driver, eid: str, partner: Headers, release: dict[str, Any] | None = RELEASE
) -> State:
    """The integration plan, the implementation and (unless `release` is None) the release."""
    steps = [
        ("integration-plan", "integration_plan", INTEGRATION_PLAN),
        ("implementation", "implementation", IMPLEMENTATION),
    ]
    if release is not None:
        steps.append(("release", "release", release))
    for action, step, body in steps:
        state = await d.step(
            "expansions",
            eid,
            action,
            body,
            partner,
            awaited=at_step(step),
            done=lambda s, f=step: s[f] is not None,  # type: ignore[misc]
        )
    return state


async def outcome_review(d: Driver, eid: str, cgb: Headers) -> State:
    return await d.step(
        "expansions",
        eid,
        "outcome-review",
        OUTCOME_REVIEW,
        cgb,
        awaited=at_step("outcome_review"),
        done=lambda s: s["outcome_review"] is not None,
        within=300.0,
    )


async def shipped_manifest(d: Driver, mid: str, partner: Headers) -> dict[str, Any]:
    """What a partner that does as the migration asks ships (M-8.1): its registered manifest
    moved to the migration's target versions, requesting only what it will hold — what the
    target tier allows — with the workflows that keep all they ask for."""

    async def get(url: str) -> Any:
        resp = await d.call("GET", url, headers=partner, ok=(200,))
        if resp.status_code != 200:
            raise DriveError(f"GET {url}: {resp.status_code} {resp.text}")
        return resp.json()

    migration = await get(f"/v1/migrations/{mid}")
    pid, target = migration["partner_id"], migration["target"]
    registered = await get(f"/v1/partners/{pid}/manifest")
    access = await get(f"/v1/partners/{pid}/access")
    out = dict(registered["manifest"])
    out.update({k: target[k] for k in ("os_version", "api_version") if k in target})
    runtime = dict(out["runtime"])
    runtime.update(
        {k: target[f"runtime_{k}"] for k in ("name", "version") if f"runtime_{k}" in target}
    )
    out["runtime"] = runtime
    allowed = set(access["permissions"])
    if "tier" in target:
        policy = await get("/v1/policy")
        tier = next((t for t in policy["tiers"] if t["name"] == target["tier"]), None)
        if tier is not None:
            allowed = {p for p in allowed if p.split(":", 1)[1] in tier["permission_actions"]}
    out["permissions"] = sorted(p for p in out["permissions"] if p in allowed)
    out["workflows"] = [
        w for w in out["workflows"] if set(w["permissions"]) <= set(out["permissions"])
    ]
    return out


async def migration_steps(
    d: Driver,
    mid: str,
    partner: Headers,
    *,
    rollout: dict[str, Any] | None = ROLLOUT,
    manifest: dict[str, Any] | None = None,
) -> State:
    """Plan, implementation (with `manifest`, or by default what `shipped_manifest` says) ,
    documentation and (unless `rollout` is None) the rollout: the partner's whole part (M-4.2
    to M-4.5)."""
    shipped = manifest if manifest is not None else await shipped_manifest(d, mid, partner)
    steps = [
        ("plan", MIGRATION_PLAN),
        ("implementation", {**IMPLEMENTATION, "manifest": shipped}),
        ("documentation", MIGRATION_DOCS),
    ]
    if rollout is not None:
        steps.append(("rollout", rollout))
    for action, body in steps:
        state = await d.step(
            "migrations",
            mid,
            action,
            body,
            partner,
            awaited=at_step(action),
            done=lambda s, f=action: s[f] is not None,  # type: ignore[misc]
        )
    return state
