"""Settings and the `kwanus` command's admin subcommands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from kwanus.settings import Settings
from store import repo
from store.db import Database
from store.migrate import upgrade
from store.tables import utcnow

KWANUS = str(Path(sys.executable).parent / "kwanus")


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(f"KWANUS_{name.upper()}", raising=False)
    settings = Settings(state_dir=tmp_path)
    assert settings.task_queue == "kwanus-governance"
    assert settings.temporal_namespace == "default"
    assert settings.database_url == f"sqlite:///{(tmp_path / 'kwanus.db').resolve()}"
    assert settings.temporal_address == "127.0.0.1:7233"
    assert (settings.api_port, settings.ui_port) == (8000, 8233)


def test_environment_uses_the_kwanus_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWANUS_TEMPORAL_PORT", "7999")
    monkeypatch.setenv("KWANUS_TASK_QUEUE", "elsewhere")
    monkeypatch.delenv("KWANUS_TEMPORAL_ADDRESS", raising=False)
    settings = Settings()
    assert settings.temporal_address == "127.0.0.1:7999"
    assert settings.task_queue == "elsewhere"


def test_db_upgrade_and_token_create(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("KWANUS_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    done = subprocess.run(
        [KWANUS, "token", "create", "--role", "ops", "--label", "dashboards"],
        capture_output=True,
        text=True,
        check=True,
        env={"KWANUS_DATABASE_URL": url, "PATH": ""},
    )
    token = done.stdout.strip()
    db = Database(url)
    try:
        with db.session() as session:
            found = repo.authenticate(session=session, raw=token, now=utcnow())
            assert found is not None and found.role == "ops" and found.label == "dashboards"
    finally:
        db.dispose()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "partner"], "partner_id: Value error, required for role partner"),
        (["--role", "partner", "--partner", "ghost"], "partner 'ghost' is not registered"),
        (["--role", "TSC", "--partner", "acme"], "partner_id"),
        (["--role", "emperor"], "role"),
    ],
)
def test_token_create_refuses_bad_input(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    monkeypatch.setenv("KWANUS_DATABASE_URL", url)
    assert main(["token", "create", *args]) == 2
    assert message in capsys.readouterr().err
