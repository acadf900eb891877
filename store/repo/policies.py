"""Policy versions (P-5): the version in force, a new version, a new tier in the catalogue
(E-7.3), a category-D release's change (E-3.4), and their history."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from kwanus.models.common import RecordEvent
from policy.document import (
    DEFAULT_POLICY,
    PolicyChange,
    PolicyContent,
    PolicyDocument,
    apply_change,
    changed_fields,
)
from policy.proposal import NewTier, with_new_tier
from store import audit
from store.repo.common import AlreadyExists, as_utc
from store.repo.processes import _record_once, audit_data
from store.tables import PolicyVersion, utcnow


def current_policy(*, session: Session) -> PolicyDocument:
    """The version in force: the highest stored, or the shipped defaults (version 1)."""
    row = session.exec(
        select(PolicyVersion).order_by(col(PolicyVersion.version).desc()).limit(1)
    ).first()
    if row is None:
        return DEFAULT_POLICY
    return PolicyDocument.model_validate({**row.document, "version": row.version})


def add_tier(*, session: Session, event: RecordEvent, new_tier: NewTier) -> int | None:
    """E-7.3: a new policy version whose catalogue has `new_tier`, audited by `event`. Returns the
    version, or None when the tier is already there (a retried activity)."""
    current = current_policy(session=session)
    if new_tier.spec.name in current.tier_names:
        return None
    doc = save_policy(
        session=session, content=with_new_tier(current, new_tier), actor=event.workflow_id
    )
    if _record_once(
        session, event.model_copy(update={"data": {**event.data, "policy": doc.version}})
    ):
        session.commit()
    return doc.version


def publish_change(*, session: Session, event: RecordEvent, change: dict[str, Any]) -> int | None:
    """E-3.4 (Decision): a category-D release's policy change as a new version authored by the
    expansion (its workflow id), audited by `event`, once. Judged against the policy in force
    now (E-3.4, the spec's floors): None, with the refusal on record, when it no longer holds."""
    done = audit_data(session=session, key=event.key)
    if done is not None:  # a retried activity: what it did is on record
        session.rollback()
        version = done.get("policy")
        return int(version) if version is not None else None
    current = current_policy(session=session)
    proposed, decision = apply_change(current, change)
    if proposed is None:
        refused = [f"{f.field}: {f.message} ({f.rule})" for f in decision.findings]
        if _record_once(
            session, event.model_copy(update={"data": {**event.data, "refused": refused}})
        ):
            session.commit()
        return None
    same = proposed.model_dump(mode="json") == current.model_dump(mode="json", exclude={"version"})
    version = (  # applied already: a retry after the version was saved, before its event
        current.version
        if same
        else save_policy(session=session, content=proposed, actor=event.workflow_id).version
    )
    data = {**event.data, "policy": version, "fields": sorted(change)}
    if _record_once(session, event.model_copy(update={"data": data})):
        session.commit()
    return version


def policy_history(*, session: Session) -> list[PolicyChange]:
    """Every stored version, oldest first: who made it, when, and the fields it changed."""
    rows = session.exec(select(PolicyVersion).order_by(col(PolicyVersion.version))).all()
    out = []
    previous = DEFAULT_POLICY.model_dump(mode="json", exclude={"version"})
    for row in rows:
        out.append(
            PolicyChange(
                version=row.version,
                author=row.created_by,
                at=as_utc(row.created_at) or row.created_at,
                fields=changed_fields(previous, row.document),
            )
        )
        previous = row.document
    return out


def save_policy(*, session: Session, content: PolicyContent, actor: str) -> PolicyDocument:
    """Store `content` as the next version and audit the change. Two concurrent saves cannot
    both take the same number (primary key): the loser gets AlreadyExists."""
    current = current_policy(session=session)
    doc = PolicyDocument.model_validate({**content.model_dump(), "version": current.version + 1})
    now = utcnow()
    body = doc.model_dump(mode="json", exclude={"version"})
    session.add(PolicyVersion(version=doc.version, document=body, created_at=now, created_by=actor))
    audit.append(
        session,
        {
            "key": f"policy:v{doc.version}",
            "at": now,
            "recorded_at": now,
            "workflow_id": "policy",
            "process": "policy",
            "process_id": str(doc.version),
            "partner_id": "",
            "event": "policy_changed",
            "actor": actor,
            "stage": "",
            "rules": ["P-5"],
            "data": {"version": doc.version, "previous": current.version},
        },
    )
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise AlreadyExists(f"policy version {doc.version}") from exc
    return doc
