"""Performance, side by side with bare Temporal (issue 9, items 1-5): one command starts its own
dev server, worker and API on free loopback ports (`bench.stack.Processes`) plus a bare worker
(`bench.baseline`) on its own task queue, runs each scenario against the same server, and prints
one table — our figure, the bare-Temporal baseline measured in the same run, the ratio and the
target — then a CPU profile of every process per scenario.

    .venv/bin/python -m bench.perf                 # full size: 10,000 partners, …
    .venv/bin/python -m bench.perf --quick         # 500 partners, 10 proposals: a minute or two
    .venv/bin/python -m bench.perf --only votes,reads --partners 2000

Scenarios (bench/RESULTS.md defines each baseline):
  lifecycle  N expansions driven submission → release over HTTP vs the same Temporal calls direct
  observed   the lifecycle over HTTP with metrics and tracing on vs off (rounds off, on, on, off)
  votes      POST …/votes latency vs a bare `execute_update` of the same vote
  fanout     POST /v1/deprecations reaching every partner vs bare `start_workflow` of a trivial one
  parked     the fan-out's migrations parked on their timers: worker RSS, server DB, restart
  reads      GET /v1/migrations (partner, stage), /v1/me/pending vs bare visibility list calls
  ryw        issue 19, read-your-writes: POST /v1/expansions latency, submission → first review
             accepted (409s retried, counted), a review then GET until it shows (stale reads
             counted) vs bare start_workflow / execute_update / query on a trivial workflow

This module is the command; the stack and its bookkeeping are bench/harness.py, the seeding
bench/seed.py, each scenario a module of bench/scenarios/, the printout bench/report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench.harness import Harness
from bench.report import report
from bench.scenarios import fanout, lifecycle, observed, parked, reads, ryw, votes
from kwanus.settings import Settings

SCENARIOS = ("lifecycle", "observed", "votes", "fanout", "parked", "reads", "ryw")


async def run(args: argparse.Namespace) -> int:
    only = set(args.only.split(",")) if args.only else set(SCENARIOS)
    unknown = only - set(SCENARIOS)
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="kwanus-bench-"))
    h = Harness(args, state)
    t0 = time.monotonic()
    try:
        await h.start()
        if "lifecycle" in only:
            await lifecycle.run(h)
        if "observed" in only:
            await observed.run(h)
        if "votes" in only:
            await votes.run(h)
        if only & {"fanout", "parked", "reads"}:
            fanned = await fanout.run(h, with_baseline="fanout" in only)
            if "parked" in only:
                await parked.run(h, fanned)
        if "reads" in only:
            await reads.run(h)
        if "ryw" in only:
            # Last: its expansions stay open awaiting votes, which would change the inbox reads.
            await ryw.run(h)
    finally:
        print(report(args, h.rows, h.profiles, h.notes, time.monotonic() - t0), flush=True)
        h.procs.stop()
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf",
        description="Performance side by side with bare Temporal (issue 9).",
    )
    parser.add_argument("--partners", type=int, default=10_000, help="fan-out and parked size")
    parser.add_argument("--proposals", type=int, default=40, help="lifecycle expansions a side")
    parser.add_argument("--votes", type=int, default=40, help="expansions voted on, a side")
    parser.add_argument("--inbox", type=int, default=40, help="expansions in the bodies' inbox")
    parser.add_argument("--samples", type=int, default=300, help="requests per read")
    parser.add_argument(
        "--submissions", type=int, default=40, help="read-your-writes submissions, a side"
    )
    parser.add_argument(
        "--max-cached",
        type=int,
        default=Settings.model_fields["max_cached_workflows"].default,
        help="both workers' cache (default: the product's)",
    )
    parser.add_argument("--fanout-batch", type=int, default=200, help="KWANUS_FANOUT_BATCH_SIZE")
    parser.add_argument("--timeout", type=float, default=3600, help="fan-out give-up (s)")
    parser.add_argument(
        "--database-url",
        default="",
        help="the app database (an empty one): default SQLite in the state folder; e.g. "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%%3Dbench",
    )
    parser.add_argument("--only", default="", help=f"comma list of {','.join(SCENARIOS)}")
    parser.add_argument("--state-dir", default="", help="default: a new temporary folder")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="500 partners, 10 proposals, 10 vote twins, 20 submissions",
    )
    args = parser.parse_args()
    if args.quick:
        args.partners, args.proposals, args.votes, args.inbox, args.samples = 500, 10, 10, 10, 100
        args.submissions = 20
    code = 1
    try:
        code = asyncio.run(run(args))
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        # A process that used a Temporal client can crash in interpreter finalization.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
