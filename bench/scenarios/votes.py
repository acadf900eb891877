"""Scenario 3: POST …/votes latency beside a bare `execute_update` of the same vote, on twin
expansions brought to the vote on each side."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.expansion import VOTE, api_to_votes, bare_to_votes
from bench.harness import BenchError, Harness
from bench.measure import Row, fmt_ms, pct
from kwanus import contract
from kwanus.models.common import Act
from kwanus.models.expansion import ExpansionStatus
from policy.vocabulary import Body
from policy.vote import Vote


async def run(h: Harness) -> None:
    m = h.args.votes
    off = h.args.proposals
    h.log(f"votes: {m} expansions each side brought to the vote")
    await asyncio.gather(
        *(api_to_votes(h, off + i, f"api-vote-{i}") for i in range(m)),
        *(bare_to_votes(h, off + i, f"bare-vote-{i}") for i in range(m)),
    )
    await h.quiet_worker()
    ours: list[float] = []
    bare: list[float] = []

    async def alternated() -> None:
        # Alternated, one at a time: the same vote (same body, same position) on a twin
        # expansion, so both sides see the same server load and the same workflow state.
        for i in range(m):
            handle = h.client.get_workflow_handle(contract.expansion_workflow_id(f"bare-vote-{i}"))
            for body in Body:
                t0 = time.perf_counter()
                resp = await h.http.post(
                    f"/v1/expansions/api-vote-{i}/votes",
                    json=VOTE,
                    headers=h.headers[body.value],
                )
                ours.append(time.perf_counter() - t0)
                if resp.status_code != 200:
                    raise BenchError(f"vote api-vote-{i}: {resp.status_code} {resp.text}")
                act = Act[Any](actor=h.actors[body.value], body=Vote.model_validate(VOTE))
                t0 = time.perf_counter()
                state = await handle.execute_update("vote", act, result_type=ExpansionStatus)
                bare.append(time.perf_counter() - t0)
                if resp.json()["decision"] is not None or state.decision is not None:
                    break

    await h.profiled("votes (alternated)", alternated)
    p50, b50 = pct(ours, 50), pct(bare, 50)
    p99, b99 = pct(ours, 99), pct(bare, 99)
    h.rows.append(
        Row(
            f"3. vote latency p50 ({len(ours)} votes)",
            fmt_ms(p50),
            fmt_ms(b50),
            f"{p50 / b50:.2f}x",
            "≤ 1.5x",
            "yes" if p50 <= 1.5 * b50 else "NO",
        )
    )
    h.rows.append(
        Row(
            "3. vote latency p99",
            fmt_ms(p99),
            fmt_ms(b99),
            f"{p99 / b99:.2f}x",
            "—",
            "",
        )
    )
