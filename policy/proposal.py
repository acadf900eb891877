"""The expansion proposal (E-2.1) and the checks made on it at submission (E-2.1a, E-5.2, E-6,
E-8). The API, the workflows and the tests all ask these functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from policy.decisions import Decision, Finding
from policy.document import PolicyContent
from policy.vocabulary import CapabilityKind, Category, Classification, IntegrationKind

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# `resource:action`; a `*` is syntactically accepted so that E-5.2 can refuse it by name.
Permission = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$", max_length=200)
]
Version = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^v?\d+(\.\d+){0,2}([-+][0-9A-Za-z.-]+)?$"),
]

# E-2.1: what every proposal must carry (the migration plan only when applicable, E-2.1a).
REQUIRED_PROPOSAL_FIELDS: tuple[str, ...] = (
    "description",
    "justification",
    "requested_tier",
    "requested_capabilities",
    "governance_alignment",
    "compatibility_impact",
    "security_impact",
    "lifecycle_plan",
)


class CapabilityRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: CapabilityKind
    permissions: list[Permission] = Field(default_factory=list, max_length=100)


class IntegrationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    kind: IntegrationKind
    permissions: list[Permission] = Field(default_factory=list, max_length=100)


def migration_plan_applicable(
    *, category: object, breaking_change: object, removes: object
) -> bool:
    """E-2.1a: a tier change, a removed or changed capability/permission, or a declared breaking
    change makes a migration plan applicable. Takes raw values so it can also judge input that
    failed other validation (every missing field is named in one answer, E-2.1)."""
    return category == Category.TIER.value or breaking_change is True or bool(removes)


def _missing(field: str, rule: str, message: str) -> InitErrorDetails:
    return {
        "type": PydanticCustomError(
            "missing", "{message} ({rule})", {"rule": rule, "message": message}
        ),
        "loc": (field,),
        "input": None,
    }


class Proposal(BaseModel):
    """An expansion proposal as the partner submits it (E-2.1)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    description: Text
    justification: Text
    requested_tier: Name
    requested_capabilities: list[CapabilityRequest] = Field(max_length=100)
    integrations: list[IntegrationRequest] = Field(default_factory=list, max_length=100)
    governance_alignment: Text
    compatibility_impact: Text
    security_impact: Text
    lifecycle_plan: Text
    migration_plan: Text | None = None
    breaking_change: bool = False
    release_version: Version | None = Field(
        default=None, description="Version the change ships under; required for a breaking change."
    )
    removes: list[Name] = Field(
        default_factory=list,
        max_length=100,
        description="Existing capabilities or permissions this proposal removes or changes.",
    )
    risk_mitigation: Text | None = None
    fallback_plan: Text | None = None
    monitoring_plan: Text | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _complete(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Proposal:
        """E-2.1: name *every* missing field in one answer, including a migration plan that is
        applicable (E-2.1a) even when other fields failed validation."""
        raw: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        errors: list[InitErrorDetails] = []
        model: Proposal | None = None
        try:
            model = handler(data)
        except ValidationError as exc:
            for err in exc.errors():
                top = str(err["loc"][0]) if len(err["loc"]) == 1 else None
                blank = err["type"] == "string_too_short" and top in REQUIRED_PROPOSAL_FIELDS
                if (err["type"] == "missing" and top is not None) or blank:
                    errors.append(_missing(str(top), "E-2.1", "required"))
                else:
                    errors.append(
                        {
                            "type": PydanticCustomError(err["type"], "{msg}", {"msg": err["msg"]}),
                            "loc": err["loc"],
                            "input": err.get("input"),
                        }
                    )
        applicable = migration_plan_applicable(
            category=raw.get("category"),
            breaking_change=raw.get("breaking_change"),
            removes=raw.get("removes"),
        )
        plan = raw.get("migration_plan")
        if applicable and (not isinstance(plan, str) or not plan.strip()):
            errors.append(
                _missing(
                    "migration_plan",
                    "E-2.1a",
                    "required: the proposal changes a tier, removes or changes an existing "
                    "capability or permission, or declares a breaking change",
                )
            )
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        assert model is not None
        return model

    @property
    def migration_plan_required(self) -> bool:
        return migration_plan_applicable(
            category=self.category.value, breaking_change=self.breaking_change, removes=self.removes
        )


def check_submission(proposal: Proposal, policy: PolicyContent) -> Decision:
    """What must be refused before a proposal's workflow starts (E-5.2, E-6.3, E-8.3), and what
    is accepted but flagged as restricted (E-6.2, E-8.2)."""
    findings: list[Finding] = []
    flags: list[Finding] = []
    if proposal.requested_tier not in policy.tier_names:
        findings.append(
            Finding(
                field="requested_tier",
                rule="E-7.3",
                message=f"unknown tier {proposal.requested_tier!r}; the tier catalogue is "
                f"{', '.join(policy.tier_names)} (a new tier needs its own category B proposal)",
            )
        )
    if proposal.breaking_change and proposal.release_version is None:
        findings.append(
            Finding(
                field="release_version",
                rule="E-5.2",
                message="an unversioned breaking change is forbidden without exception",
            )
        )
    # E-6 for capabilities, E-8 for integrations: the same three classes, their own rule IDs.
    Item = CapabilityRequest | IntegrationRequest
    lists: tuple[tuple[str, str, Sequence[Item], str, str], ...] = (
        ("requested_capabilities", "capability", proposal.requested_capabilities, "E-6.3", "E-6.2"),
        ("integrations", "integration", proposal.integrations, "E-8.3", "E-8.2"),
    )
    for name, noun, items, forbidden_rule, restricted_rule in lists:
        for i, item in enumerate(items):
            where = f"{name}.{i}"
            cls = classify(item, policy)
            if cls is Classification.FORBIDDEN:
                findings.append(
                    Finding(
                        field=f"{where}.kind",
                        rule=forbidden_rule,
                        message=f"{noun} kind {item.kind} is forbidden",
                    )
                )
            elif cls is Classification.RESTRICTED:
                flags.append(
                    Finding(
                        field=f"{where}.kind",
                        rule=restricted_rule,
                        message=f"{noun} kind {item.kind} is restricted: SCO must approve",
                    )
                )
            findings.extend(unbounded_findings(f"{where}.permissions", item.permissions))
    return Decision(findings=tuple(findings), flags=tuple(flags))


def classify(item: CapabilityRequest | IntegrationRequest, policy: PolicyContent) -> Classification:
    """E-6 / E-8: the policy's class of a requested capability or integration kind."""
    if isinstance(item, CapabilityRequest):
        return policy.capability_classes[item.kind]
    return policy.integration_classes[item.kind]


def unbounded_findings(field: str, permissions: Sequence[str]) -> list[Finding]:
    """E-5.2: a permission with a `*` anywhere is unbounded, forbidden without exception."""
    return [
        Finding(
            field=f"{field}.{j}",
            rule="E-5.2",
            message=f"permission {perm!r} is unbounded (contains '*'): forbidden without exception",
        )
        for j, perm in enumerate(permissions)
        if "*" in perm
    ]
