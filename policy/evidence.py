"""Recorded evidence the rules judge: partner telemetry, violations, the compatibility matrix.
Plain models: the store keeps them, activities load them, the rules read them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from policy.grants import Grant
from policy.manifest import ManifestWorkflow
from policy.types import ComponentVersion
from policy.vocabulary import ComponentKind, MatrixStatus, Severity

Rate = Annotated[float, Field(ge=0, le=1)]
VersionKey = Annotated[
    str,
    StringConstraints(pattern=r"^(os|api|runtime|workflow|permission):[A-Za-z0-9_.@+-]{1,100}$"),
]


class Telemetry(BaseModel):
    """One telemetry report, as the platform measured it (`POST /v1/partners/{id}/telemetry`,
    role `platform`; E-7.1: evidence is what the platform reported)."""

    model_config = ConfigDict(extra="forbid")

    period_start: datetime
    period_end: datetime
    workflow_success_rate: Rate
    api_error_rate: Rate
    permission_usage: dict[str, Annotated[int, Field(ge=0, le=2**53)]] = Field(
        default_factory=dict, max_length=1000
    )
    deprecated_calls: int = Field(default=0, ge=0, le=2**31 - 1)
    calls_by_version: dict[VersionKey, Annotated[int, Field(ge=0, le=2**53)]] = Field(
        default_factory=dict,
        max_length=1000,
        description='Calls per platform version the partner used, e.g. `{"api:2.0": 1523}` '
        "(`<kind>:<version>`, or `<kind>:<name>@<version>` for runtimes and workflows).",
    )


class Violation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    severity: Severity
    kind: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    resolved_at: datetime | None = None
    origin: str | None = Field(
        default=None, description="The process whose validation opened it, if one did."
    )


class MatrixEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ComponentKind
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    version: ComponentVersion  # stripped: `4.2 ` is `4.2`, never a second row
    status: MatrixStatus


class PlatformRef(BaseModel):
    """A platform version a partner's release works with (E-9.2 Decision): `kind`, `name`,
    `version` — never a status: the platform's rows are the platform's to change. Runs recorded
    before that decision sent a `status` along, which is ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: ComponentKind
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    version: ComponentVersion  # stripped: `4.2 ` is `4.2`, never a second row


class DeclaredRef(PlatformRef):
    """A declaration as a partner sends it: a `status` (or any other field) is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CompatibilityMatrix(BaseModel):
    """Versions of OS, API and runtimes, each supported, deprecated or retired (E-9, M-5)."""

    model_config = ConfigDict(frozen=True)

    version: int = Field(default=0, description="Changes so far; every change adds one.")
    entries: tuple[MatrixEntry, ...] = ()

    def status_of(self, kind: ComponentKind, name: str, version: str) -> MatrixStatus | None:
        for entry in self.entries:
            if (entry.kind, entry.name, entry.version) == (kind, name, version):
                return entry.status
        return None


class PartnerState(BaseModel):
    """What a partner runs and holds, as registered and recorded."""

    model_config = ConfigDict(frozen=True)

    partner_id: str
    tier: str
    os_version: str
    api_version: str
    runtime_name: str
    runtime_version: str
    capabilities: tuple[str, ...] = Field(default=(), description="Every grant's name.")
    permissions: tuple[str, ...] = Field(default=(), description="The permissions in effect.")
    workflows: tuple[ManifestWorkflow, ...] = Field(
        default=(), description="The workflows its registered manifest runs."
    )
    grants: tuple[Grant, ...] = ()


class TierEvidence(BaseModel):
    """What E-7.1 and E-7.2 judge a partner's tier on, as recorded: its telemetry over the
    policy's evidence window, its violations (every remediation, open or closed) and its grants."""

    model_config = ConfigDict(frozen=True)

    telemetry: tuple[Telemetry, ...] = ()
    violations: tuple[Violation, ...] = ()
    granted_permissions: tuple[str, ...] = ()
    forced_downgrade: str | None = Field(
        default=None, description="A forced downgrade of the partner still under way (E-7.2)."
    )
