"""The versioned policy document: every duration, catalogue and table the rules consult.

Shipped defaults live here; the store keeps later versions (P-5: a workflow keeps the version it
started with, so the document travels inside the workflow input).
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from policy.vocabulary import CapabilityKind, Classification, IntegrationKind

DEFAULT_TIERS: tuple[str, ...] = ("community", "verified", "premier", "strategic")


class Deadline(BaseModel):
    """A human step's window (P-3): the step is due `period` after it opens, with a reminder
    `reminder` after it opens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: timedelta
    reminder: timedelta


class PolicyDocument(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1)
    tiers: tuple[str, ...] = DEFAULT_TIERS
    review: Deadline = Deadline(period=timedelta(days=14), reminder=timedelta(days=10))
    vote: Deadline = Deadline(period=timedelta(days=7), reminder=timedelta(days=5))
    partner_step: Deadline = Deadline(period=timedelta(days=30), reminder=timedelta(days=23))
    # E-6: capability kinds -> classification.
    capability_classes: dict[CapabilityKind, Classification] = {
        CapabilityKind.READ_ONLY: Classification.ALLOWED,
        CapabilityKind.WORKFLOW_TRIGGER: Classification.ALLOWED,
        CapabilityKind.UI_COMPONENT: Classification.ALLOWED,
        CapabilityKind.WRITE: Classification.RESTRICTED,
        CapabilityKind.ADVANCED_PERMISSION: Classification.RESTRICTED,
        CapabilityKind.INTELLIGENCE_WORKFLOW: Classification.RESTRICTED,
        CapabilityKind.RAW_DATA_ACCESS: Classification.FORBIDDEN,
        CapabilityKind.GLOBAL_UI_OVERRIDE: Classification.FORBIDDEN,
        CapabilityKind.UNBOUNDED_PERMISSION: Classification.FORBIDDEN,
    }
    # E-8: integration kinds -> classification.
    integration_classes: dict[IntegrationKind, Classification] = {
        IntegrationKind.API: Classification.ALLOWED,
        IntegrationKind.WORKFLOW: Classification.ALLOWED,
        IntegrationKind.EXTENSION: Classification.ALLOWED,
        IntegrationKind.WRITE: Classification.RESTRICTED,
        IntegrationKind.ADVANCED_PERMISSION: Classification.RESTRICTED,
        IntegrationKind.INTELLIGENCE_WORKFLOW: Classification.RESTRICTED,
        IntegrationKind.DIRECT_DB_ACCESS: Classification.FORBIDDEN,
        IntegrationKind.INTERNAL_API_ACCESS: Classification.FORBIDDEN,
        IntegrationKind.UNBOUNDED_PERMISSION: Classification.FORBIDDEN,
    }


DEFAULT_POLICY = PolicyDocument()
