"""The Temporal worker (`kwanus worker`, `python worker.py`): where DESIGN.md has it. Its code is
`app/worker.py`, inside the layer contracts; this module only names it."""

from __future__ import annotations

from app.worker import (
    ACTIVITY_THREADS,
    INTERCEPTORS,
    WORKFLOW_RUNNER,
    WORKFLOWS,
    build_worker,
    dispatching,
    main,
    run_worker,
)

__all__ = [
    "ACTIVITY_THREADS",
    "INTERCEPTORS",
    "WORKFLOWS",
    "WORKFLOW_RUNNER",
    "build_worker",
    "dispatching",
    "main",
    "run_worker",
]

if __name__ == "__main__":
    main()
