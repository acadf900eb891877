"""What a partner may do now (M-9.2, M-9.3, M-9.1 step 5, M-6.1, M-6.3): the status derived from
its remediations, the permissions in effect, and the fallbacks its migrations keep. The access
view the KWANUS OS runtime enforces is built from these, and the API refuses by them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from policy.decisions import Decision, Finding
from policy.deprecation import PLATFORM
from policy.migration import fallback_permissions
from policy.triggers import TRIGGER_CLASS
from policy.vocabulary import PartnerStatus, ProcessStatus, Severity, Trigger, TriggerClass


class RemediationRecord(BaseModel):
    """One remediation of the partner, as its access depends on it."""

    model_config = ConfigDict(frozen=True)

    id: str
    severity: Severity
    status: ProcessStatus
    forced_migration: str | None = Field(
        default=None, description="The forced downgrade its missed window started (M-9.3)."
    )
    restored: bool = Field(default=False, description="SCO restored access after it (M-9.1).")


def restriction(remediations: Sequence[RemediationRecord]) -> Decision:
    """M-9.2 / M-9.3 (Decision): a partner is restricted while any severe remediation of its is
    open, and after a missed window until SCO restores access — derived from every remediation,
    so one closing never lifts what another imposes. Each finding names the remediation."""
    out = []
    for r in remediations:
        if r.status is ProcessStatus.ACTIVE and r.severity is Severity.SEVERE:
            out.append(
                Finding(
                    field=f"remediation.{r.id}",
                    rule="M-9.2",
                    message="a severe remediation is open: access is restricted until it ends",
                )
            )
        elif r.status is ProcessStatus.EXPIRED and not r.restored:
            out.append(
                Finding(
                    field=f"remediation.{r.id}",
                    rule="M-9.3",
                    message="its window was missed: access stays restricted until SCO restores it",
                )
            )
    return Decision(findings=tuple(out))


def status(remediations: Sequence[RemediationRecord]) -> PartnerStatus:
    return PartnerStatus.ACTIVE if restriction(remediations).allowed else PartnerStatus.RESTRICTED


def permissions_in_effect(held: Sequence[str], restricted: bool) -> list[str]:
    """M-9.2 (Decision): restricted, only the `:read` permissions held are in effect."""
    return fallback_permissions(held) if restricted else sorted(set(held))


def may_act_while(remediations: Sequence[RemediationRecord], what: str) -> Decision:
    """M-9.2 (Decision): a restricted partner submits no expansion and starts no optional
    migration (its remediation steps stay open to it)."""
    held = restriction(remediations)
    if held.allowed:
        return held
    return Decision(
        findings=(
            Finding(
                field="partner_id",
                rule=held.findings[0].rule,
                message=f"the partner's access is restricted: it may not {what} "
                f"({'; '.join(f'{f.field}: {f.message}' for f in held.findings)})",
            ),
        )
    )


def may_start_while(trigger: Trigger, remediations: Sequence[RemediationRecord]) -> Decision:
    """M-9.2 (Decision): no optional migration starts for a restricted partner, whoever asks;
    required and forced ones go on (they are the platform's, M-2.1, M-2.3)."""
    if TRIGGER_CLASS[trigger] is not TriggerClass.OPTIONAL:
        return Decision()
    return may_act_while(remediations, "start optional migrations")


def may_restore(missed: Sequence[tuple[RemediationRecord, bool]]) -> Decision:
    """M-9.1 step 5 / M-9.3: SCO restores access held after missed windows (`missed`: each not
    yet restored, with whether its forced outcome has been applied — its downgrade rolled out
    or completed), once every forced outcome has been applied, and only then."""
    if not missed:
        return _refused("remediations", "M-9.1", "no missed window holds the partner's access")
    return Decision(
        findings=tuple(
            Finding(
                field=f"remediation.{r.id}",
                rule="M-9.3",
                message=f"its forced outcome ({r.forced_migration}) has not been applied yet",
            )
            for r, applied in missed
            if r.forced_migration is not None and not applied
        )
    )


def _refused(field: str, rule: str, message: str) -> Decision:
    return Decision(findings=(Finding(field=field, rule=rule, message=message),))


class FallbackKept(BaseModel):
    """What a migration's fallback keeps for the partner until `until` (M-6.1)."""

    migration_id: str
    kind: str = Field(description="os, api, runtime, workflow — or tier.")
    name: str = Field(description="The component (or, for a tier, the tier left).")
    version: str | None = Field(description="The version it moves off (null for a tier).")
    permissions: list[str] = Field(description="Read-only, and only what the partner holds.")
    until: datetime | None


class Current(BaseModel):
    """What the partner runs now, as its record says."""

    tier: str
    os_version: str
    api_version: str
    runtime_name: str
    runtime_version: str


def fallbacks_of(
    migration_id: str,
    target: Mapping[str, str],
    *,
    current: Current,
    tier_left: str | None,
    kept: Sequence[str],
    held: Sequence[str],
    until: datetime | None,
) -> list[FallbackKept]:
    """M-6.1 / M-6.3: one entry per target key — the component and the version it moves off, or
    the tier left — with read-only permissions the partner holds, never more."""
    permissions = sorted(set(fallback_permissions(kept)) & set(held))
    out: list[FallbackKept] = []
    seen: set[tuple[str, str]] = set()
    for key in sorted(target):
        entry: tuple[str, str, str | None]
        if key == "tier":
            entry = ("tier", tier_left or current.tier, None)
        elif key == "os_version":
            entry = ("os", PLATFORM, current.os_version)
        elif key == "api_version":
            entry = ("api", PLATFORM, current.api_version)
        elif key in ("runtime_name", "runtime_version"):
            entry = ("runtime", current.runtime_name, current.runtime_version)
        elif key.startswith("workflow"):
            entry = ("workflow", target[key], None)
        else:
            continue
        if (entry[0], entry[1]) in seen:
            continue
        seen.add((entry[0], entry[1]))
        kind, name, version = entry
        out.append(
            FallbackKept(
                migration_id=migration_id,
                kind=kind,
                name=name,
                version=version,
                permissions=permissions,
                until=until,
            )
        )
    return out


class Access(BaseModel):
    """`GET /v1/partners/{id}/access`: what the KWANUS OS runtime enforces for the partner now."""

    partner_id: str
    status: PartnerStatus
    restricted_by: list[Finding] = Field(
        default_factory=list, description="Why it is restricted (each remediation, its rule)."
    )
    tier: str
    capabilities: list[str] = Field(description="The names of the grants held.")
    permissions: list[str] = Field(
        description="The permissions in effect (read-only if restricted)."
    )
    fallbacks: list[FallbackKept] = Field(default_factory=list)
