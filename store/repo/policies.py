"""Policy versions (P-5): the version in force, a new version, and a new tier in the catalogue
(E-7.3)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from kwanus.models.common import RecordEvent
from policy.document import DEFAULT_POLICY, PolicyContent, PolicyDocument
from policy.proposal import NewTier, with_new_tier
from store import audit
from store.repo.common import AlreadyExists
from store.repo.processes import _append_audit
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
    if _append_audit(
        session, event.model_copy(update={"data": {**event.data, "policy": doc.version}})
    ):
        session.commit()
    return doc.version


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
