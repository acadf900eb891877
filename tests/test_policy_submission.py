"""Submission rules decided by `policy/` (pure): what a proposal must carry and what it may ask."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from policy.document import DEFAULT_POLICY
from policy.partners import check_profile
from policy.proposal import REQUIRED_PROPOSAL_FIELDS, Proposal, check_submission
from policy.vocabulary import CapabilityKind, Classification, IntegrationKind
from testdata.factories import proposal_body

ROOT = Path(__file__).resolve().parent.parent


def _errors(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        Proposal.model_validate(body)
    return {".".join(str(p) for p in e["loc"]): e for e in info.value.errors()}


def test_every_missing_required_field_is_named_at_once() -> None:
    """E-2.1: a proposal missing fields is refused with every missing one named."""
    body = {"category": "A"}
    errors = _errors(body)
    assert set(errors) == set(REQUIRED_PROPOSAL_FIELDS)
    assert all(e["ctx"]["rule"] == "E-2.1" for e in errors.values())


def test_blank_text_counts_as_missing() -> None:
    """E-2.1: whitespace is not a description."""
    errors = _errors(proposal_body(description="   ", lifecycle_plan=""))
    assert set(errors) == {"description", "lifecycle_plan"}
    assert errors["description"]["ctx"]["rule"] == "E-2.1"


def test_required_fields_are_the_spec_list() -> None:
    """E-2.1: the model's required fields are exactly the spec's (plus the category)."""
    required = {n for n, f in Proposal.model_fields.items() if f.is_required()}
    assert required == set(REQUIRED_PROPOSAL_FIELDS) | {"category"}


@pytest.mark.parametrize(
    ("changes", "applicable"),
    [
        ({"category": "B"}, True),
        ({"breaking_change": True, "release_version": "2.0.0"}, True),
        ({"removes": ["orders:write"]}, True),
        ({}, False),
        ({"category": "C"}, False),
    ],
)
def test_migration_plan_required_only_when_applicable(
    changes: dict[str, Any], applicable: bool
) -> None:
    """E-2.1a: tier change, removal/change of a capability or permission, or a breaking change
    make the migration plan applicable — and then required (E-2.1)."""
    body = proposal_body(**changes)
    if applicable:
        errors = _errors(body)
        assert set(errors) == {"migration_plan"}
        assert errors["migration_plan"]["ctx"]["rule"] == "E-2.1a"
        ok = Proposal.model_validate({**body, "migration_plan": "Dual-run for one release"})
        assert ok.migration_plan_required
    else:
        assert not Proposal.model_validate(body).migration_plan_required


def test_applicable_migration_plan_named_alongside_other_errors() -> None:
    """E-2.1a with E-2.1: one answer names the migration plan too, even when other fields fail."""
    body = proposal_body(category="B")
    del body["justification"]
    body["requested_capabilities"] = "not a list"
    assert set(_errors(body)) == {"justification", "requested_capabilities", "migration_plan"}


def test_unknown_fields_are_refused() -> None:
    assert set(_errors(proposal_body(status="approved"))) == {"status"}


def test_allowed_kinds_pass_without_flags() -> None:
    """E-6.1, E-8.1: read-only, workflow triggers and UI components; APIs, workflows and
    extensions are allowed as they are."""
    body = proposal_body(
        requested_capabilities=[
            {"name": "a", "kind": "read_only"},
            {"name": "b", "kind": "workflow_trigger"},
            {"name": "c", "kind": "ui_component"},
        ],
        integrations=[
            {"name": "x", "kind": "api"},
            {"name": "y", "kind": "workflow"},
            {"name": "z", "kind": "extension"},
        ],
    )
    decision = check_submission(Proposal.model_validate(body), DEFAULT_POLICY)
    assert decision.allowed and decision.flags == ()


def test_restricted_kinds_accepted_and_flagged() -> None:
    """E-6.2, E-8.2: write, advanced permissions, intelligence workflows are accepted but
    flagged for SCO."""
    body = proposal_body(
        requested_tier="strategic",  # the tier whose catalogue holds intelligence workflows
        requested_capabilities=[{"name": "w", "kind": "write"}],
        integrations=[{"name": "ai", "kind": "intelligence_workflow"}],
    )
    decision = check_submission(Proposal.model_validate(body), DEFAULT_POLICY)
    assert decision.allowed
    assert {(f.field, f.rule) for f in decision.flags} == {
        ("requested_capabilities.0.kind", "E-6.2"),
        ("integrations.0.kind", "E-8.2"),
    }


@pytest.mark.parametrize("kind", ["raw_data_access", "global_ui_override", "unbounded_permission"])
def test_forbidden_capability_refused_at_submission(kind: str) -> None:
    """E-6.3: raw data access, global UI overrides, unbounded permissions are refused."""
    body = proposal_body(requested_capabilities=[{"name": "f", "kind": kind}])
    decision = check_submission(Proposal.model_validate(body), DEFAULT_POLICY)
    assert decision.rules == ["E-6.3"]


@pytest.mark.parametrize(
    "kind", ["direct_db_access", "internal_api_access", "unbounded_permission"]
)
def test_forbidden_integration_refused_at_submission(kind: str) -> None:
    """E-8.3: direct DB access, internal API access, unbounded permissions are refused."""
    body = proposal_body(integrations=[{"name": "f", "kind": kind}])
    decision = check_submission(Proposal.model_validate(body), DEFAULT_POLICY)
    assert decision.rules == ["E-8.3"]


def test_unbounded_permission_and_unversioned_breaking_change_forbidden() -> None:
    """E-5.2: forbidden without exception — an unbounded permission, an unversioned breaking
    change."""
    body = proposal_body(
        requested_capabilities=[
            {"name": "r", "kind": "read_only", "permissions": ["orders:read", "orders:*"]}
        ],
        breaking_change=True,
        migration_plan="Dual-run",
    )
    decision = check_submission(Proposal.model_validate(body), DEFAULT_POLICY)
    assert {(f.field, f.rule) for f in decision.findings} == {
        ("requested_capabilities.0.permissions.1", "E-5.2"),
        ("release_version", "E-5.2"),
    }
    versioned = {
        **body,
        "release_version": "2.0.0",
        "requested_capabilities": [{"name": "r", "kind": "read_only"}],
    }
    assert check_submission(Proposal.model_validate(versioned), DEFAULT_POLICY).allowed


def test_unknown_tier_refused() -> None:
    """E-7.3: tiers come from the policy's catalogue; a new one needs its own governance."""
    decision = check_submission(
        Proposal.model_validate(proposal_body(requested_tier="platinum")), DEFAULT_POLICY
    )
    assert decision.rules == ["E-7.3"]
    profile = check_profile(tier="platinum", permissions=[], grants=[], policy=DEFAULT_POLICY)
    assert not profile.allowed


def test_every_kind_is_classified() -> None:
    """E-6, E-8: the policy classifies every capability and integration kind."""
    assert set(DEFAULT_POLICY.capability_classes) == set(CapabilityKind)
    assert set(DEFAULT_POLICY.integration_classes) == set(IntegrationKind)
    assert DEFAULT_POLICY.capability_classes[CapabilityKind.WRITE] is Classification.RESTRICTED


FORBIDDEN_IMPORTS = ("store", "api", "activities", "workflows", "sqlmodel", "sqlalchemy", "httpx")


def test_policy_package_is_pure() -> None:
    """The policy imports no I/O layer and no Temporal client and reads no clock, so workflows can
    use it inside the sandbox and every caller asks the same code."""
    for path in (ROOT / "policy").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in FORBIDDEN_IMPORTS, f"{path.name} imports {name}"
                assert not name.startswith("temporalio"), f"{path.name} imports {name}"
                assert top not in ("time", "random", "os", "socket"), f"{path.name}: {name}"
            # No clock: callers pass `now` (workflows use workflow.now()).
            if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
                raise AssertionError(f"{path.name}:{node.lineno} reads the clock")
