"""The layers hold (README, "Layout"): `lint-imports` keeps every contract on the tree, and breaks
the one a forbidden import breaks — run on a copy of the packages with that import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "api", "workflows", "activities", "store", "kwanus", "policy")
LINT = Path(sys.executable).parent / "lint-imports"


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH first, so the packages found are the ones under `where`, not the installed tree.
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_tree_keeps_every_contract() -> None:
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("policy/vote.py", "import store.db", "policy imports nothing of ours"),
        ("api/routes/expansions.py", "from workflows import expansion", "api starts workflows"),
        ("store/audit.py", "import activities.processes", "Layers:"),
        ("api/processes.py", "import worker", "No package imports the top-level worker.py"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")

    done = lint(tmp_path)

    assert done.returncode == 1, done.stdout + done.stderr
    verdicts = [v for v in done.stdout.splitlines() if v.endswith(("KEPT", "BROKEN"))]
    assert any(v.startswith(broken) and v.endswith("BROKEN") for v in verdicts), done.stdout
    assert module.removesuffix(".py").replace("/", ".") in done.stdout
