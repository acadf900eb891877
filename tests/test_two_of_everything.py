"""Two of everything (issue 19): the soak (bench/soak.py) in production's topology — one dev
server, two `kwanus worker` and two `kwanus api` processes on one PostgreSQL database, the APIs
behind one round-robin address — at CI size: 12 mixed processes (seed 23 plans every scenario),
2 worker SIGKILLs (one per worker) and one dev-server SIGKILL and restart. Beyond every soak
invariant: the stewardship schedule applied once, a deprecation notice sent to both APIs at once
fanned out once (one migration per partner), both APIs served the soak's requests, and the
audit log's hash chain, appended to by both workers, is unbroken. The full size is run by
hand: `python -m bench.soak --seed 7 --processes 200 --kills 10 --workers 2 --apis 2
--database-url postgresql+psycopg://…`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PG_URL, pg_schema
from tests.test_soak import figure, soak

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.devserver,
    pytest.mark.skipif(
        not PG_URL,
        reason="needs PostgreSQL (KWANUS_TEST_DATABASE_URL): two workers and two APIs share it",
    ),
]


def test_two_workers_and_two_apis_hold_every_invariant(tmp_path: Path) -> None:
    with pg_schema("kwtwo") as pg_url:  # the soak migrates it
        out = soak(
            *("--seed", "23", "--processes", "12", "--kills", "2"),
            *("--workers", "2", "--apis", "2", "--database-url", pg_url),
            *("--state-dir", str(tmp_path)),
        )
    # Every invariant of the one-of-each soak.
    assert figure(out, "in expected final state") == "12/12 (100.0 %)"
    assert figure(out, "projection == workflow status") == "12/12"
    assert figure(out, "worker kills (SIGKILL)") == "2"
    assert figure(out, "server restarts (SIGKILL, same db file)") == "1"
    assert figure(out, "duplicate audit rows") == "0"
    assert figure(out, "audit rows missing / unexpected") == "0 / 0"
    assert figure(out, "non-determinism errors (workflows)") == "0"
    assert figure(out, "workflow task failures (bugs)") == "0"
    assert figure(out, "driver errors") == "0"
    # Two of everything: both workers killed, both APIs reached through the one address.
    assert figure(out, "workers / APIs") == "2 / 2"
    assert figure(out, "worker kills per worker") == "1 / 1"
    assert figure(out, "worker starts per worker") == "2 / 2"
    connections = [
        int(n) for n in figure(out, "connections via the round-robin address").split("/")
    ]
    assert min(connections) > 0 and max(connections) - min(connections) <= 1, connections
    served = [int(n) for n in figure(out, "requests served per API").split("/")]
    assert all(s >= c for s, c in zip(served, connections, strict=True)), (served, connections)
    # The schedule: one, created once and updated by each other start, unchanged, never run.
    assert figure(out, "stewardship schedules") == (
        "1 (kwanus-stewardship): created 1, updated 3, failed 0 over 4 worker starts; "
        "unchanged; 0 runs"
    )
    # The notice sent to both APIs at once: one fan-out, one migration per partner.
    notice = figure(out, "deprecation notice (to each API at once)")
    assert notice.startswith(
        "answers 202 api-kwanus-1_9 / 202 api-kwanus-1_9; fan-out runs 1 (COMPLETED, affected 4,"
    ), notice
    assert figure(out, "  its migrations (partners / ids / runs)") == "4 / 4 / 4"
    assert figure(out, "  at their plan window") == "4/4"
    assert figure(out, "  projection == workflow status") == "4/4"
    assert figure(out, "  their audit rows / duplicate").endswith(" / 0")
    # Both workers appended to the one audit log: its hash chain is unbroken.
    assert figure(out, "audit hash chain (kwanus audit verify)").startswith("intact, ")
    assert "soak PASSED" in out
