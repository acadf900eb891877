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
    # The KWANUS OS runtime as a service: reports telemetry (the only evidence, E-7.1) and reads
    # what a partner may do.
    PLATFORM = "platform"


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
    DEPRECATION = "deprecation"  # one notice fanned out to a migration per partner (M-2.1)


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
    DECLINED = "declined"  # an optional migration the partner declined (M-2.2)


class NotificationType(StrEnum):
    """What a notification says happened (P-7): its stable `type` in the inbox and in a
    webhook's body; a subscription filters on these exact names."""

    MIGRATION_NOTICE = "migration.notice"
    STEP_OPENED = "step.opened"
    STEP_REMINDER = "step.reminder"
    STEP_ESCALATED = "step.escalated"
    DEADLINE_MOVED = "deadline.moved"
    PROCESS_DECIDED = "process.decided"
    REMEDIATION_OPENED = "remediation.opened"
    REMEDIATION_CLOSED = "remediation.closed"
    ACCESS_RESTRICTED = "access.restricted"
    ACCESS_RESTORED = "access.restored"
    OUTCOME_ENFORCED = "outcome.enforced"
    SUBSCRIPTION_DISABLED = "subscription.disabled"


class PartnerStatus(StrEnum):
    ACTIVE = "active"
    RESTRICTED = "restricted"
    SUSPENDED = "suspended"


class Verdict(StrEnum):
    PASS = "pass"  # noqa: S105 (a review verdict, not a secret)
    CONCERN = "concern"
    FAIL = "fail"


class Severity(StrEnum):
    MINOR = "minor"
    MODERATE = "moderate"
    SEVERE = "severe"


class VoteDecision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


Recommendation = VoteDecision  # a review recommends what a vote decides


class Outcome(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class RiskCategory(StrEnum):
    """E-11.1."""

    TECHNICAL = "technical"
    SECURITY = "security"
    COMPLIANCE = "compliance"
    ECOSYSTEM = "ecosystem"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER: tuple[RiskLevel, ...] = (
    RiskLevel.LOW,
    RiskLevel.MEDIUM,
    RiskLevel.HIGH,
    RiskLevel.CRITICAL,
)


class TriggerClass(StrEnum):
    """M-2.1 required, M-2.2 optional, M-2.3 forced."""

    REQUIRED = "required"
    OPTIONAL = "optional"
    FORCED = "forced"


class Trigger(StrEnum):
    OS_MAJOR_VERSION = "os_major_version"
    API_DEPRECATION = "api_deprecation"
    WORKFLOW_DEPRECATION = "workflow_deprecation"
    PERMISSION_CHANGE = "permission_change"
    RUNTIME_CHANGE = "runtime_change"
    TIER_UPGRADE = "tier_upgrade"
    TIER_DOWNGRADE = "tier_downgrade"
    CAPABILITY_EXPANSION = "capability_expansion"
    COMPLIANCE_VIOLATION = "compliance_violation"
    SECURITY_VIOLATION = "security_violation"
    PARTNER_INSTABILITY = "partner_instability"


class MigrationType(StrEnum):
    """M-3.1."""

    VERSION = "version"
    TIER = "tier"
    RUNTIME = "runtime"
    PERMISSION = "permission"
    WORKFLOW = "workflow"


class MatrixStatus(StrEnum):
    SUPPORTED = "supported"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


class ComponentKind(StrEnum):
    OS = "os"
    API = "api"
    RUNTIME = "runtime"
    WORKFLOW = "workflow"
    PERMISSION = "permission"


class ForbiddenFinding(StrEnum):
    """E-5.2: what no vote can approve, as a reviewer reports it."""

    UNBOUNDED_PERMISSIONS = "unbounded_permissions"
    UNGOVERNED_WORKFLOWS = "ungoverned_workflows"
    UNVERSIONED_BREAKING_CHANGES = "unversioned_breaking_changes"
    INCOMPATIBLE_RUNTIMES = "incompatible_runtimes"


# M-8.1: the four validation checks of a migration, in the order they are recorded.
VALIDATION_CHECKS = ("api_contract", "workflow", "permission_boundary", "runtime_compatibility")
