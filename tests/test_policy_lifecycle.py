"""Stage order and step completeness (E-2.5 to E-2.7, E-9, E-12.1, M-4, M-7.1), categories (E-3),
tiers (E-7), migration (M-2, M-3, M-5, M-6, M-8), remediation (M-9) and stewardship (E-13.1,
M-10.1) — all pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from policy import remediation
from policy.decisions import Finding
from policy.document import DEFAULT_POLICY
from policy.evidence import (
    CompatibilityMatrix,
    MatrixEntry,
    Telemetry,
    TierEvidence,
    Violation,
)
from policy.expansion import (
    EXPANSION_STEWARDSHIP,
    MIGRATION_STEWARDSHIP,
    check_category,
    stewardship_signed_off,
)
from policy.forms import (
    Form,
    ImplementationReport,
    IntegrationPlan,
    MigrationDocumentation,
    MigrationPlan,
    Release,
    Rollout,
)
from policy.grants import Grant, GrantType, Holdings, governance_update
from policy.manifest import Manifest
from policy.migration import (
    NOTICE_ACTIONS,
    Governing,
    add_months,
    after_migration,
    check_fallback,
    check_fallback_period,
    check_request,
    completion_allowed,
    fallback_permissions,
    fallback_until,
    may_decline,
    migration_window,
    telemetry_health,
    trigger_class,
)
from policy.proposal import Proposal, check_submission, with_new_tier
from policy.steps import (
    EXPANSION_STAGES,
    MIGRATION_STAGES,
    check_remediation_step,
    check_transition,
    next_stage,
)
from policy.tiers import (
    downgrade_triggers,
    is_upgrade,
    new_tier_requirements,
    tier_above,
    tier_below,
    upgrade_eligibility,
)
from policy.validation import CHECKS, Judged
from policy.vocabulary import (
    VALIDATION_CHECKS,
    Body,
    ExpansionStage,
    MigrationStage,
    MigrationType,
    RiskLevel,
    Severity,
    Trigger,
    TriggerClass,
)
from testdata.factories import proposal_body

NOW = datetime(2026, 6, 30, tzinfo=UTC)
DOCUMENTATION_FIELDS = tuple(MigrationDocumentation.rules)
IMPLEMENTATION_FIELDS = tuple(ImplementationReport.rules)
MIGRATION_IMPLEMENTATION_FIELDS = IMPLEMENTATION_FIELDS


# --- stages and steps -----------------------------------------------------------------------


def test_expansion_stages_in_order() -> None:
    """E-12.1: Proposal, Evaluation, Approval, Integration, Release, Monitoring, Review."""
    assert [s.value for s in EXPANSION_STAGES] == [
        "Proposal",
        "Evaluation",
        "Approval",
        "Integration",
        "Release",
        "Monitoring",
        "Review",
    ]
    assert next_stage(EXPANSION_STAGES, ExpansionStage.APPROVAL) is ExpansionStage.INTEGRATION
    assert next_stage(EXPANSION_STAGES, ExpansionStage.REVIEW) is None
    skip = check_transition(
        EXPANSION_STAGES, ExpansionStage.EVALUATION, ExpansionStage.RELEASE, "E-12.1"
    )
    assert skip.rules == ["E-12.1"]


def test_migration_stages_in_order_and_notice_first() -> None:
    """M-4.1: notice first — notify, define the window, activate the fallback — then plan,
    implementation, validation, rollout, monitoring, completion (M-4.2 to M-4.7)."""
    assert MIGRATION_STAGES[0] is MigrationStage.NOTICE
    assert [s.value for s in MIGRATION_STAGES[1:]] == [
        "Plan",
        "Implementation",
        "Validation",
        "Rollout",
        "Monitoring",
        "Completion",
    ]
    assert NOTICE_ACTIONS == ("notify_partner", "define_window", "activate_fallback")


def _form_errors(form: type[Form], data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        form.model_validate(data)
    return {
        ".".join(str(p) for p in e["loc"]): (e.get("ctx") or {}).get("rule", e["type"])
        for e in info.value.errors()
    }


@pytest.mark.parametrize(
    ("form", "fields", "rule"),
    [
        (IntegrationPlan, ("versioning", "compatibility_rules", "rollout_plan"), "E-2.5"),
        (ImplementationReport, ("development", "testing", "documentation"), "E-2.6"),
        (
            MigrationPlan,
            ("strategy", "compatibility_plan", "testing_plan", "rollback_plan"),
            "M-4.2",
        ),
        (
            MigrationDocumentation,
            (
                "migration_guide",
                "compatibility_notes",
                "version_notes",
                "workflow_changes",
                "permission_changes",
            ),
            "M-7.1",
        ),
    ],
)
def test_incomplete_step_names_missing_parts(
    form: type[Form], fields: tuple[str, ...], rule: str
) -> None:
    """E-2.5 versioning, compatibility rules, rollout plan; E-2.6 development, testing,
    documentation (M-4.3 the same for a migration); M-4.2 strategy, compatibility, testing and
    rollback plans; M-7.1 the five required documents."""
    complete = dict.fromkeys(fields, "ref")
    form.model_validate(complete)
    partial = {**complete, fields[0]: " "}
    del partial[fields[-1]]
    assert _form_errors(form, partial) == {fields[0]: rule, fields[-1]: rule}
    assert MIGRATION_IMPLEMENTATION_FIELDS == IMPLEMENTATION_FIELDS  # M-4.3


def test_documentation_optional_parts_stay_optional() -> None:
    """M-7.1: tutorials and onboarding guides are optional."""
    docs = MigrationDocumentation.model_validate(dict.fromkeys(DOCUMENTATION_FIELDS, "x"))
    assert docs.tutorials is None and docs.onboarding_guides is None


RELEASE: dict[str, object] = {
    "version": "1.4.0",
    "migration_guide": "docs/1.4",
    "fallback_behaviour": "1.3 kept read-only",
    "compatibility": [{"kind": "runtime", "name": "kwanus-runtime", "version": "3.1"}],
}


def test_release_is_versioned_with_guides_matrix_update_and_fallback() -> None:
    """E-2.7 versioned release + migration guides; E-9.1 matrix update, fallback behaviour;
    E-9.2 no silent (unversioned) breaking change."""
    Release.model_validate(RELEASE)
    assert _form_errors(Release, {**RELEASE, "migration_guide": ""}) == {"migration_guide": "E-2.7"}
    assert _form_errors(Release, {**RELEASE, "compatibility": []}) == {"compatibility": "E-9.1"}
    no_fallback = {k: v for k, v in RELEASE.items() if k != "fallback_behaviour"}
    assert _form_errors(Release, no_fallback) == {"fallback_behaviour": "E-9.1"}
    unversioned = {k: v for k, v in RELEASE.items() if k != "version"}
    assert _form_errors(Release, unversioned) == {"version": "E-9.2"}


def test_rollout_must_be_versioned() -> None:
    """M-4.5 versioned release with the fallback kept; M-5.2 no unversioned change."""
    Rollout.model_validate({"version": "2.0.0"})
    assert _form_errors(Rollout, {}) == {"version": "M-5.2"}


def test_remediation_steps_in_order() -> None:
    """M-9.1: root cause, plan, fixes, re-validation, restore — in that order."""
    assert check_remediation_step([], "root_cause").allowed
    assert check_remediation_step(["root_cause"], "fixes").rules == ["M-9.1"]
    done = ["root_cause", "plan", "fixes", "revalidation"]
    assert check_remediation_step(done, "restore").allowed
    assert not check_remediation_step([*done, "restore"], "restore").allowed


# --- categories and the governance update ---------------------------------------------------


def test_category_shapes() -> None:
    """E-3.1 capabilities; E-3.2 a tier change is category B and B changes the tier; E-3.3
    integrations; E-3.4 governance expansions change the policy — they grant nothing, and take
    nothing away."""

    def rules(**changes: object) -> list[str]:
        return check_category(Proposal.model_validate(proposal_body(**changes)), "verified").rules

    assert rules() == []
    assert rules(requested_capabilities=[]) == ["E-3.1"]
    assert rules(category="B", migration_plan="m") == ["E-3.2"]
    assert rules(category="B", migration_plan="m", requested_tier="premier") == []
    assert rules(requested_tier="premier") == ["E-3.2"]
    assert rules(category="C", integrations=[]) == ["E-3.3"]
    change = {"policy_change": {"max_open_proposals_per_partner": 5}}
    assert rules(category="D", integrations=[], **change) == ["E-3.4"]
    assert rules(category="D", integrations=[], requested_capabilities=[], **change) == []
    # E-3.4 (Decision): D carries its policy change, and only D changes the policy
    assert rules(category="D", integrations=[], requested_capabilities=[]) == ["E-3.4"]
    assert rules(**change) == ["E-3.4"]
    d_removing = {"integrations": [], "requested_capabilities": [], "migration_plan": "m"}
    assert rules(category="D", removes=["orders-dashboard"], **d_removing, **change) == ["E-3.4"]


def test_release_adds_to_what_is_held_and_removes_exactly_what_it_names() -> None:
    """E-2.7 (Decision): the governance update is what the partner holds plus what was
    approved, minus exactly what `removes` names — a removed grant takes its permissions with
    it unless another grant (or the registration) carries them — and moves no tier."""
    held = Holdings(
        grants=(
            Grant(
                type="capability",
                name="legacy-export",
                kind="read_only",
                permissions=("legacy:read", "orders:read"),
            ),
            Grant(
                type="capability",
                name="customer-cards",
                kind="read_only",
                permissions=("customers:read",),
            ),
        ),
        registered=("orders:read",),
    )
    body = proposal_body(removes=["legacy-export"], migration_plan="m")
    proposal = Proposal.model_validate(body)
    updated = governance_update(held, add=proposal.grants, removes=proposal.removes)
    assert updated.capabilities == ("customer-cards", "order-trends", "orders-api")
    # legacy:read went with its grant; orders:read stays (registered); analytics:read is the
    # new grant's
    assert updated.permissions == ("analytics:read", "customers:read", "orders:read")
    again = governance_update(updated, add=proposal.grants, removes=[])
    assert again == updated  # granted twice: held once
    by_permission = governance_update(held, add=(), removes=["orders:read"])
    assert by_permission.permissions == ("customers:read", "legacy:read")


# --- tiers ----------------------------------------------------------------------------------


def telemetry(
    days_ago: int, success: float = 0.999, errors: float = 0.001, **usage: int
) -> Telemetry:
    end = NOW - timedelta(days=days_ago)
    return Telemetry(
        period_start=end - timedelta(days=7),
        period_end=end,
        workflow_success_rate=success,
        api_error_rate=errors,
        permission_usage=usage or {"orders:read": 10},
    )


GOOD = [telemetry(5), telemetry(20), telemetry(40)]


def eligibility(**changes: object) -> list[str]:
    evidence: dict[str, object] = {
        "telemetry": GOOD,
        "violations": [],
        "granted_permissions": ["orders:read"],
    }
    risk = changes.pop("risk_level", RiskLevel.LOW)
    evidence.update(changes)
    decision = upgrade_eligibility(
        TierEvidence.model_validate(evidence),
        risk_level=risk,  # type: ignore[arg-type]
        now=NOW,
        policy=DEFAULT_POLICY,
    )
    return [f.field for f in decision.findings]


def test_upgrade_when_every_condition_holds() -> None:
    """E-7.1: reliable, clean, minimal, low risk -> eligible."""
    assert eligibility() == []


def test_upgrade_refused_for_each_condition_in_turn() -> None:
    """E-7.1: each failed condition is named."""
    assert eligibility(telemetry=[telemetry(5, success=0.95), *GOOD[1:]]) == ["workflows_reliable"]
    assert eligibility(telemetry=GOOD[:2]) == ["workflows_reliable"]  # too little evidence
    assert eligibility(telemetry=[telemetry(200), telemetry(300), telemetry(400)]) == [
        "workflows_reliable",
        "permissions_minimal",
    ]
    recent = Violation(
        at=NOW - timedelta(days=30),
        severity=Severity.MINOR,
        kind="x",
        resolved_at=NOW - timedelta(days=20),
    )
    assert eligibility(violations=[recent]) == ["compliance_clean"]
    old = recent.model_copy(update={"at": NOW - timedelta(days=400)})
    assert eligibility(violations=[old]) == []
    assert eligibility(granted_permissions=["orders:read", "orders:write"]) == [
        "permissions_minimal"
    ]
    assert eligibility(risk_level=RiskLevel.MEDIUM) == ["risk_low"]


def test_downgrade_triggers() -> None:
    """E-7.2: compliance violations, workflow failures, permission misuse, instability."""

    def triggers(reports: list[Telemetry], violations: list[Violation] | None = None) -> list[str]:
        evidence = TierEvidence(
            telemetry=tuple(reports),
            violations=tuple(violations or []),
            granted_permissions=("orders:read",),
        )
        found = downgrade_triggers(evidence, now=NOW, policy=DEFAULT_POLICY)
        return [f.field for f in found.findings]

    assert triggers(GOOD) == []
    severe = Violation(at=NOW, severity=Severity.SEVERE, kind="data leak")
    assert triggers(GOOD, [severe]) == ["compliance_violations"]
    assert triggers([telemetry(3, success=0.5)]) == ["workflow_failures"]
    assert triggers([telemetry(3, errors=0.3)]) == ["partner_instability"]
    assert triggers([telemetry(3, **{"payments:write": 4})]) == ["permission_misuse"]


def test_new_tier_requirements() -> None:
    """E-7.3: governance approval, compatibility plan, lifecycle plan, sustainability review."""
    ok = new_tier_requirements(
        approved=True, compatibility_plan="c", lifecycle_plan="l", sustainability_reviewed=True
    )
    assert ok.allowed
    missing = new_tier_requirements(
        approved=False, compatibility_plan=" ", lifecycle_plan=None, sustainability_reviewed=False
    )
    assert len(missing.findings) == 4 and missing.rules == ["E-7.3"]
    assert tier_below("verified", DEFAULT_POLICY) == "community"
    assert tier_below("community", DEFAULT_POLICY) is None
    assert tier_above("premier", DEFAULT_POLICY) == "strategic"


def test_new_tier_checked_at_submission() -> None:
    """E-7.3: a new tier is a category B proposal naming it, new to the catalogue, above an
    existing tier, within the spec's floors (no forbidden kinds); it ranks where it lands."""
    spec = {  # verified's catalogue and a little: between verified and premier
        "name": "gold",
        "capability_kinds": ["read_only", "ui_component", "workflow_trigger", "write"],
        "integration_kinds": ["api", "extension", "workflow", "write", "advanced_permission"],
        "permission_actions": ["read", "write"],
    }
    new_tier = {"spec": spec, "after": "verified", "compatibility_plan": "c"}

    def fields(**changes: object) -> list[str]:
        body = proposal_body(
            category="B", requested_tier="gold", migration_plan="m", new_tier=new_tier
        )
        body.update(changes)
        found = check_submission(Proposal.model_validate(body), DEFAULT_POLICY).findings
        return sorted({f.field for f in found if f.field.startswith("new_tier")})

    assert fields() == []
    assert fields(category="A", requested_tier="verified") == ["new_tier.spec.name"]
    assert fields(
        new_tier={**new_tier, "spec": {**spec, "name": "premier"}}, requested_tier="premier"
    ) == ["new_tier.spec.name"]
    assert fields(new_tier={**new_tier, "after": "platinum"}) == ["new_tier.after"]
    forbidden = {**spec, "capability_kinds": [*spec["capability_kinds"], "raw_data_access"]}
    assert fields(new_tier={**new_tier, "spec": forbidden}) == ["new_tier.spec"]
    # E-7.4: ranked above verified, it holds at least what verified does — and below premier,
    # no more than premier: a tier placed low with a wide catalogue would be an upgrade in
    # disguise (a "downgrade" onto it widening what the partner may do)
    narrow = {**spec, "permission_actions": ["read"]}
    assert fields(new_tier={**new_tier, "spec": narrow}) == ["new_tier.spec"]
    wide = {**spec, "permission_actions": ["read", "write", "admin", "delete"]}
    assert fields(new_tier={**new_tier, "spec": wide}) == ["new_tier.spec"]
    rules = {
        f.rule
        for f in check_submission(
            Proposal.model_validate(
                proposal_body(
                    category="B",
                    requested_tier="gold",
                    migration_plan="m",
                    new_tier={**new_tier, "spec": wide},
                )
            ),
            DEFAULT_POLICY,
        ).findings
    }
    assert "E-7.4" in rules
    gold = Proposal.model_validate(
        proposal_body(category="B", requested_tier="gold", migration_plan="m", new_tier=new_tier)
    )
    assert is_upgrade(gold, "verified", DEFAULT_POLICY)
    assert not is_upgrade(gold, "premier", DEFAULT_POLICY)
    assert with_new_tier(DEFAULT_POLICY, gold.new_tier).tier_names[2] == "gold"  # type: ignore[arg-type]


# --- migration ------------------------------------------------------------------------------


def test_trigger_classes_and_decline() -> None:
    """M-2.1 required, M-2.2 optional (may decline), M-2.3 forced (cannot decline, shorter
    window)."""
    required = [
        Trigger.OS_MAJOR_VERSION,
        Trigger.API_DEPRECATION,
        Trigger.WORKFLOW_DEPRECATION,
        Trigger.PERMISSION_CHANGE,
        Trigger.RUNTIME_CHANGE,
    ]
    optional = [Trigger.TIER_UPGRADE, Trigger.TIER_DOWNGRADE, Trigger.CAPABILITY_EXPANSION]
    forced = [Trigger.COMPLIANCE_VIOLATION, Trigger.SECURITY_VIOLATION, Trigger.PARTNER_INSTABILITY]
    assert {trigger_class(t) for t in required} == {TriggerClass.REQUIRED}
    assert {trigger_class(t) for t in optional} == {TriggerClass.OPTIONAL}
    assert {trigger_class(t) for t in forced} == {TriggerClass.FORCED}
    assert all(may_decline(t).allowed for t in optional)
    assert may_decline(Trigger.API_DEPRECATION).rules == ["M-2.1"]
    assert may_decline(Trigger.SECURITY_VIOLATION).rules == ["M-2.3"]
    assert migration_window(Trigger.SECURITY_VIOLATION, DEFAULT_POLICY) < migration_window(
        Trigger.API_DEPRECATION, DEFAULT_POLICY
    )


def request(**changes: object) -> list[str]:
    args: dict[str, object] = {
        "trigger": Trigger.API_DEPRECATION,
        "type_": MigrationType.VERSION,
        "subtype": "api",
        "fallback_months": None,
        "policy": DEFAULT_POLICY,
    }
    args.update(changes)
    return check_request(**args).rules  # type: ignore[arg-type]


def test_types_and_subtypes() -> None:
    """M-3.1: version (os, api, workflow), tier (upgrade, downgrade), runtime (extension,
    workflow, intelligence), permission (reduction, governed expansion, restructuring),
    workflow (trigger, handler, permission)."""
    assert request() == []
    assert request(subtype="upgrade") == ["M-3.1"]
    down = {"type_": MigrationType.TIER, "subtype": "downgrade", "current_tier": "premier"}
    assert request(trigger=Trigger.TIER_DOWNGRADE, target={"tier": "verified"}, **down) == []
    # a required trigger never moves a tier: not its type (M-2.1), not a downgrade (E-7.2)
    runtime = {"trigger": Trigger.RUNTIME_CHANGE, "target": {"tier": "verified"}}
    assert request(**runtime, **down) == ["E-7.2", "M-2.1"]
    assert request(**runtime, type_=MigrationType.RUNTIME, subtype="extension") == ["M-3.1"]


def test_permission_expansion_is_governed() -> None:
    """M-3.2: a permission expansion needs an approved expansion proposal; a capability
    expansion migration names a released one."""
    args = {
        "trigger": Trigger.PERMISSION_CHANGE,
        "type_": MigrationType.PERMISSION,
        "subtype": "governed_expansion",
    }
    assert request(**args) == ["M-3.2"]
    assert request(**args, governed_by=Governing.APPROVED) == []
    args["trigger"] = Trigger.CAPABILITY_EXPANSION
    assert request(**args, governed_by=Governing.APPROVED) == ["M-3.2"]
    assert request(**args, governed_by=Governing.RELEASED) == []


def test_fallback_duration_boundaries() -> None:
    """M-6.2: 5 months 29 days refused, 6 months accepted, 12 by default."""
    start = datetime(2026, 1, 15, tzinfo=UTC)
    six = add_months(start, 6)
    assert six == datetime(2026, 7, 15, tzinfo=UTC)
    short = add_months(start, 5) + timedelta(days=29)
    assert check_fallback_period(start, short, DEFAULT_POLICY).rules == ["M-6.2"]
    assert check_fallback_period(start, six, DEFAULT_POLICY).allowed
    assert check_fallback_period(start, six - timedelta(seconds=1), DEFAULT_POLICY).rules == [
        "M-6.2"
    ]
    assert fallback_until(start, DEFAULT_POLICY.fallback_default_months) == datetime(
        2027, 1, 15, tzinfo=UTC
    )
    assert request(fallback_months=5) == ["M-6.2"]
    assert request(fallback_months=6) == []
    assert add_months(datetime(2026, 8, 31, tzinfo=UTC), 6) == datetime(2027, 2, 28, tzinfo=UTC)


def test_fallback_read_only_and_never_wider() -> None:
    """M-6.1: fallback permissions are read-only; M-6.3: a fallback never expands them."""
    current = ["orders:read", "orders:write", "catalog:read"]
    assert fallback_permissions(current) == ["catalog:read", "orders:read"]
    assert check_fallback(["orders:read"], current).allowed
    assert check_fallback(["orders:write"], current).rules == ["M-6.1"]
    assert check_fallback(["payments:read"], current).rules == ["M-6.3"]


MATRIX = CompatibilityMatrix(
    entries=(
        MatrixEntry(kind="os", name="kwanus", version="5.0", status="supported"),
        MatrixEntry(kind="os", name="kwanus", version="4.2", status="deprecated"),
        MatrixEntry(kind="api", name="kwanus", version="3.0", status="supported"),
        MatrixEntry(kind="runtime", name="kwanus-runtime", version="3.0", status="supported"),
        MatrixEntry(kind="runtime", name="kwanus-runtime", version="2.0", status="retired"),
    )
)


SYNC = {
    "name": "sync",
    "trigger": "order.created@1.0",
    "handler": "notify.partner@1.0",
    "permissions": ["orders:read"],
}
WORKFLOW_ROWS = (
    MatrixEntry(kind="workflow", name="order.created", version="1.0", status="supported"),
    MatrixEntry(kind="workflow", name="notify.partner", version="1.0", status="supported"),
    MatrixEntry(kind="workflow", name="order.paid", version="1.0", status="deprecated"),
)
HELD = Holdings(
    grants=(Grant(type=GrantType.INTEGRATION, name="sync", kind="workflow"),),
    registered=("orders:read", "orders:write"),
)


def judged(**changes: Any) -> Judged:
    """A partner on verified, holding workflow `sync` and orders:read/write, moving from OS 4.2
    and API 2.1 to 5.0 and 3.0, shipping a manifest with `changes`."""
    shipped: dict[str, Any] = {
        "os_version": "5.0",
        "api_version": "3.0",
        "runtime": {"name": "kwanus-runtime", "version": "3.0"},
        "permissions": ["orders:read", "orders:write"],
        "workflows": [SYNC],
    }
    values: dict[str, Any] = {
        "before": Manifest.model_validate({**shipped, "os_version": "4.2", "api_version": "2.1"}),
        "target": {"os_version": "5.0", "api_version": "3.0"},
        "tier": DEFAULT_POLICY.tier("verified"),
        "held": HELD,
        "matrix": MATRIX.model_copy(update={"entries": MATRIX.entries + WORKFLOW_ROWS}),
    }
    for key in list(changes):
        if key in values or key in ("telemetry", "since"):
            values[key] = changes.pop(key)
    shipped.update(changes)
    return Judged(manifest=Manifest.model_validate(shipped), **values)


def rules_of(check: str, j: Judged) -> list[tuple[str, str]]:
    return [(f.field, f.rule) for f in CHECKS[check](j).findings]


def test_validation_passes_on_an_aligned_manifest() -> None:
    """M-4.4 / M-8.1: API contract, workflow, permission boundary, runtime — each passes."""
    assert all(check(judged()).allowed for check in CHECKS.values())
    assert list(CHECKS) == list(VALIDATION_CHECKS)


def test_validation_failures_on_the_manifest() -> None:
    """M-8.1 (Decision): the manifest against the target, the matrix, the tier and the grants.
    M-5.1 a version not the target's or not supported; M-8.2 unbounded permissions, ungoverned
    workflows, incompatible runtimes; M-5.2 an unversioned trigger; E-9.2 an unlisted runtime
    is fragmentation; M-8.1 the permission boundary is the tier's and the grants'."""
    assert rules_of("api_contract", judged(os_version="4.2")) == [
        ("manifest.os_version", "M-8.1"),
        ("manifest.os_version", "M-5.1"),
    ]
    assert rules_of("api_contract", judged(target={})) == []
    ungoverned = {**SYNC, "name": "other"}
    assert rules_of("workflow", judged(workflows=[ungoverned])) == [
        ("manifest.workflows.0.name", "M-8.2")
    ]
    unversioned = {**SYNC, "trigger": "order.created"}
    assert rules_of("workflow", judged(workflows=[unversioned])) == [
        ("manifest.workflows.0.trigger", "M-5.2")
    ]
    deprecated = {**SYNC, "handler": "order.paid@1.0"}
    assert rules_of("workflow", judged(workflows=[deprecated])) == [
        ("manifest.workflows.0.handler", "M-5.1")
    ]
    wider = {**SYNC, "permissions": ["stock:read"]}
    assert rules_of("workflow", judged(workflows=[wider])) == [
        ("manifest.workflows.0.permissions.0", "M-8.1")
    ]
    assert rules_of("permission_boundary", judged(permissions=["orders:*"])) == [
        ("manifest.permissions.0", "M-8.2")
    ]
    community = judged(tier=DEFAULT_POLICY.tier("community"))
    assert rules_of("permission_boundary", community) == [("manifest.permissions.1", "M-8.1")]
    assert rules_of("permission_boundary", judged(permissions=["stock:read"])) == [
        ("manifest.permissions.0", "M-8.1")
    ]
    retired = judged(runtime={"name": "kwanus-runtime", "version": "2.0"})
    assert rules_of("runtime_compatibility", retired) == [("manifest.runtime", "M-8.2")]
    unlisted = judged(runtime={"name": "kwanus-runtime", "version": "9.9"})
    assert rules_of("runtime_compatibility", unlisted) == [("manifest.runtime", "E-9.2")]
    elsewhere = judged(
        target={"runtime_version": "3.0"}, runtime={"name": "kwanus-runtime", "version": "2.0"}
    )
    assert rules_of("runtime_compatibility", elsewhere) == [("manifest.runtime.version", "M-8.1")]


def test_telemetry_since_the_move_shows_no_calls_to_what_is_moved_off() -> None:
    """M-8.1 (Decision): the platform's reports begun after the implementation show no calls to
    the API (or OS, runtime, workflow) version the migration moves off; earlier ones do not
    count."""
    moved = datetime(2026, 6, 1, tzinfo=UTC)

    def report(start: datetime, calls: dict[str, int]) -> Telemetry:
        return Telemetry(
            period_start=start,
            period_end=start + timedelta(days=1),
            workflow_success_rate=1,
            api_error_rate=0,
            calls_by_version=calls,
        )

    before = report(moved - timedelta(days=2), {"api:2.1": 500})
    after = report(moved + timedelta(hours=1), {"api:2.1": 3, "api:3.0": 90})
    assert CHECKS["api_contract"](judged(telemetry=(before,), since=moved)).allowed
    failed = CHECKS["api_contract"](judged(telemetry=(before, after), since=moved))
    assert [(f.field, f.rule) for f in failed.findings] == [("telemetry.calls_by_version", "M-8.1")]
    assert "3 calls to api 2.1" in failed.findings[0].message


def test_validation_judges_what_the_partner_will_hold() -> None:
    """M-8.1 / E-7.4 / M-2.3: a downgrade's tier and what it leaves; a forced reduction's
    read-only permissions; a category-B migration's grants that come with its tier."""
    extra = Grant(type=GrantType.CAPABILITY, name="adm", kind="write", permissions=("x:write",))
    cases: list[tuple[dict[str, Any], str, tuple[str, ...], int]] = [
        (  # a forced downgrade to community: read-only, no workflow kinds there
            dict(
                target={"tier": "community"},
                trigger=Trigger.COMPLIANCE_VIOLATION,
                type_=MigrationType.TIER,
                subtype="downgrade",
            ),
            "community",
            ("orders:read",),
            0,
        ),
        (  # a forced permission reduction keeps the tier and the read-only permissions
            dict(
                target={},
                trigger=Trigger.SECURITY_VIOLATION,
                type_=MigrationType.PERMISSION,
                subtype="reduction",
            ),
            "verified",
            ("orders:read",),
            1,
        ),
        (  # an approved upgrade comes with its grants
            dict(
                target={"tier": "premier"},
                trigger=Trigger.TIER_UPGRADE,
                type_=MigrationType.TIER,
                subtype="upgrade",
                adds=(extra,),
            ),
            "premier",
            ("orders:read", "orders:write", "x:write"),
            2,
        ),
        (  # a version move changes nothing the partner holds
            dict(
                target={"api_version": "3.0"},
                trigger=Trigger.API_DEPRECATION,
                type_=MigrationType.VERSION,
                subtype="api",
            ),
            "verified",
            ("orders:read", "orders:write"),
            1,
        ),
    ]
    for kwargs, tier_name, permissions, grants in cases:
        tier, after = after_migration(HELD, tier_now="verified", policy=DEFAULT_POLICY, **kwargs)
        assert tier is not None and tier.name == tier_name, kwargs
        assert (after.permissions, len(after.grants)) == (permissions, grants), kwargs


def test_monitoring_health() -> None:
    """M-4.6: workflow reliability, permission usage, API error rates (and deprecated calls)."""
    granted = ["orders:read"]
    assert telemetry_health([telemetry(1)], granted, DEFAULT_POLICY).allowed
    assert telemetry_health([], granted, DEFAULT_POLICY).rules == ["M-4.6"]
    sick = telemetry(1, success=0.9, errors=0.2, **{"payments:write": 1})
    fields = [f.field for f in telemetry_health([sick], granted, DEFAULT_POLICY).findings]
    assert fields == ["workflow_success_rate", "api_error_rate", "permission_usage"]
    # A migration's: no call in the period to what it moved off (M-8.1 Decision).
    old = telemetry(1).model_copy(update={"calls_by_version": {"api:2.1": 3, "api:3.0": 9}})
    moved = telemetry_health([old], granted, DEFAULT_POLICY, moved_off=["api:2.1"])
    assert [(f.field, f.rule) for f in moved.findings] == [("calls_by_version", "M-4.6")]
    assert telemetry_health([old], granted, DEFAULT_POLICY, moved_off=["os:4.2"]).allowed


def test_completion_only_after_the_period_and_healthy() -> None:
    """M-4.7: the fallback is removed only after its period and with healthy telemetry."""
    until = NOW + timedelta(days=1)
    healthy = telemetry_health([telemetry(1)], ["orders:read"], DEFAULT_POLICY)
    assert completion_allowed(now=NOW, fallback_until=until, health=healthy).rules == ["M-4.7"]
    assert completion_allowed(now=until, fallback_until=until, health=healthy).allowed
    sick = telemetry_health([telemetry(1, success=0.5)], ["orders:read"], DEFAULT_POLICY)
    assert completion_allowed(now=until, fallback_until=until, health=sick).rules == ["M-4.6"]


# --- remediation ----------------------------------------------------------------------------


def test_remediation_windows_exact() -> None:
    """M-9.2: minor 30 days, moderate 14 days, severe at once — from the violation. A severe
    violation is restricted at once and then remediated within the partner-step period, with
    SCO's review before access returns."""
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert remediation.deadline(Severity.MINOR, at, DEFAULT_POLICY) - at == timedelta(days=30)
    assert remediation.deadline(Severity.MODERATE, at, DEFAULT_POLICY) - at == timedelta(days=14)
    assert DEFAULT_POLICY.remediation_windows[Severity.SEVERE] == timedelta(0)
    assert (
        remediation.deadline(Severity.SEVERE, at, DEFAULT_POLICY) - at
        == DEFAULT_POLICY.partner_step.period
    )
    assert remediation.restrict_at_once(Severity.SEVERE)
    assert remediation.needs_sco_review(Severity.SEVERE)
    assert not remediation.restrict_at_once(Severity.MODERATE)


def test_failed_validation_severity() -> None:
    """M-8.2 → M-9.2: what §8 forbids takes its check's severity from the policy (unbounded
    permissions severe; ungoverned workflows, incompatible runtimes moderate); anything else
    a failed validation finds is minor; the worst finding decides."""

    def severity(**failures: list[Finding]) -> Severity:
        return remediation.validation_severity(failures, DEFAULT_POLICY)

    unlisted = Finding(field="runtime", rule="E-9.2", message="unlisted")
    retired = Finding(field="runtime", rule="M-8.2", message="retired")
    ungoverned = Finding(field="workflows.0", rule="M-8.2", message="ungoverned")
    unbounded = Finding(field="permissions.0", rule="M-8.2", message="unbounded")
    above_tier = Finding(field="permissions.1", rule="M-8.1", message="exceeds tier")
    assert severity(runtime_compatibility=[unlisted]) is Severity.MINOR
    assert severity(permission_boundary=[above_tier]) is Severity.MINOR
    assert severity(runtime_compatibility=[retired]) is Severity.MODERATE
    assert severity(workflow=[ungoverned], runtime_compatibility=[unlisted]) is Severity.MODERATE
    assert severity(permission_boundary=[above_tier, unbounded]) is Severity.SEVERE
    lenient = DEFAULT_POLICY.model_copy(
        update={
            "validation_severity": {
                **DEFAULT_POLICY.validation_severity,
                "permission_boundary": Severity.MODERATE,
            }
        }
    )
    assert (
        remediation.validation_severity({"permission_boundary": [unbounded]}, lenient)
        is Severity.MODERATE
    )


def test_missed_window_escalates_to_a_forced_downgrade() -> None:
    """M-9.3 / E-7.2: access stays restricted and a forced tier-downgrade migration starts."""
    esc = remediation.missed_window("premier", DEFAULT_POLICY)
    assert esc.keep_restricted and esc.target_tier == "verified"
    assert (esc.type_, esc.subtype) == (MigrationType.TIER, "downgrade")
    assert trigger_class(esc.trigger) is TriggerClass.FORCED
    assert {"M-9.3", "E-7.2"} <= set(esc.rules)
    lowest = remediation.missed_window("community", DEFAULT_POLICY)
    assert (lowest.type_, lowest.subtype, lowest.target_tier) == (
        MigrationType.PERMISSION,
        "reduction",
        None,
    )


# --- stewardship ----------------------------------------------------------------------------


def test_annual_stewardship_tasks_and_signoffs() -> None:
    """E-13.1 expansion outcomes, rules, governance, compatibility matrix; M-10.1 migration
    review, compatibility, lifecycle, sustainability — signed off by TSC, SCO, ERC, CGB."""
    assert EXPANSION_STEWARDSHIP == (
        "review_expansion_outcomes",
        "update_expansion_rules",
        "update_governance",
        "update_compatibility_matrix",
    )
    assert MIGRATION_STEWARDSHIP == (
        "migration_review",
        "compatibility_update",
        "lifecycle_update",
        "sustainability_review",
    )
    assert stewardship_signed_off({Body.TSC, Body.SCO, Body.ERC}).rules == ["M-10.1"]
    assert stewardship_signed_off(set(Body)).allowed
