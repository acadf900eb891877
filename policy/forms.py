"""What partners and bodies send at each human step, as forms that name the rule behind every
missing part (E-2.5 to E-2.7, E-9.1, M-4.2, M-4.3, M-7.1): a refused form lists every missing
field at once — and, on a request form, every document that is not a reference or repeats
another's (M-7.1, E-2.6)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from policy.decisions import Decision, Finding
from policy.evidence import DeclaredRef, PlatformRef
from policy.manifest import Manifest
from policy.references import check_references
from policy.types import Text, Version


class Form(BaseModel):
    """A step's input. `rules` maps each required field to the rule that requires it; a missing
    or blank one is reported as `required (<rule>)`."""

    model_config = ConfigDict(extra="forbid")
    rules: ClassVar[dict[str, str]] = {}
    # Fields that are references to documents, and the rule that says so (M-7.1, E-2.6). They
    # are judged on a request form (`judge_references`, at the API) and by the workflows'
    # validators, never when a stored form is loaded: recorded histories hold what was sent
    # before the check (`PR-1`, `x` five times) and must replay.
    reference_fields: ClassVar[tuple[str, ...]] = ()
    reference_rule: ClassVar[str] = ""
    judge_references: ClassVar[bool] = False

    @classmethod
    def _also_missing(cls, raw: Mapping[str, Any]) -> list[InitErrorDetails]:
        """Conditionally required fields missing from `raw` (judged even when other fields
        failed, so one answer names every missing part)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _name_rules(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        errors: list[InitErrorDetails] = []
        model = None
        try:
            model = handler(data)
        except ValidationError as exc:
            for err in exc.errors():
                top = str(err["loc"][0]) if len(err["loc"]) == 1 else ""
                rule = cls.rules.get(top)
                if rule and err["type"] in ("missing", "string_too_short", "too_short"):
                    errors.append(missing(top, rule, "required", err.get("input")))
                else:
                    errors.append(
                        {
                            "type": PydanticCustomError(err["type"], "{msg}", {"msg": err["msg"]}),
                            "loc": err["loc"],
                            "input": err.get("input"),
                        }
                    )
        raw = data if isinstance(data, Mapping) else {}
        errors += cls._also_missing(raw)
        if cls.judge_references:
            # Judged even when other fields failed (from what was sent): one answer names all.
            given = (
                {f: getattr(model, f) for f in cls.reference_fields}
                if model is not None
                else {f: v for f in cls.reference_fields if isinstance(v := raw.get(f), str)}
            )
            refused = check_references(given, rule=cls.reference_rule)
            errors += [finding_error(f, given.get(f.field)) for f in refused.findings]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return model

    def references(self) -> Decision:
        """M-7.1, E-2.6: each document given a reference, none repeating another's (the
        workflows' validators judge a step's form with this)."""
        return check_references(
            {f: getattr(self, f) for f in self.reference_fields}, rule=self.reference_rule
        )


def missing(field: str, rule: str, message: str, value: Any = None) -> InitErrorDetails:
    """A `missing` error on `field` whose message ends with the rule that requires it."""
    return {
        "type": PydanticCustomError(
            "missing", "{message} ({rule})", {"rule": rule, "message": message}
        ),
        "loc": (field,),
        "input": value,
    }


def finding_error(finding: Finding, value: Any = None) -> InitErrorDetails:
    """A rule's finding as an error on its field, its message ending with the rule."""
    return {
        "type": PydanticCustomError(
            "refused", "{message} ({rule})", {"rule": finding.rule, "message": finding.message}
        ),
        "loc": (finding.field,),
        "input": value,
    }


class Plans(Form):
    """Plans the risk level requires before the vote (E-2.3, E-11.1) or approval needs (E-5.1),
    sent after submission."""

    risk_mitigation: Text | None = None
    fallback_plan: Text | None = None
    monitoring_plan: Text | None = None
    migration_plan: Text | None = None
    governance_alignment: Text | None = None
    lifecycle_plan: Text | None = None

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class IntegrationPlan(Form):
    rules: ClassVar[dict[str, str]] = dict.fromkeys(
        ("versioning", "compatibility_rules", "rollout_plan"), "E-2.5"
    )
    versioning: Text
    compatibility_rules: Text
    rollout_plan: Text


# What a document's field holds (M-7.1, E-2.6; policy/references.py), for the schema's readers:
# the check itself is `Form.references`, never run when a stored form is loaded.
Reference = Annotated[
    Text,
    Field(
        description="A reference to the document: an https:// or http:// URL with a host, or a "
        "repository path (relative, no '..', no spaces, optionally #anchor). Each document "
        "its own: a reference repeated for another document is refused."
    ),
]


class ImplementationReport(Form):
    """E-2.6 / M-4.3: development, testing, documentation, each a reference to the work done."""

    rules: ClassVar[dict[str, str]] = dict.fromkeys(
        ("development", "testing", "documentation"), "E-2.6"
    )
    reference_fields: ClassVar[tuple[str, ...]] = ("development", "testing", "documentation")
    reference_rule: ClassVar[str] = "E-2.6"
    development: Reference
    testing: Reference
    documentation: Reference


class ImplementationReportRequest(ImplementationReport):
    """`POST …/implementation` (expansion, migration): each report a reference, none repeated
    (E-2.6) — refused here, naming every bad field, before anything is sent."""

    judge_references: ClassVar[bool] = True


class MigrationImplementation(ImplementationReport):
    """M-4.3 with what the partner ships (M-8.1 Decision): the new manifest, which validation
    inspects. Runs that took their implementation before manifests existed have none."""

    manifest: Manifest | None = None


class MigrationImplementationRequest(MigrationImplementation):
    """`POST /v1/migrations/{id}/implementation`: the manifest is required, and each report a
    reference, none repeated (E-2.6)."""

    judge_references: ClassVar[bool] = True
    rules: ClassVar[dict[str, str]] = {
        **ImplementationReport.rules,
        "manifest": "M-8.1",
    }
    manifest: Manifest


class Release(Form):
    """E-2.7: a versioned release with migration guides; E-9.1: fallback behaviour and the
    compatibility update — the platform versions this release works with, stored as the
    partner's own (E-9.2 Decision: never the platform's rows). An unversioned release would be
    a silent breaking change (E-9.2)."""

    rules: ClassVar[dict[str, str]] = {
        "version": "E-9.2",
        "migration_guide": "E-2.7",
        "fallback_behaviour": "E-9.1",
        "compatibility": "E-9.1",
    }
    version: Version
    migration_guide: Text
    fallback_behaviour: Text
    compatibility: tuple[PlatformRef, ...] = Field(min_length=1, max_length=100)
    notes: Text | None = None


class ReleaseRequest(Release):
    """`POST /v1/expansions/{id}/release`: a declaration carries no status (E-9.2)."""

    compatibility: tuple[DeclaredRef, ...] = Field(min_length=1, max_length=100)


class OutcomeReview(Form):
    """Stage 7 (E-12.1): CGB's review of how the expansion turned out."""

    rules: ClassVar[dict[str, str]] = {"outcome": "E-12.1"}
    outcome: Literal["successful", "partially_successful", "unsuccessful"]
    notes: Text | None = None


class MonitoringDecision(Form):
    """CGB's decision on a monitoring check that breached the policy's thresholds (E-12.1 stage
    6, P-3): go on monitoring, roll the release's grants back, or open a remediation."""

    rules: ClassVar[dict[str, str]] = {"decision": "E-12.1", "rationale": "E-12.1"}
    decision: Literal["continue", "roll_back", "remediate"]
    rationale: Text


class Withdrawal(Form):
    reason: Text | None = None


class DeadlineExtension(Form):
    """P-3: CGB (or admin) moves a pending deadline later; the running timer honours it."""

    rules: ClassVar[dict[str, str]] = {"until": "P-3", "reason": "P-3"}
    until: AwareDatetime
    reason: Text


class FallbackDecision(Form):
    """TSC's or CGB's decision when a migration's telemetry is unhealthy, or missing, at its
    fallback's end (P-3, M-4.6, M-4.7): extend the fallback by `months`, or remediate."""

    rules: ClassVar[dict[str, str]] = {"decision": "M-4.7", "rationale": "M-4.7"}
    decision: Literal["extend", "remediate"]
    months: int | None = Field(default=None, ge=1, le=24)
    rationale: Text


class MigrationPlan(Form):
    rules: ClassVar[dict[str, str]] = dict.fromkeys(
        ("strategy", "compatibility_plan", "testing_plan", "rollback_plan"), "M-4.2"
    )
    strategy: Text
    compatibility_plan: Text
    testing_plan: Text
    rollback_plan: Text


class MigrationDocumentation(Form):
    """M-7.1: five required documents; tutorials and onboarding guides optional."""

    rules: ClassVar[dict[str, str]] = dict.fromkeys(
        (
            "migration_guide",
            "compatibility_notes",
            "version_notes",
            "workflow_changes",
            "permission_changes",
        ),
        "M-7.1",
    )
    reference_fields: ClassVar[tuple[str, ...]] = (
        "migration_guide",
        "compatibility_notes",
        "version_notes",
        "workflow_changes",
        "permission_changes",
        "tutorials",
        "onboarding_guides",
    )
    reference_rule: ClassVar[str] = "M-7.1"
    migration_guide: Reference
    compatibility_notes: Reference
    version_notes: Reference
    workflow_changes: Reference
    permission_changes: Reference
    tutorials: Reference | None = None
    onboarding_guides: Reference | None = None


class MigrationDocumentationRequest(MigrationDocumentation):
    """`POST /v1/migrations/{id}/documentation`: each document a reference, none repeated, the
    optional ones too when given (M-7.1) — refused here, naming every bad field, before
    anything is sent."""

    judge_references: ClassVar[bool] = True


class Rollout(Form):
    """M-4.5: a versioned rollout (M-5.2), with the platform versions it works with (M-5.1),
    stored as the partner's own compatibility (E-9.2 Decision)."""

    rules: ClassVar[dict[str, str]] = {"version": "M-5.2"}
    version: Version
    compatibility: tuple[PlatformRef, ...] = Field(default=(), max_length=100)
    notes: Text | None = None


class RolloutRequest(Rollout):
    """`POST /v1/migrations/{id}/rollout`: a declaration carries no status (E-9.2)."""

    compatibility: tuple[DeclaredRef, ...] = Field(default=(), max_length=100)


class RemediationStep(Form):
    """One remediation step's content (M-9.1): the root cause, the plan, the fixes made, or
    SCO's re-validation verdict."""

    rules: ClassVar[dict[str, str]] = {"summary": "M-9.1"}
    summary: Text
    passed: bool | None = Field(default=None, description="Re-validation only: did it pass?")
    manifest: Manifest | None = Field(
        default=None,
        description="Fixes of a migration's failed validation only: the corrected manifest, "
        "which the migration validates again once the remediation completes (M-8.1).",
    )


class StewardshipSignoff(Form):
    """A body's sign-off of the annual stewardship report (E-13.1, M-10.1): what it reviewed
    and what it will change (rules, governance, matrix, lifecycle)."""

    rules: ClassVar[dict[str, str]] = {"notes": "M-10.1"}
    notes: Text
