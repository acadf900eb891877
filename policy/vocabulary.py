"""The governance vocabulary (DESIGN.md "Vocabulary"): enum values shared by the API, the store,
the workflows and the rules. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    PARTNER = "partner"
    TSC = "TSC"
    SCO = "SCO"
    ERC = "ERC"
    CGB = "CGB"
    OPS = "ops"
    ADMIN = "admin"


class Body(StrEnum):
    """The four governance bodies (E-2.2)."""

    TSC = "TSC"
    SCO = "SCO"
    ERC = "ERC"
    CGB = "CGB"


BODY_ROLES: frozenset[Role] = frozenset({Role.TSC, Role.SCO, Role.ERC, Role.CGB})


class Category(StrEnum):
    """Expansion categories (E-3.x)."""

    CAPABILITY = "A"
    TIER = "B"
    INTEGRATION = "C"
    GOVERNANCE = "D"


class Classification(StrEnum):
    ALLOWED = "allowed"
    RESTRICTED = "restricted"
    FORBIDDEN = "forbidden"


class CapabilityKind(StrEnum):
    READ_ONLY = "read_only"
    WORKFLOW_TRIGGER = "workflow_trigger"
    UI_COMPONENT = "ui_component"
    WRITE = "write"
    ADVANCED_PERMISSION = "advanced_permission"
    INTELLIGENCE_WORKFLOW = "intelligence_workflow"
    RAW_DATA_ACCESS = "raw_data_access"
    GLOBAL_UI_OVERRIDE = "global_ui_override"
    UNBOUNDED_PERMISSION = "unbounded_permission"


class IntegrationKind(StrEnum):
    API = "api"
    WORKFLOW = "workflow"
    EXTENSION = "extension"
    WRITE = "write"
    ADVANCED_PERMISSION = "advanced_permission"
    INTELLIGENCE_WORKFLOW = "intelligence_workflow"
    DIRECT_DB_ACCESS = "direct_db_access"
    INTERNAL_API_ACCESS = "internal_api_access"
    UNBOUNDED_PERMISSION = "unbounded_permission"


class ProcessKind(StrEnum):
    EXPANSION = "expansion"
    MIGRATION = "migration"
    REMEDIATION = "remediation"
    STEWARDSHIP = "stewardship"


class ExpansionStage(StrEnum):
    """E-12.1, in order."""

    PROPOSAL = "Proposal"
    EVALUATION = "Evaluation"
    APPROVAL = "Approval"
    INTEGRATION = "Integration"
    RELEASE = "Release"
    MONITORING = "Monitoring"
    REVIEW = "Review"


class MigrationStage(StrEnum):
    """M-4.x, in order."""

    NOTICE = "Notice"
    PLAN = "Plan"
    IMPLEMENTATION = "Implementation"
    VALIDATION = "Validation"
    ROLLOUT = "Rollout"
    MONITORING = "Monitoring"
    COMPLETION = "Completion"


class ProcessStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class PartnerStatus(StrEnum):
    ACTIVE = "active"
    RESTRICTED = "restricted"
    SUSPENDED = "suspended"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a review verdict, not a secret)
    CONCERN = "concern"
    FAIL = "fail"


class Recommendation(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class Severity(StrEnum):
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"
