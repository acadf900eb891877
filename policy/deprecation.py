"""Deprecation notices (M-2.1): one notice from TSC — an OS, API, workflow, runtime or permission
version going away — becomes one required migration for every partner that uses it.

Which partners a notice affects and what migration each gets are decided here, so the HTTP
route, the fan-out activity and the tests read the same rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import InitErrorDetails

from policy.evidence import PartnerState
from policy.forms import Form, missing
from policy.types import Name, Version
from policy.vocabulary import ComponentKind, MigrationType, Trigger

NoticeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]

# The OS and the API are KWANUS's own: the matrix lists them under this name.
PLATFORM = "kwanus"

# Where a replacement version lands on the partner's record (its lifecycle fields, M-4.7).
TARGET_FIELD: dict[ComponentKind, str] = {
    ComponentKind.OS: "os_version",
    ComponentKind.API: "api_version",
    ComponentKind.RUNTIME: "runtime_version",
}


class MigrationKind(BaseModel):
    """The migration a notice starts for each affected partner (M-2.1 trigger, M-3.1 type)."""

    model_config = ConfigDict(frozen=True)

    trigger: Trigger
    type_: MigrationType
    subtype: str


MIGRATION: dict[ComponentKind, MigrationKind] = {
    ComponentKind.OS: MigrationKind(
        trigger=Trigger.OS_MAJOR_VERSION, type_=MigrationType.VERSION, subtype="os"
    ),
    ComponentKind.API: MigrationKind(
        trigger=Trigger.API_DEPRECATION, type_=MigrationType.VERSION, subtype="api"
    ),
    ComponentKind.WORKFLOW: MigrationKind(
        trigger=Trigger.WORKFLOW_DEPRECATION, type_=MigrationType.VERSION, subtype="workflow"
    ),
    ComponentKind.RUNTIME: MigrationKind(
        trigger=Trigger.RUNTIME_CHANGE, type_=MigrationType.RUNTIME, subtype="extension"
    ),
    ComponentKind.PERMISSION: MigrationKind(
        trigger=Trigger.PERMISSION_CHANGE, type_=MigrationType.PERMISSION, subtype="restructuring"
    ),
}


class DeprecationNotice(Form):
    """`POST /v1/deprecations`: what goes away (`kind`, `name`, `version`) and, for the OS, the
    API and runtimes, the `replacement` version partners move to."""

    rules: ClassVar[dict[str, str]] = {"kind": "M-2.1"}

    kind: ComponentKind
    name: Name = Field(
        default=PLATFORM,
        description="The runtime, workflow or permission (`kwanus` for the OS and the API).",
    )
    version: Version | None = Field(
        default=None, description="The version going away (all kinds but permission)."
    )
    replacement: Version | None = Field(
        default=None, description="The version partners move to (OS, API, runtime)."
    )
    fallback_months: int | None = Field(
        default=None, description="Fallback period of each migration (M-6.2; policy default)."
    )

    @classmethod
    def _also_missing(cls, raw: Mapping[str, Any]) -> list[InitErrorDetails]:
        kind = raw.get("kind")
        out = []
        if kind in set(ComponentKind) - {ComponentKind.PERMISSION} and not raw.get("version"):
            out.append(missing("version", "M-2.1", f"a {kind} deprecation names its version"))
        if kind in set(TARGET_FIELD) and not raw.get("replacement"):
            out.append(
                missing(
                    "replacement", "M-2.1", f"a {kind} deprecation names the version to move to"
                )
            )
        return out

    @property
    def default_id(self) -> str:
        """A notice is identified by what it deprecates: the same notice sent twice is one
        notice (and one migration per partner)."""
        raw = "-".join(p for p in (self.kind.value, self.name, self.version) if p)
        return re.sub(r"[^A-Za-z0-9_-]", "_", raw)[:64]

    @property
    def migration(self) -> MigrationKind:
        return MIGRATION[self.kind]

    @property
    def target(self) -> dict[str, str]:
        field = TARGET_FIELD.get(self.kind)
        return {field: self.replacement} if field and self.replacement else {}

    def affects(self, partner: PartnerState) -> bool:
        """Whether the partner uses what the notice deprecates."""
        match self.kind:
            case ComponentKind.OS:
                return partner.os_version == self.version
            case ComponentKind.API:
                return partner.api_version == self.version
            case ComponentKind.RUNTIME:
                return (partner.runtime_name, partner.runtime_version) == (
                    self.name,
                    self.version,
                )
            case ComponentKind.WORKFLOW:
                ref = f"{self.name}@{self.version}"
                return self.name in partner.capabilities or any(
                    ref in (w.trigger, w.handler) for w in partner.workflows
                )
            case ComponentKind.PERMISSION:
                return self.name in partner.permissions
        return False  # pragma: no cover - every kind is matched above


def migration_id(notice_id: str, partner_id: str) -> str:
    """One migration per partner and notice (a notice id holds no `.`, so this is unique)."""
    return f"{notice_id}.{partner_id}"
