"""`kwanus db upgrade`: Alembic migrations, on SQLite and PostgreSQL alike, then the platform
versions the product ships (store/platform-matrix.json) where the matrix does not list them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from policy.evidence import MatrixEntry
from store import repo
from store.db import Database

MIGRATIONS = Path(__file__).parent / "migrations"
PLATFORM_MATRIX = Path(__file__).parent / "platform-matrix.json"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Handed over as an attribute, not an ini option: URLs may hold '%' (ConfigParser syntax).
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)
    if revision == "head":
        seed_platform(url)


def shipped_matrix() -> list[MatrixEntry]:
    doc = json.loads(PLATFORM_MATRIX.read_text())
    return [MatrixEntry.model_validate(e) for e in doc["entries"]]


def seed_platform(url: str) -> list[dict[str, Any]]:
    """The shipped platform rows the matrix lacks (E-9.1); rows already there stay as they are.
    Returns the changes (none on a second run)."""
    db = Database(url)
    try:
        with db.session() as session:
            return repo.seed_platform_matrix(session=session, entries=shipped_matrix())
    finally:
        db.dispose()


def revision(url: str, message: str) -> None:
    """Autogenerate a new migration from the tables (for developers)."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
