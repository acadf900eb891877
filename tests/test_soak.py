"""The soak's small seed, as CI runs it (issue 8): bench/soak.py — real dev server, worker and
API processes — with 20 mixed processes, 3 worker SIGKILLs and one dev-server SIGKILL and
restart, every invariant checked and printed. The full size (200 processes, 10 kills) is run by
hand: `python -m bench.soak --seed 7 --processes 200 --kills 10`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.devserver


def figure(output: str, label: str) -> str:
    found = re.search(rf"^{re.escape(label)}\s+(.+)$", output, re.MULTILINE)
    assert found, (label, output)
    return found.group(1).strip()


def soak(*args: str) -> str:
    """`python -m bench.soak *args` as a fresh process (no KWANUS_ setting of ours leaking in);
    its printout, once it passed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWANUS_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def test_small_soak_holds_every_invariant(tmp_path: Path) -> None:
    out = soak("--seed", "3", "--processes", "20", "--kills", "3", "--state-dir", str(tmp_path))
    assert figure(out, "in expected final state") == "20/20 (100.0 %)"
    assert figure(out, "projection == workflow status") == "20/20"
    assert figure(out, "worker kills (SIGKILL)") == "3"
    assert figure(out, "server restarts (SIGKILL, same db file)") == "1"
    assert figure(out, "duplicate audit rows") == "0"
    assert figure(out, "non-determinism errors (workflows)") == "0"
    assert "soak PASSED" in out
