"""A migration's validation (M-4.4): four checks, each inspecting the manifest the partner ships
with its implementation — and the platform's telemetry — against the migration's target, the
compatibility matrix and the tier and grants the partner will hold (M-8.1 Decision, M-8.2,
M-5.1, M-5.2, E-9.2)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from policy.decisions import Decision, Finding
from policy.deprecation import PLATFORM
from policy.document import TierSpec
from policy.evidence import CompatibilityMatrix, Telemetry
from policy.grants import (
    Grant,
    Holdings,
    governance_update,
    governed_workflows,
    governs_workflow,
)
from policy.manifest import Manifest, split_ref
from policy.types import action_of
from policy.vocabulary import ComponentKind, MatrixStatus


class Judged(BaseModel):
    """Everything a validation check judges a manifest against: the migration's target, the
    partner as it will be after the migration (tier, grants), its manifest before, the
    platform's matrix and the platform's telemetry since the partner said it moved."""

    model_config = ConfigDict(frozen=True)

    manifest: Manifest
    before: Manifest = Field(description="The partner's registered manifest.")
    target: dict[str, str] = Field(default_factory=dict)
    tier: TierSpec | None = Field(description="The tier the partner will hold.")
    held: Holdings = Field(description="What the partner will hold after the migration.")
    matrix: CompatibilityMatrix
    telemetry: tuple[Telemetry, ...] = ()
    since: datetime | None = Field(
        default=None, description="When the partner reported it had moved (its implementation)."
    )

    def moved_off(self, kind: str = "") -> dict[str, str]:
        """The components (of `kind`, or all) the manifest before ran on and this one does not,
        by telemetry key → a readable name."""
        left = self.before.left_for(self.manifest)
        return {k: v for k, v in left.items() if k.startswith(f"{kind}:" if kind else "")}

    def calls_to(self, key: str) -> int:
        """Calls the platform saw to `key` in reports begun once the partner said it moved."""
        if self.since is None:
            return 0
        since = self.since
        moved = [r for r in self.telemetry if r.period_start >= since]
        return sum(r.calls_by_version.get(key, 0) for r in moved)


def _status(matrix: CompatibilityMatrix, kind: ComponentKind, name: str, version: str) -> str:
    status = matrix.status_of(kind, name, version)
    return status.value if status else "not listed in the compatibility matrix"


def _still_called(j: Judged, kind: str, field: str) -> list[Finding]:
    """M-8.1 (Decision): the platform's telemetry shows no calls to what the migration moves
    off, once the partner says it has moved."""
    out = []
    for key, what in sorted(j.moved_off(kind).items()):
        calls = j.calls_to(key)
        if calls:
            assert j.since is not None
            out.append(
                Finding(
                    field=field,
                    rule="M-8.1",
                    message=f"the platform saw {calls} calls to {what}, which the migration "
                    f"moves off, since the implementation ({j.since.isoformat()})",
                )
            )
    return out


def check_api_contract(j: Judged) -> Decision:
    """M-8.1 API contract: the manifest's OS and API versions are the migration's target where it
    names one and `supported` in the matrix (M-5.1); the platform saw no calls to the version
    moved off since the partner said it moved."""
    out: list[Finding] = []
    for kind, field in ((ComponentKind.OS, "os_version"), (ComponentKind.API, "api_version")):
        version = getattr(j.manifest, field)
        wanted = j.target.get(field)
        if wanted is not None and version != wanted:
            out.append(
                Finding(
                    field=f"manifest.{field}",
                    rule="M-8.1",
                    message=f"{kind.value} {version}: the migration moves to {wanted}",
                )
            )
        if j.matrix.status_of(kind, PLATFORM, version) is not MatrixStatus.SUPPORTED:
            out.append(
                Finding(
                    field=f"manifest.{field}",
                    rule="M-5.1",
                    message=f"{kind.value} {version} is "
                    f"{_status(j.matrix, kind, PLATFORM, version)}",
                )
            )
    out += _still_called(j, "os", "telemetry.calls_by_version")
    out += _still_called(j, "api", "telemetry.calls_by_version")
    return Decision(findings=tuple(out))


SUPPORTED_ONLY = frozenset({MatrixStatus.SUPPORTED})


def check_workflows(j: Judged, accepted: frozenset[MatrixStatus] = SUPPORTED_ONLY) -> Decision:
    """M-8.1 workflow: every workflow is governed — a grant of its name that approved
    expansions (or the registration) gave (M-8.2, E-5.2); its trigger and handler are platform
    workflow rows, versioned (M-5.2) and `supported` in the matrix (M-5.1; of the `accepted`
    statuses); its permissions are within the manifest's (M-8.1)."""
    out: list[Finding] = []
    governed = {n.casefold() for n in governed_workflows(j.held)}
    requested = set(j.manifest.permissions)
    for i, wf in enumerate(j.manifest.workflows):
        field = f"manifest.workflows.{i}"
        if wf.name.casefold() not in governed:
            out.append(
                Finding(
                    field=f"{field}.name",
                    rule="M-8.2",
                    message=f"workflow {wf.name} is ungoverned: no approved expansion granted it",
                )
            )
        for part in ("trigger", "handler"):
            ref = getattr(wf, part)
            name, version = split_ref(ref)
            if version is None:
                out.append(
                    Finding(
                        field=f"{field}.{part}",
                        rule="M-5.2",
                        message=f"{part} {ref} is unversioned: name it `{name}@<version>`",
                    )
                )
            elif j.matrix.status_of(ComponentKind.WORKFLOW, name, version) not in accepted:
                status = _status(j.matrix, ComponentKind.WORKFLOW, name, version)
                out.append(
                    Finding(
                        field=f"{field}.{part}",
                        rule="M-5.1",
                        message=f"{part} {name} {version} is {status}",
                    )
                )
        out += [
            Finding(
                field=f"{field}.permissions.{k}",
                rule="M-8.1",
                message=f"{perm} is not among the manifest's permissions",
            )
            for k, perm in enumerate(wf.permissions)
            if perm not in requested
        ]
    out += _still_called(j, "workflow", "telemetry.calls_by_version")
    return Decision(findings=tuple(out))


def check_permission_boundary(j: Judged) -> Decision:
    """M-8.1 permission boundary: every permission bounded (M-8.2: no `*`), allowed by the tier
    the partner will hold, and within what it will hold after the migration."""
    out: list[Finding] = []
    held = set(j.held.permissions)
    for i, perm in enumerate(j.manifest.permissions):
        field = f"manifest.permissions.{i}"
        if "*" in perm:
            out.append(Finding(field=field, rule="M-8.2", message=f"{perm} is unbounded"))
            continue
        if j.tier is not None and action_of(perm) not in j.tier.permission_actions:
            out.append(
                Finding(
                    field=field,
                    rule="M-8.1",
                    message=f"{perm} exceeds tier {j.tier.name} (actions: "
                    f"{', '.join(sorted(j.tier.permission_actions))})",
                )
            )
        if perm not in held:
            out.append(
                Finding(
                    field=field,
                    rule="M-8.1",
                    message=f"{perm} is not granted: the partner will not hold it after the "
                    "migration",
                )
            )
    return Decision(findings=tuple(out))


def check_runtime(j: Judged) -> Decision:
    """M-8.1 runtime compatibility: the runtime is the target's where it names one and
    `supported` in the matrix — a deprecated or retired one is incompatible (M-8.2), an unlisted
    one is fragmentation (E-9.2)."""
    rt = j.manifest.runtime
    out: list[Finding] = []
    for part in ("name", "version"):
        wanted = j.target.get(f"runtime_{part}")
        if wanted is not None and getattr(rt, part) != wanted:
            out.append(
                Finding(
                    field=f"manifest.runtime.{part}",
                    rule="M-8.1",
                    message=f"runtime {part} {getattr(rt, part)}: the migration moves to {wanted}",
                )
            )
    status = j.matrix.status_of(ComponentKind.RUNTIME, rt.name, rt.version)
    if not out and status is not MatrixStatus.SUPPORTED:
        rule = "E-9.2" if status is None else "M-8.2"
        what = "unlisted: runtime fragmentation" if status is None else status.value
        out.append(
            Finding(
                field="manifest.runtime",
                rule=rule,
                message=f"runtime {rt.name} {rt.version} is {what}",
            )
        )
    out += _still_called(j, "runtime", "telemetry.calls_by_version")
    return Decision(findings=tuple(out))


# M-8.1: the four checks, by the name each result is recorded under (VALIDATION_CHECKS).
CHECKS: dict[str, Callable[[Judged], Decision]] = {
    "api_contract": check_api_contract,
    "workflow": check_workflows,
    "permission_boundary": check_permission_boundary,
    "runtime_compatibility": check_runtime,
}


def passed(results: Mapping[str, bool]) -> bool:
    """M-4.7: a manifest becomes the partner's only once its validation passed — each of the
    four checks recorded for it, and passed. A forced target applied at the window's end
    (M-2.3) before that, the manifest the partner shipped was never passed: it is not
    registered (the partner's registered one moves to the target)."""
    return all(results.get(name, False) for name in CHECKS)


def check_registration(
    manifest: Manifest, held: Holdings, tier: TierSpec | None, matrix: CompatibilityMatrix
) -> Decision:
    """A manifest registered with a partner (admin): its workflows governed by that same
    registration's grants, their triggers and handlers versioned (M-5.2) rows the matrix lists
    — supported, or deprecated: a partner may be registered on what is going away, its
    migration moves it; never an unlisted or retired one, which no deprecation notice would
    reach (M-5.1, E-9.2) — their permissions within the manifest's, and every permission
    bounded, within the tier and granted."""
    j = Judged(manifest=manifest, before=manifest, tier=tier, held=held, matrix=matrix)
    listed = frozenset({MatrixStatus.SUPPORTED, MatrixStatus.DEPRECATED})
    return Decision.merge(check_workflows(j, listed), check_permission_boundary(j))


def check_against_manifest(
    requested: Sequence[tuple[str, Grant]],
    manifest: Manifest,
    held: Holdings,
    removes: Sequence[str] = (),
) -> Decision:
    """Issue 20 at submission: a workflow grant the proposal requests for a workflow the
    partner's manifest runs must cover what that workflow asks for — every permission of it
    held still once the proposal's `removes` is taken away (E-2.7), or requested by the
    proposal — else, approved, the workflow would still fail validation's permission boundary
    (M-8.1): refused now, naming the permission."""
    asked = {wf.name.casefold(): wf for wf in manifest.workflows}
    kept = governance_update(held, add=(), removes=removes)
    covered = set(kept.permissions) | {p for _, g in requested for p in g.permissions}
    out = []
    for field, grant in requested:
        wf = asked.get(grant.name.casefold())
        if wf is None or not governs_workflow(grant):
            continue
        out += [
            Finding(
                field=f"{field}.permissions",
                rule="M-8.1",
                message=f"workflow {wf.name} of the partner's manifest asks for {perm}, which "
                "the partner will not hold (held, and not in `removes`) and this proposal does "
                "not request",
            )
            for perm in wf.permissions
            if perm not in covered
        ]
    return Decision(findings=tuple(out))
