"""Scenario 5: the lists people read — GET /v1/migrations by partner and by stage (keyset pages),
GET /v1/me/pending for a body and for a partner — beside the bare visibility list each
answers, on the fan-out's migrations and an inbox of expansions awaiting every review."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from sqlalchemy import func, text
from sqlmodel import select

from bench.expansion import bare_submit
from bench.harness import BenchError, Harness
from bench.measure import Row, fmt_ms, pct
from store.tables import Process


async def run(h: Harness) -> None:
    n = h.args.samples
    inbox = h.args.inbox
    off = h.args.proposals + h.args.votes
    h.log(f"reads: {inbox} expansions awaiting the bodies' reviews, {n} samples per read")
    # A body's inbox: expansions in Evaluation awaiting all four reviews.
    await asyncio.gather(*(bare_submit(h, off + i, f"bare-inbox-{i}") for i in range(inbox)))
    with h.db.session() as session:
        total = session.exec(select(func.count()).select_from(Process)).one()
        pend = session.execute(text("select count(*) from pending_action")).scalar_one()
    h.notes.append(f"reads ran with {total} processes and {pend} pending actions stored")
    await h.quiet_worker()
    partner = f"fo-{h.args.partners // 2:05d}"
    pages: dict[str, str | None] = {"after": None}

    def stage_params() -> dict[str, str]:
        params = {"stage": "Plan", "limit": "100"}
        if pages["after"]:
            params["after"] = str(pages["after"])
        return params

    async def walk_stage(resp: httpx.Response) -> None:
        items = resp.json()
        pages["after"] = items[-1]["workflow_id"] if len(items) == 100 else None

    reads: list[tuple[str, str, dict[str, Any], str, str]] = [
        (
            f"GET /v1/migrations?partner_id (of {h.args.partners})",
            "/v1/migrations",
            {"partner_id": partner},
            "TSC",
            f"KwanusProcess='migration' AND KwanusPartnerId='{partner}'",
        ),
        (
            "GET /v1/migrations?stage=Plan, keyset pages of 100",
            "/v1/migrations",
            {},
            "TSC",
            "KwanusProcess='migration' AND KwanusStage='Plan'",
        ),
        (
            "GET /v1/me/pending (body TSC)",
            "/v1/me/pending",
            {},
            "TSC",
            "KwanusProcess='expansion' AND KwanusStage='Evaluation' AND ExecutionStatus='Running'",
        ),
        (
            "GET /v1/me/pending (a partner)",
            "/v1/me/pending",
            {},
            "fo-00001",
            "KwanusPartnerId='fo-00001' AND ExecutionStatus='Running'",
        ),
    ]
    for title, url, params, who, query in reads:
        ours: list[float] = []
        bare: list[float] = []
        staged = "stage" in title

        async def sample(
            url: str = url,
            params: dict[str, Any] = params,
            who: str = who,
            query: str = query,
            staged: bool = staged,
            ours: list[float] = ours,
            bare: list[float] = bare,
        ) -> None:
            for _ in range(n):
                t0 = time.perf_counter()
                resp = await h.http.get(
                    url, params=stage_params() if staged else params, headers=h.headers[who]
                )
                ours.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    raise BenchError(f"GET {url}: {resp.status_code} {resp.text}")
                if staged:
                    await walk_stage(resp)
            # The baseline after ours, not interleaved: a visibility list of 100 keeps the
            # server busy past its answer, which would land on our next request.
            await h.quiet(h.procs.server.pid if h.procs.server else None, within=20)
            for _ in range(n):
                t0 = time.perf_counter()
                [_ async for _ in h.client.list_workflows(query, limit=100, page_size=100)]
                bare.append(time.perf_counter() - t0)

        await h.profiled(f"reads: {title}", sample)
        p99, b99 = pct(ours, 99), pct(bare, 99)
        h.rows.append(
            Row(
                f"5. {title} p99 (p50 {fmt_ms(pct(ours, 50))})",
                fmt_ms(p99),
                fmt_ms(b99),
                f"{p99 / b99:.2f}x",
                "p99 ≤ 50 ms",
                "yes" if p99 <= 0.050 else "NO",
            )
        )

    # The access view a gateway reads on every session (issue 17): from the store alone, with
    # no Temporal call to set beside it — its target is absolute.
    ours = []

    async def access(ours: list[float] = ours) -> None:
        for i in range(n):
            pid = f"fo-{(i * 7919) % h.args.partners:05d}"
            t0 = time.perf_counter()
            resp = await h.http.get(f"/v1/partners/{pid}/access", headers=h.headers["TSC"])
            ours.append(time.perf_counter() - t0)
            if resp.status_code != 200:
                raise BenchError(f"GET access: {resp.status_code} {resp.text}")

    await h.profiled("reads: GET /v1/partners/{id}/access", access)
    p99 = pct(ours, 99)
    h.rows.append(
        Row(
            f"5. GET /v1/partners/{{id}}/access (of {h.args.partners}) p99 "
            f"(p50 {fmt_ms(pct(ours, 50))})",
            fmt_ms(p99),
            "—",
            "—",
            "p99 ≤ 20 ms",
            "yes" if p99 <= 0.020 else "NO",
        )
    )
