"""`kwanus dev` end to end, as a user runs it: the whole stack on free ports in a private state
folder, the README's walk-through over HTTP, the Temporal CLI finding the process by its search
attributes, Ctrl-C, and a second start that keeps everything."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testdata.factories import partner_body, proposal_body
from tests.processes import KWANUS, free_port
from tests.receiver import Receiver

TEMPORAL = str(Path(sys.executable).parent / "temporal")

pytestmark = pytest.mark.slow


class DevStack:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.api_port, self.temporal_port, self.ui_port = free_port(), free_port(), free_port()
        self.api_metrics_port, self.worker_metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def args(self) -> list[str]:
        return [
            KWANUS,
            "dev",
            "--state-dir",
            str(self.state),
            "--api-port",
            str(self.api_port),
            "--temporal-port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            "--api-metrics-port",
            str(self.api_metrics_port),
            "--worker-metrics-port",
            str(self.worker_metrics_port),
        ]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KWANUS_")}
        self.proc = subprocess.Popen(
            self.args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert self.proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 90
        for line in self.proc.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line or time.monotonic() > deadline:
                break
        self.output = "".join(lines)
        assert "Ctrl-C stops everything" in self.output, self.output

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def temporal(self, *args: str) -> Any:
        out = subprocess.run(
            [TEMPORAL, *args, "--address", f"127.0.0.1:{self.temporal_port}", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return json.loads(out) if out.strip() else []


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    s = DevStack(tmp_path / "state")
    yield s
    if s.proc is not None:
        s.proc.kill()
        s.proc.wait()


def _eventually(check: Any, within: float = 20.0) -> Any:
    give_up = time.monotonic() + within
    while True:
        value = check()
        if value or time.monotonic() > give_up:
            return value
        time.sleep(0.3)


def test_dev_runs_the_product_and_keeps_state_across_restarts(stack: DevStack) -> None:
    stack.start()
    token_file = stack.state / "admin-token"
    admin_token = token_file.read_text().strip()
    assert admin_token in stack.output  # printed on the first run
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"http://127.0.0.1:{stack.api_port}/docs" in stack.output
    assert f"Console      http://127.0.0.1:{stack.api_port}/console" in stack.output
    assert "Webhooks (development: http and loopback addresses allowed" in stack.output
    hook = Receiver()  # P-7: `kwanus dev` delivers to a receiver on this machine

    with httpx.Client(base_url=stack.url, timeout=10) as http:
        admin = {"Authorization": f"Bearer {admin_token}"}
        assert http.get("/docs").status_code == 200
        # The console over plain HTTP in development: its cookie is not Secure there, so a
        # browser on http://127.0.0.1 keeps it and the admin token signs in.
        form = http.get("/console/sign-in")
        nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
        assert nonce, form.text
        signed = http.post("/console/sign-in", data={"nonce": nonce[1], "token": admin_token})
        assert signed.status_code == 303, signed.text
        assert "secure" not in signed.headers["set-cookie"].lower()
        assert "Signed in as <strong>admin</strong>" in http.get("/console/inbox").text
        assert httpx.get(f"http://127.0.0.1:{stack.ui_port}/", timeout=10).status_code == 200
        assert (
            http.post("/v1/partners", json=partner_body("acme"), headers=admin).status_code == 201
        )
        token = http.post(
            "/v1/tokens", json={"role": "partner", "partner_id": "acme"}, headers=admin
        ).json()["token"]
        partner = {"Authorization": f"Bearer {token}"}
        subscribed = http.post("/v1/webhooks", json={"url": hook.url, "body": "TSC"}, headers=admin)
        assert subscribed.status_code == 201, subscribed.text
        resp = http.post("/v1/expansions", json=proposal_body(id="demo-1"), headers=partner)
        assert resp.status_code == 202, resp.text
        assert _eventually(lambda: hook.of_type("step.opened"), within=30)
        hook.close()

        def listed() -> list[Any]:
            found: list[Any] = stack.temporal(
                "workflow", "list", "--query", "KwanusPartnerId='acme'"
            )
            return found

        runs = _eventually(listed)
        assert [r["execution"]["workflowId"] for r in runs] == ["expansion-demo-1"]

    # Both Prometheus endpoints, as printed: the API's HTTP and business series, the worker's
    # Temporal SDK series (README, "Observability").
    api_metrics = f"http://127.0.0.1:{stack.api_metrics_port}/metrics"
    worker_metrics = f"http://127.0.0.1:{stack.worker_metrics_port}/metrics"
    assert f"Metrics      {api_metrics}  (API)" in stack.output
    assert f"Metrics      {worker_metrics}  (worker)" in stack.output
    scraped = httpx.get(api_metrics, timeout=10).text
    assert 'kwanus_processes_open{kind="expansion",stage="Evaluation"} 1.0' in scraped
    assert 'http_requests_total{handler="/v1/expansions",method="POST",status="202"} 1.0' in scraped
    assert "temporal_workflow_task_schedule_to_start_latency" in httpx.get(worker_metrics).text

    assert stack.stop() == 0
    # Development logs readable lines, the context after the message (production: JSON).
    worker_log = (stack.state / "logs" / "worker.log").read_text()
    assert re.search(
        r"Z INFO +temporalio\.workflow: .*  partner=acme wf=expansion-demo-1 run=\S+$",
        worker_log,
        re.MULTILINE,
    ), worker_log
    api_log = (stack.state / "logs" / "api.log").read_text()
    assert re.search(
        r'"POST /v1/expansions HTTP/1.1" 202  req=[0-9a-f]{32} partner=acme$', api_log, re.MULTILINE
    ), api_log
    assert admin_token not in api_log + worker_log and token not in api_log + worker_log

    stack.start()
    assert admin_token not in stack.output  # shown once only
    with httpx.Client(base_url=stack.url, timeout=10) as http:
        resp = http.get("/v1/expansions/demo-1", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == "active"
        assert resp.json()["stage"] == "Evaluation"
    # Two start-ups applied the yearly stewardship schedule: it exists, once (E-13.1, M-10.1).
    listed = _eventually(lambda: stack.temporal("schedule", "list"))
    schedules = listed if isinstance(listed, list) else [listed]
    assert [s["scheduleId"] for s in schedules] == ["kwanus-stewardship"], schedules
    assert stack.stop() == 0


def test_dev_refuses_a_taken_port_in_one_line(stack: DevStack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", stack.api_port))
        busy.listen()
        done = subprocess.run(stack.args(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert str(stack.api_port) in lines[0] and "--api-port" in lines[0]


def test_dev_names_a_missing_binary_in_one_line(stack: DevStack) -> None:
    env = {**os.environ, "KWANUS_TEMPORAL_BIN": str(stack.state / "no-such-temporal")}
    done = subprocess.run(stack.args(), capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "temporal" in lines[0]
