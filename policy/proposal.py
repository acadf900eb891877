"""The expansion proposal (E-2.1) and the checks made on it at submission (E-2.1a, E-5.2, E-6,
E-8). The API, the workflows and the tests all ask these functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic_core import InitErrorDetails

from policy.decisions import Decision, Finding
from policy.document import PolicyContent, TierSpec, check_floors
from policy.forms import Form, missing
from policy.grants import (
    Grant,
    check_requested,
    requested_grants,
    requested_once,
)
from policy.types import Name, Permission, Text, Version
from policy.vocabulary import CapabilityKind, Category, IntegrationKind

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


class NewTier(BaseModel):
    """E-7.3: a tier the catalogue does not have yet, proposed in a category B proposal whose
    `requested_tier` names it; it lands in the catalogue (a new policy version) at release."""

    model_config = ConfigDict(extra="forbid")

    spec: TierSpec
    after: Name = Field(description="The existing tier it ranks directly above.")
    compatibility_plan: Text


class Proposal(Form):
    """An expansion proposal as the partner submits it (E-2.1)."""

    rules: ClassVar[dict[str, str]] = dict.fromkeys(
        ("category", *REQUIRED_PROPOSAL_FIELDS), "E-2.1"
    )

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
    new_tier: NewTier | None = Field(
        default=None, description="E-7.3: the tier `requested_tier` names, when it is new."
    )
    policy_change: dict[str, Any] | None = Field(
        default=None,
        description="E-3.4 (category D): top-level policy fields, each replacing that field of "
        "the policy in force (the shape of PUT /v1/policy); its release publishes the result as "
        "a new policy version.",
    )

    @model_serializer(mode="wrap")
    def _without_an_absent_change(self, handler: SerializerFunctionWrapHandler) -> Any:
        """A proposal without a policy change hashes as it did before the field existed (P-1: a
        resubmission is told from a new request by its hash)."""
        data = handler(self)
        if isinstance(data, dict) and data.get("policy_change") is None:
            data.pop("policy_change", None)
        return data

    @classmethod
    def _also_missing(cls, raw: Mapping[str, Any]) -> list[InitErrorDetails]:
        """E-2.1a: an applicable migration plan is named with the rest, even when other fields
        failed validation."""
        applicable = migration_plan_applicable(
            category=raw.get("category"),
            breaking_change=raw.get("breaking_change"),
            removes=raw.get("removes"),
        )
        plan = raw.get("migration_plan")
        if not applicable or (isinstance(plan, str) and plan.strip()):
            return []
        return [
            missing(
                "migration_plan",
                "E-2.1a",
                "required: the proposal changes a tier, removes or changes an existing "
                "capability or permission, or declares a breaking change",
            )
        ]

    @property
    def grants(self) -> tuple[Grant, ...]:
        """What the proposal asks to be granted (E-2.7), capabilities then integrations."""
        return requested_grants(
            ((c.name, c.kind, c.permissions) for c in self.requested_capabilities),
            ((i.name, i.kind, i.permissions) for i in self.integrations),
        )

    @property
    def grants_requested(self) -> list[tuple[str, Grant]]:
        """Each requested grant with the field it came from (`requested_capabilities.0`...)."""
        fields = [f"requested_capabilities.{i}" for i in range(len(self.requested_capabilities))]
        fields += [f"integrations.{i}" for i in range(len(self.integrations))]
        return list(zip(fields, self.grants, strict=True))

    @property
    def migration_plan_required(self) -> bool:
        return migration_plan_applicable(
            category=self.category.value, breaking_change=self.breaking_change, removes=self.removes
        )


def check_submission(proposal: Proposal, policy: PolicyContent) -> Decision:
    """What must be refused before a proposal's workflow starts — forbidden items (E-5.2, E-6.3,
    E-8.3), a kind carrying more than it may (E-6.1, E-8.1), what the requested tier's catalogue
    does not allow (E-7.4) — and what is accepted but flagged as restricted (E-6.2, E-8.2)."""
    findings: list[Finding] = []
    if proposal.new_tier is not None:
        findings += check_new_tier(proposal, proposal.new_tier, policy)
    elif proposal.requested_tier not in policy.tier_names:
        findings.append(
            Finding(
                field="requested_tier",
                rule="E-7.3",
                message=f"unknown tier {proposal.requested_tier!r}; the tier catalogue is "
                f"{', '.join(policy.tier_names)} (a new tier is proposed with `new_tier`)",
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
    requested = proposal.grants_requested
    grants = check_requested(requested, policy, requested_tier_spec(proposal, policy))
    findings += [*grants.findings, *requested_once(requested)]
    return Decision(findings=tuple(findings), flags=grants.flags)


def requested_tier_spec(proposal: Proposal, policy: PolicyContent) -> TierSpec | None:
    """The requested tier's catalogue entry (the new tier's own, for a new tier), if known."""
    if proposal.new_tier is not None:
        return proposal.new_tier.spec
    return policy.tier(proposal.requested_tier)


def with_new_tier(policy: PolicyContent, new_tier: NewTier) -> PolicyContent:
    """The policy with `new_tier` in its catalogue, directly above `new_tier.after`."""
    tiers = list(policy.tiers)
    at = next(i for i, t in enumerate(tiers) if t.name == new_tier.after) + 1
    tiers.insert(at, new_tier.spec)
    return PolicyContent.model_validate({**policy.model_dump(exclude={"version"}), "tiers": tiers})


def check_new_tier(proposal: Proposal, new_tier: NewTier, policy: PolicyContent) -> list[Finding]:
    """E-7.3 at submission: a category B proposal for the tier it names, new to the catalogue,
    placed above an existing tier, within the spec's hard floors."""
    out = []
    name = new_tier.spec.name
    if proposal.category is not Category.TIER or proposal.requested_tier != name:
        out.append(
            Finding(
                field="new_tier.spec.name",
                rule="E-7.3",
                message="a new tier is proposed by a category B proposal whose requested_tier "
                "names it",
            )
        )
    if name in policy.tier_names:
        out.append(Finding(field="new_tier.spec.name", rule="E-7.3", message=f"tier {name} exists"))
    if new_tier.after not in policy.tier_names:
        out.append(
            Finding(
                field="new_tier.after",
                rule="E-7.3",
                message=f"the catalogue is {', '.join(policy.tier_names)}",
            )
        )
    if not out:
        for f in check_floors(with_new_tier(policy, new_tier)).findings:
            out.append(f.model_copy(update={"field": "new_tier.spec"}))
    return out
