"""The Temporal contract ops see in the UI and CLI (DESIGN.md "Temporal contract")."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel
from temporalio.common import SearchAttributeKey

from kwanus.models.deprecation import DeprecationInput, DeprecationStatus
from kwanus.models.expansion import ExpansionInput, ExpansionStatus
from kwanus.models.migration import MigrationInput, MigrationStatus
from kwanus.models.remediation import RemediationInput, RemediationStatus
from kwanus.models.stewardship import StewardshipInput, StewardshipStatus
from policy.vocabulary import ExpansionStage, MigrationStage, ProcessKind

EXPANSION_WORKFLOW = "PartnerExpansion"
MIGRATION_WORKFLOW = "PartnerMigration"
REMEDIATION_WORKFLOW = "Remediation"
STEWARDSHIP_WORKFLOW = "StewardshipReview"
DEPRECATION_WORKFLOW = "DeprecationNotice"
# Not a governance process: one notification's delivery to one webhook (P-7), under
# `KwanusProcess = webhook` in the UI.
WEBHOOK_DELIVERY_WORKFLOW = "WebhookDelivery"
WEBHOOK_PROCESS = "webhook"
# The Update a start is sent with (update-with-start): it returns once the process's first step
# is open — its record stored — or the process has closed, so the start answers with a state
# in which that step is accepted (P-8).
OPENED_UPDATE = "opened"

PARTNER_ID = SearchAttributeKey.for_keyword("KwanusPartnerId")
PROCESS = SearchAttributeKey.for_keyword("KwanusProcess")
STAGE = SearchAttributeKey.for_keyword("KwanusStage")
RISK_LEVEL = SearchAttributeKey.for_keyword("KwanusRiskLevel")
NEXT_DEADLINE = SearchAttributeKey.for_datetime("KwanusNextDeadline")

SEARCH_ATTRIBUTES = (PARTNER_ID, PROCESS, STAGE, RISK_LEVEL, NEXT_DEADLINE)


def expansion_workflow_id(expansion_id: str) -> str:
    return f"expansion-{expansion_id}"


def expansion_migration_id(expansion_id: str) -> str:
    """The migration an expansion's release starts (E-2.1a; a tier upgrade's, E-7.1)."""
    return f"exp-{expansion_id}"


def remediation_migration_id(remediation_id: str) -> str:
    """The forced downgrade a missed remediation window starts (M-9.3)."""
    return f"rem-{remediation_id}"


def telemetry_downgrade_id(partner_id: str, stamp: str) -> str:
    """The forced downgrade a telemetry report sets off (E-7.2), one id per decision."""
    return f"downgrade-{partner_id}-{stamp}"


# Ids the processes give the migrations they start; a deprecation's are `<notice>.<partner>`.
SYSTEM_MIGRATION_PREFIXES = ("exp-", "rem-", "downgrade-")


def is_system_migration_id(migration_id: str) -> bool:
    """Whether a migration id is one the processes name (P-1): a client may never take one,
    or the process that needs it would find its migration "already started" — a partner could
    pre-empt a required migration with one of its own and decline it."""
    return migration_id.startswith(SYSTEM_MIGRATION_PREFIXES) or "." in migration_id


def search_attribute_flags() -> list[str]:
    """`--search-attribute` arguments for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "DATETIME": "Datetime"}
    return [
        arg
        for key in SEARCH_ATTRIBUTES
        for arg in ("--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}")
    ]


def remediation_workflow_id(remediation_id: str) -> str:
    return f"remediation-{remediation_id}"


def migration_workflow_id(migration_id: str) -> str:
    return f"migration-{migration_id}"


def deprecation_workflow_id(notice_id: str) -> str:
    return f"deprecation-{notice_id}"


def stewardship_workflow_id(report_id: str) -> str:
    return f"stewardship-{report_id}"


# Where each process is read in the API (a pending step's link, a notification's).
RESOURCE_PATHS: dict[ProcessKind, str] = {
    ProcessKind.EXPANSION: "/v1/expansions/{}",
    ProcessKind.MIGRATION: "/v1/migrations/{}",
    ProcessKind.REMEDIATION: "/v1/remediations/{}",
    ProcessKind.STEWARDSHIP: "/v1/stewardship/reports/{}",
    ProcessKind.DEPRECATION: "/v1/deprecations/{}",
}


# A client-chosen process id (P-1): a letter or digit, then letters, digits, `.`, `_`, `-`.
CLIENT_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# Any process's id, a process-made one included (`<notice>.<partner>`, `rem-<id>`): the same
# characters, longer. Never `.` or `..`, so an id never moves a path it is put in.
PROCESS_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,159}$"


def resource_path(kind: ProcessKind, process_id: str) -> str:
    return RESOURCE_PATHS[kind].format(process_id)


def webhook_delivery_workflow_id(subscription_id: str, notification_id: int) -> str:
    """One notification to one subscription: the subscription's id is random, so the id names
    one delivery across databases sharing a namespace (a database's row ids start again)."""
    return f"webhook-{subscription_id}-{notification_id}"


# The kind of remediation a migration's failed validation opens (M-8.2): its fixes may carry the
# corrected manifest, which the migration validates again (M-8.1).
VALIDATION_FAILED = "validation_failed"


class Refusal:
    """`ApplicationError.type`s of refused human steps (raised by update validators, so a
    refused step leaves no event, P-2); the API maps each to its HTTP status."""

    FORBIDDEN = "Forbidden"  # 403: the wrong role or the wrong partner (P-6)
    WRONG_STAGE = "WrongStage"  # 409: not awaited now
    ALREADY_DONE = "AlreadyDone"  # 409: this body or partner already did it
    INVALID = "Invalid"  # 422: incomplete or against a rule

    STATUS = {FORBIDDEN: 403, WRONG_STAGE: 409, ALREADY_DONE: 409, INVALID: 422}


In = TypeVar("In", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ProcessType(Generic[In, R]):
    """One workflow type as whoever starts it sees it: the name ops see, what its run takes and
    returns, the `KwanusProcess` it is filed under, its `KwanusStage` at start and its id.
    Starting by this (`kwanus.temporal.start`) needs no import of the workflow's code."""

    name: str
    kind: ProcessKind
    first_stage: str
    input: type[In]
    result: type[R]
    workflow_id: Callable[[str], str]


EXPANSION = ProcessType(
    EXPANSION_WORKFLOW,
    ProcessKind.EXPANSION,
    ExpansionStage.PROPOSAL.value,
    ExpansionInput,
    ExpansionStatus,
    expansion_workflow_id,
)
MIGRATION = ProcessType(
    MIGRATION_WORKFLOW,
    ProcessKind.MIGRATION,
    MigrationStage.NOTICE.value,
    MigrationInput,
    MigrationStatus,
    migration_workflow_id,
)
REMEDIATION = ProcessType(
    REMEDIATION_WORKFLOW,
    ProcessKind.REMEDIATION,
    "Remediation",
    RemediationInput,
    RemediationStatus,
    remediation_workflow_id,
)
STEWARDSHIP = ProcessType(
    STEWARDSHIP_WORKFLOW,
    ProcessKind.STEWARDSHIP,
    "Review",
    StewardshipInput,
    StewardshipStatus,
    stewardship_workflow_id,
)
DEPRECATION = ProcessType(
    DEPRECATION_WORKFLOW,
    ProcessKind.DEPRECATION,
    "Fan-out",
    DeprecationInput,
    DeprecationStatus,
    deprecation_workflow_id,
)
