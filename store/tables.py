"""SQLModel tables. Server-owned columns live only here; request and payload models are separate
pydantic classes, so a request body can never set them (mass assignment)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


# How long the ids the store keeps may be: every process id the contract allows
# (contract.PROCESS_ID, 160: a fan-out's `<notice>.<partner>` is up to 64 + 1 + 63), its
# workflow id (`<kind>-<id>`, and a remediation's `-v<n>`), the audit keys made of a workflow
# id and a step, and the notification keys made of an audit key and a receiver.
PROCESS_ID_LENGTH = 160
WORKFLOW_ID_LENGTH = 200
AUDIT_KEY_LENGTH = 300
NOTIFICATION_KEY_LENGTH = 400


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=nullable, index=index),
    )


class Partner(SQLModel, table=True):
    __tablename__ = "partner"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    tier: str = Field(max_length=64)
    status: str = Field(default="active", max_length=16)
    os_version: str = Field(max_length=32)
    api_version: str = Field(max_length=32)
    runtime_name: str = Field(max_length=64)
    runtime_version: str = Field(max_length=32)
    grants: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="Each capability or integration held: type, name, kind, permissions.",
    )
    registered_permissions: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="Permissions registered with the partner, carried by no grant.",
    )
    created_at: datetime = _ts()


class ApiToken(SQLModel, table=True):
    """A bearer token bound to one role (P-6). Only the sha256 of its secret is stored."""

    __tablename__ = "api_token"

    id: str = Field(primary_key=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    role: str = Field(max_length=16)
    partner_id: str | None = Field(default=None, foreign_key="partner.id", max_length=64)
    label: str = Field(default="", max_length=200)
    created_at: datetime = _ts()
    expires_at: datetime | None = _ts(nullable=True)
    revoked_at: datetime | None = _ts(nullable=True)


class ConsoleSession(SQLModel, table=True):
    """A sign-in to the web console with an API token: the browser holds only a random session
    id (HttpOnly cookie), stored here as its sha256; every request acts as the token, which is
    checked again each time (a revoked token ends its sessions)."""

    __tablename__ = "console_session"

    id_sha256: str = Field(primary_key=True, max_length=64)
    token_id: str = Field(foreign_key="api_token.id", max_length=32, index=True)
    csrf: str = Field(max_length=64, description="The synchronizer token every form carries.")
    created_at: datetime = _ts()
    expires_at: datetime = _ts()
    ended_at: datetime | None = _ts(nullable=True)


class Process(SQLModel, table=True):
    """Projection of one process (expansion / migration / remediation...), written only by
    workflow activities with each event; every API read is served from here, never from a
    Temporal query (P-8)."""

    __tablename__ = "process"
    # Each list filter ends in workflow_id: a keyset page (`workflow_id > after ORDER BY
    # workflow_id LIMIT n`) is then an index range read, not a sort of every matching row.
    __table_args__ = (
        Index("ix_process_kind_partner_wf", "kind", "partner_id", "workflow_id"),
        Index("ix_process_kind_stage_wf", "kind", "stage", "workflow_id"),
        Index("ix_process_kind_status_wf", "kind", "status", "workflow_id"),
    )

    workflow_id: str = Field(primary_key=True, max_length=WORKFLOW_ID_LENGTH)
    kind: str = Field(max_length=16)
    process_id: str = Field(max_length=PROCESS_ID_LENGTH)
    partner_id: str = Field(max_length=64, index=True)
    stage: str = Field(max_length=32)
    status: str = Field(max_length=16)
    next_deadline: datetime | None = _ts(nullable=True, index=True)
    awaiting: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    policy_version: int
    state: dict[str, Any] | None = Field(
        default=None,
        sa_column=Column(JSON, nullable=True),
        description="The process's status as of its latest event: every read is served from it.",
    )
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    # The event's place in its run (RecordEvent.seq): of two events of the same workflow time,
    # the later one's state is kept, whichever commits last.
    seq: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


class PendingAction(SQLModel, table=True):
    """Who a process awaits now, one row per awaited actor (`GET /v1/me/pending`). Rewritten with
    its process's projection at every event, so it is exactly the projection's `awaiting`,
    indexed for an inbox read."""

    __tablename__ = "pending_action"
    __table_args__ = (Index("ix_pending_actor_deadline", "actor", "deadline"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    workflow_id: str = Field(max_length=WORKFLOW_ID_LENGTH, index=True)
    kind: str = Field(max_length=16)
    process_id: str = Field(max_length=PROCESS_ID_LENGTH)
    partner_id: str = Field(max_length=64)
    stage: str = Field(max_length=32)
    actor: str = Field(max_length=80)
    action: str = Field(max_length=200)
    deadline: datetime | None = _ts(nullable=True, index=True)
    # Since when the actor has been awaited for this action: kept while the same step stays
    # open across the process's events (the oldest waiting step, a business gauge).
    since: datetime | None = _ts(nullable=True)


class AuditEvent(SQLModel, table=True):
    """Append-only log: one row per governance event (P-4). `key` is unique, so an activity
    retried after its commit writes nothing the second time."""

    __tablename__ = "audit_event"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    key: str = Field(max_length=AUDIT_KEY_LENGTH, unique=True)
    at: datetime = _ts()
    recorded_at: datetime = _ts()
    workflow_id: str = Field(max_length=WORKFLOW_ID_LENGTH, index=True)
    process: str = Field(max_length=16)
    process_id: str = Field(max_length=PROCESS_ID_LENGTH)
    partner_id: str = Field(max_length=64, index=True)
    event: str = Field(max_length=64)
    actor: str = Field(max_length=64)
    stage: str = Field(max_length=32)
    rules: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Tamper evidence: each row's hash covers its content and the previous row's hash.
    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), unique=True),
    )
    prev_hash: str = Field(default="", max_length=64)
    hash: str = Field(default="", max_length=64)


class AuditChain(SQLModel, table=True):
    """The head of the audit hash chain (one row). Every append updates it in the same
    transaction, which serializes appends: the chain never forks."""

    __tablename__ = "audit_chain"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(
        default=0, sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), nullable=False)
    )
    hash: str = Field(max_length=64)


class PolicyVersion(SQLModel, table=True):
    """Every version of the policy document; the highest is in force. Running workflows carry
    their own copy (P-5), so a new version never changes them."""

    __tablename__ = "policy_version"

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    document: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    created_by: str = Field(max_length=64)


class TelemetryReport(SQLModel, table=True):
    """The platform's telemetry of a partner for one period (`POST /v1/partners/{id}/telemetry`,
    role `platform`): the evidence monitoring (M-4.6), tier upgrades (E-7.1) and downgrade
    triggers (E-7.2) are judged on."""

    __tablename__ = "telemetry_report"
    __table_args__ = (Index("ix_telemetry_partner_end", "partner_id", "period_end"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    partner_id: str = Field(max_length=64, foreign_key="partner.id")
    period_start: datetime = _ts()
    period_end: datetime = _ts()
    workflow_success_rate: float
    api_error_rate: float
    permission_usage: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    deprecated_calls: int = 0
    calls_by_version: dict[str, int] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    # Who reported it (E-7.1: evidence is what the platform reported). Reports from before
    # reporters were recorded have none: self-reported, never evidence.
    reported_by: str | None = Field(default=None, max_length=32)
    reporter_role: str | None = Field(default=None, max_length=16)
    recorded_at: datetime = _ts()


class CompatEntry(SQLModel, table=True):
    """One platform row of the compatibility matrix (E-9, M-5): changed only by TSC and platform
    processes (the shipped seed, a deprecation notice), never silently — every change is also
    an audit event naming who or what is behind it (E-9.2 Decision)."""

    __tablename__ = "compat_entry"

    kind: str = Field(primary_key=True, max_length=16)
    name: str = Field(primary_key=True, max_length=100)
    version: str = Field(primary_key=True, max_length=32)
    status: str = Field(max_length=16)
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=128)


class CompatChange(SQLModel, table=True):
    """The matrix's history: one row per changed entry, numbered — the matrix version is the
    highest number. The unique number makes two concurrent changes serialize (one retries)."""

    __tablename__ = "compat_change"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    matrix_version: int = Field(unique=True)
    kind: str = Field(max_length=16)
    name: str = Field(max_length=100)
    version: str = Field(max_length=32)
    status: str = Field(max_length=16)
    previous: str | None = Field(default=None, max_length=16)
    at: datetime = _ts()
    source: str = Field(
        max_length=WORKFLOW_ID_LENGTH, description="The process (workflow id) or the API."
    )
    actor: str = Field(max_length=64)
    audit_key: str = Field(
        max_length=AUDIT_KEY_LENGTH, description="The audit event that carried it."
    )


class PartnerCompat(SQLModel, table=True):
    """A partner's own compatibility, as a release or a rollout declared it: a platform version
    the partner's release works with (E-9.2 Decision). Never a platform row."""

    __tablename__ = "partner_compat"
    __table_args__ = (
        UniqueConstraint("source", "kind", "name", "version", name="uq_partner_compat_decl"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    partner_id: str = Field(max_length=64, foreign_key="partner.id", index=True)
    source: str = Field(
        max_length=WORKFLOW_ID_LENGTH, description="The release's or rollout's workflow id."
    )
    release: str = Field(max_length=64, description="The version released or rolled out.")
    kind: str = Field(max_length=16)
    name: str = Field(max_length=100)
    version: str = Field(max_length=32)
    declared_at: datetime = _ts()
    audit_key: str = Field(
        max_length=AUDIT_KEY_LENGTH, description="The audit event that carried it."
    )


class PartnerManifest(SQLModel, table=True):
    """One version of a partner's manifest — what its integration runs and asks for (issue 20):
    registered with the partner (version 1) and replaced only by a migration's completion, whose
    validation inspected it (M-8.1, M-4.7). The newest version is the partner's."""

    __tablename__ = "partner_manifest"

    partner_id: str = Field(primary_key=True, max_length=64, foreign_key="partner.id")
    version: int = Field(primary_key=True)
    manifest: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    source: str = Field(
        max_length=WORKFLOW_ID_LENGTH,
        description="`registration`, or the workflow id of the migration that registered it.",
    )
    registered_at: datetime = _ts()
    validated_at: datetime = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False),
        description="When it was judged: its migration's last validation, or its registration. "
        "A manifest validated before the one registered never replaces it.",
    )
    audit_key: str | None = Field(
        default=None,
        max_length=AUDIT_KEY_LENGTH,
        unique=True,
        description="The audit event that registered it (none at registration): once per event.",
    )


class NotificationRow(SQLModel, table=True):
    """One notification in one receiver's inbox (P-7), derived from the audit event that made
    it in the same transaction: keyed `<audit key>><receiver>`, so it exists once per event
    and receiver however often an activity is retried."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_receiver_id", "receiver", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    key: str = Field(max_length=NOTIFICATION_KEY_LENGTH, unique=True)
    type: str = Field(max_length=32)
    receiver: str = Field(max_length=80, description="`partner:<id>` or a body.")
    partner_id: str = Field(max_length=64, index=True)
    process_id: str = Field(max_length=PROCESS_ID_LENGTH)
    workflow_id: str = Field(max_length=WORKFLOW_ID_LENGTH)
    link: str = Field(max_length=300)
    message: str = Field(max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = _ts()


class WebhookSubscription(SQLModel, table=True):
    """Where a receiver's notifications are delivered (Standard Webhooks). The secret signs
    each delivery, so it is kept (not hashed); after a rotation the previous one signs too
    until `previous_until`."""

    __tablename__ = "webhook_subscription"

    id: str = Field(primary_key=True, max_length=40)
    owner: str = Field(max_length=80, index=True, description="`partner:<id>` or a body.")
    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    secret: str = Field(max_length=100)
    previous_secret: str | None = Field(default=None, max_length=100)
    previous_until: datetime | None = _ts(nullable=True)
    created_by: str = Field(max_length=80)
    created_at: datetime = _ts()
    last_success_at: datetime | None = _ts(nullable=True)
    disabled_at: datetime | None = _ts(nullable=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    deleted_at: datetime | None = _ts(nullable=True)


class WebhookDelivery(SQLModel, table=True):
    """One notification to one subscription: written with the notification (the outbox), then
    handed to its delivery workflow (`dispatched_at`)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("notification_id", "subscription_id", name="uq_webhook_delivery"),
        Index("ix_webhook_delivery_undispatched", "dispatched_at", "id"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    notification_id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"),
            ForeignKey("notification.id"),
            nullable=False,
            index=True,
        )
    )
    subscription_id: str = Field(max_length=40, foreign_key="webhook_subscription.id")
    status: str = Field(default="pending", max_length=16)
    created_at: datetime = _ts()
    dispatched_at: datetime | None = _ts(nullable=True)
    finished_at: datetime | None = _ts(nullable=True)


class DeliveryAttempt(SQLModel, table=True):
    """One POST of a delivery: when, what the receiver answered, or why it failed. Keyed by the
    activity's attempt number, so a retried recording never doubles a row."""

    __tablename__ = "delivery_attempt"
    __table_args__ = (UniqueConstraint("delivery_id", "attempt", name="uq_delivery_attempt"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    delivery_id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"),
            ForeignKey("webhook_delivery.id"),
            nullable=False,
            index=True,
        )
    )
    attempt: int
    at: datetime = _ts()
    status_code: int | None = None
    error: str | None = Field(default=None, max_length=500)


class StewardshipReport(SQLModel, table=True):
    """One annual stewardship report's figures (E-13.1, M-10.1), written once by its workflow;
    sign-offs and status live in the process projection."""

    __tablename__ = "stewardship_report"

    id: str = Field(primary_key=True, max_length=100)
    workflow_id: str = Field(max_length=WORKFLOW_ID_LENGTH)
    period_start: datetime = _ts()
    period_end: datetime = _ts()
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
