"""Valid inputs to build on: each test changes only what it is about."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kwanus.models.common import Awaiting, RecordEvent
from kwanus.models.expansion import ExpansionStatus
from kwanus.models.migration import MigrationStatus
from kwanus.models.remediation import RemediationStatus
from policy.evidence import Telemetry
from policy.migration import trigger_class
from policy.review import criteria_of
from policy.vocabulary import (
    Body,
    Category,
    ExpansionStage,
    MigrationStage,
    MigrationType,
    ProcessKind,
    ProcessStatus,
    Role,
    Severity,
    Trigger,
)
from store import repo
from store.db import Database

# A report as the platform makes it (E-7.1: only the platform's telemetry is evidence), for tests
# that seed evidence where no API runs (the time-skipping server's clock is not the API's).
PLATFORM_REPORT: dict[str, Any] = {"reported_by": "tok_platform", "reporter_role": Role.PLATFORM}

# Steps' bodies, complete (each form's every required field).
INTEGRATION_PLAN = {"versioning": "semver", "compatibility_rules": "additive", "rollout_plan": "c"}
# E-2.6, M-7.1: each document a reference (a URL or a repository path), none repeated.
IMPLEMENTATION = {
    "development": "https://git.example.com/acme/widget/pull/1",
    "testing": "ci/results/1.xml",
    "documentation": "docs/widget.md",
}
RELEASE = {
    "version": "1.0.0",
    "migration_guide": "docs/1.0",
    "fallback_behaviour": "off",
    "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.0"}],
}
OUTCOME_REVIEW = {"outcome": "successful", "notes": "as planned"}
MIGRATION_PLAN = {
    "strategy": "s",
    "compatibility_plan": "c",
    "testing_plan": "t",
    "rollback_plan": "r",
}
MIGRATION_DOCS = {
    "migration_guide": "docs/migration/guide.md",
    "compatibility_notes": "docs/migration/compatibility.md",
    "version_notes": "docs/migration/versions.md",
    "workflow_changes": "docs/migration/workflows.md",
    "permission_changes": "docs/migration/permissions.md",
}
ROLLOUT = {"version": "5.0.0"}
# What partner acme (`partner_body`) ships once moved to OS 5.0 and API 3.0 (a migration's
# implementation carries it, M-8.1): its runtime, the permission it holds, no workflows.
MANIFEST: dict[str, Any] = {
    "os_version": "5.0",
    "api_version": "3.0",
    "runtime": {"name": "kwanus-runtime", "version": "3.0"},
    "permissions": ["orders:read"],
    "workflows": [],
}
MIGRATION_IMPLEMENTATION = {**IMPLEMENTATION, "manifest": MANIFEST}


def manifest(**changes: Any) -> dict[str, Any]:
    """`MANIFEST` with `changes`."""
    return {**MANIFEST, **changes}


def partner_body(partner_id: str = "acme", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": partner_id,
        "name": f"{partner_id.title()} Corp",
        "tier": "verified",
        "os_version": "4.2",
        "api_version": "2.1",
        "runtime": {"name": "kwanus-runtime", "version": "3.0"},
        "capabilities": ["orders-dashboard"],
        "permissions": ["orders:read"],
    }
    body.update(changes)
    return body


def proposal_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "A",
        "description": "A read-only order analytics widget",
        "justification": "Merchants ask for order trends in their dashboard",
        "requested_tier": "verified",
        "requested_capabilities": [
            # A permission `partner_body()` does not register: held already, it would be
            # refused (E-2.7).
            {"name": "order-trends", "kind": "read_only", "permissions": ["analytics:read"]}
        ],
        "integrations": [{"name": "orders-api", "kind": "api"}],
        "governance_alignment": "Uses only governed read APIs",
        "compatibility_impact": "None: additive",
        "security_impact": "Read-only, partner-scoped data",
        "lifecycle_plan": "Supported for two OS major versions",
        "risk_mitigation": "Feature flag per merchant",
        "fallback_plan": "Disable the widget",
        "monitoring_plan": "Error rate and latency dashboards",
    }
    body.update(changes)
    return body


def event(key: str = "expansion-x:submitted", **changes: Any) -> RecordEvent:
    values: dict[str, Any] = {
        "key": key,
        "workflow_id": "expansion-x",
        "process": ProcessKind.EXPANSION,
        "process_id": "x",
        "partner_id": "acme",
        "event": "submitted",
        "actor": "partner:acme",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "stage": "Proposal",
        "status": ProcessStatus.ACTIVE,
        "awaiting": [Awaiting(actor="TSC", action="review")],
        "rules": ["E-2.1"],
        "policy_version": 1,
    }
    values.update(changes)
    return RecordEvent(**values)


def process_state(
    kind: ProcessKind, process_id: str, partner_id: str, /, **fields: Any
) -> dict[str, Any]:
    """The state a process's projection keeps — its own status model, as JSON — with `fields`
    set and the rest as a new process of that kind has them."""
    base: dict[str, Any] = {
        "id": process_id,
        "workflow_id": f"{kind.value}-{process_id}",
        "partner_id": partner_id,
        "status": ProcessStatus.ACTIVE,
        "policy_version": 1,
    }
    at = datetime(2026, 1, 1, tzinfo=UTC)
    model: type[ExpansionStatus | MigrationStatus | RemediationStatus]
    if kind is ProcessKind.EXPANSION:
        model = ExpansionStatus
        base |= {
            "category": Category.CAPABILITY,
            "stage": ExpansionStage.PROPOSAL,
            "proposal_sha256": "0" * 64,
            "submitted_at": at,
        }
    elif kind is ProcessKind.MIGRATION:
        model = MigrationStatus
        base |= {
            "trigger": Trigger.OS_MAJOR_VERSION,
            "trigger_class": trigger_class(Trigger.OS_MAJOR_VERSION),
            "type_": MigrationType.VERSION,
            "subtype": "os_major",
            "target": {},
            "stage": MigrationStage.NOTICE,
            "started_at": at,
        }
    else:
        model = RemediationStatus
        base |= {"severity": Severity.MINOR, "kind": "violation", "stage": "Remediation"}
        base |= {"opened_at": at}
    return model.model_validate(base | fields).model_dump(mode="json")


def platform_report(
    db: Database,
    end: datetime,
    *,
    partner_id: str = "acme",
    success: float = 0.999,
    errors: float = 0.001,
    usage: dict[str, int] | None = None,
) -> None:
    """One week of the partner's telemetry ending at `end`, as the platform reports it (E-7.1:
    the only evidence)."""
    with db.session() as session:
        repo.add_telemetry(
            session=session,
            **PLATFORM_REPORT,
            partner_id=partner_id,
            report=Telemetry(
                period_start=end - timedelta(days=7),
                period_end=end,
                workflow_success_rate=success,
                api_error_rate=errors,
                permission_usage=usage if usage is not None else {"orders:read": 5},
            ),
        )


def record_process(
    db: Database, kind: ProcessKind, process_id: str, partner_id: str, step: str, **changes: Any
) -> None:
    """Seed the store with one governance event of `<kind>-<process_id>` (and its projection),
    as the process's workflow would have written it."""
    workflow_id = f"{kind.value}-{process_id}"
    changes.setdefault("awaiting", [])
    with db.session() as session:
        repo.record_event(
            session=session,
            event=event(
                f"{workflow_id}:{step}",
                workflow_id=workflow_id,
                process=kind,
                process_id=process_id,
                partner_id=partner_id,
                **changes,
            ),
        )


def review(body: Body) -> dict[str, Any]:
    """A complete review by `body`: every criterion of its own (E-4) passed, approve."""
    return {"criteria": dict.fromkeys(criteria_of(body), "pass"), "recommendation": "approve"}
