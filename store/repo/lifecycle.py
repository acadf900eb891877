"""The partner's lifecycle record: a rollout's effect (M-4.5) and tier move (E-7.1, E-7.2), a
completed migration's target (M-4.7), and the partner's status (M-9.2, M-9.3)."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from kwanus import contract
from kwanus.models.migration import (
    LifecycleInput,
    MigrationStatus,
    RolloutInput,
    TierChange,
    WithTier,
)
from kwanus.models.remediation import PartnerStatusInput
from policy.decisions import Decision
from policy.grants import change
from policy.migration import takes_effect
from policy.tiers import (
    below,
    governed_upgrade,
    same_new_tier,
    tier_move,
    upgrade_still_eligible,
)
from policy.vocabulary import Trigger
from store import audit
from store.repo.common import UnknownPartner
from store.repo.grants import _declare, _granted
from store.repo.partners import (
    _locked_partner,
    _set_holdings,
    current_manifest,
    holdings,
    register_manifest,
)
from store.repo.policies import current_policy
from store.repo.processes import (
    _first_time,
    _record,
    _record_once,
    audit_data,
    expansion_status,
    get_process,
    state_of,
)
from store.repo.telemetry import tier_evidence
from store.tables import Partner, utcnow

LIFECYCLE_FIELDS = ("tier", "os_version", "api_version", "runtime_name", "runtime_version")


def _tier_change(
    session: Session,
    partner: Partner,
    *,
    migration_id: str,
    target: str,
    trigger: Trigger,
    subtype: str,
    origin: str | None,
    with_tier: WithTier | None,
) -> TierChange:
    """Judge a tier migration's move against the tier in effect now (E-7.1, E-7.2) and apply
    it if it holds. A rise is governed when it is the migration an approved category-B
    expansion of this partner started at its release, from the tier the partner is on now;
    and E-7.1's recorded evidence must still hold when the tier rises."""
    expansion = expansion_status(session=session, workflow_id=origin) if origin else None
    governed = expansion is not None and governed_upgrade(
        same_partner=expansion.partner_id == partner.id,
        category=expansion.category,
        approved=expansion.approved,
        released=expansion.released,
        started=contract.expansion_migration_id(expansion.id) == migration_id,
        from_tier=with_tier is not None and with_tier.from_tier == partner.tier,
    )
    policy = current_policy(session=session)
    now = utcnow()
    evidence = tier_evidence(session=session, partner_id=partner.id, now=now)
    decision = tier_move(
        current=partner.tier,
        target=target,
        trigger=trigger,
        subtype=subtype,
        governed=governed,
        evidence=Decision.merge(
            upgrade_still_eligible(
                evidence,
                now=now,
                policy=policy,
                rising=contract.migration_workflow_id(migration_id),
            ),
            same_new_tier(with_tier.spec if with_tier else None, policy.tier(target)),
        ),
        policy=policy,
    )
    moved = TierChange(
        before=partner.tier,
        target=target,
        applied=decision.allowed,
        reasons=[f"{f.message} ({f.rule})" for f in decision.findings],
    )
    if decision.allowed:
        partner.tier = target
    return moved


def roll_out(*, session: Session, inp: RolloutInput) -> TierChange | None:
    """M-4.5: the rollout takes effect, once per key, in one transaction with its event (and
    the projection): the partner's declared compatibility (E-9.2) and, for a tier migration,
    the tier — judged against the tier in effect now — with the grants that come with it
    (a category-B release's, E-2.7). A retry after the commit answers from the record."""
    audit.lock(session)
    done = audit_data(session=session, key=inp.event.key)
    if done is not None:
        session.rollback()
        tier = done.get("tier_change")
        return TierChange.model_validate(tier) if tier else None
    partner = _locked_partner(session, inp.partner_id)
    moved = None
    data: dict[str, Any] = dict(inp.event.data)
    if inp.tier is not None:
        moved = _tier_change(
            session,
            partner,
            migration_id=inp.event.process_id,
            target=inp.tier,
            trigger=inp.trigger,
            subtype=inp.subtype,
            origin=inp.origin,
            with_tier=inp.with_tier,
        )
        grants, removes = (
            (inp.with_tier.grants, inp.with_tier.removes) if inp.with_tier else ([], [])
        )
        if grants or removes:
            before = holdings(partner)
            if moved.applied:
                after, withheld = _granted(session, partner, before, grants, removes)
                _set_holdings(partner, after)
                data.update(change(before, after).model_dump(mode="json"), removes=removes)
                moved.withheld = [f"{f.field}: {f.message} ({f.rule})" for f in withheld]
            else:
                moved.withheld = [f"{g.name}: the tier did not move" for g in grants]
        session.add(partner)
    policy = current_policy(session=session)
    down = moved is not None and moved.applied and below(moved.target, moved.before, policy)
    held = holdings(partner)
    kept = takes_effect(
        held,
        trigger=inp.trigger,
        type_=inp.type_,
        subtype=inp.subtype,
        moved_down_to=policy.tier(moved.target) if moved is not None and down else None,
    )
    if kept != held:  # E-7.4 / M-2.3: what the lower tier (or the forced reduction) disallows
        _set_holdings(partner, kept)
        session.add(partner)
        data.update(trimmed=change(held, kept).model_dump(mode="json"))
    declared = _declare(session, inp.partner_id, inp.event, inp.release, inp.declared)
    tier_change = moved.model_dump(mode="json") if moved else None
    data.update(declared=declared, tier_change=tier_change)
    event = inp.event.model_copy(update={"data": data})
    if inp.event.state is not None:  # the migration's status, with what its rollout moved
        status = MigrationStatus.model_validate(inp.event.state)
        status.tier_change = moved
        event.state = status.model_dump(mode="json")
    _record(session, event)
    session.commit()
    return moved


def apply_lifecycle(*, session: Session, inp: LifecycleInput) -> bool:
    """M-4.7: the partner's record takes the migration's target and its validated manifest
    (a new version of the partner's manifest), with its audit event, once. A
    tier in the target (runs rolled out before the tier moved at rollout) is judged like a
    rollout's (E-7.1, E-7.2): a rise not governed by a released category-B expansion, or a move
    against the migration's direction, is not applied and says why in the event."""
    if not _first_time(session, inp.event.key):
        return False
    partner = _locked_partner(session, inp.partner_id)
    data = dict(inp.event.data)
    # The validated manifest becomes the partner's; a run without one (its implementation
    # came before manifests, or a forced target applied without the partner) moves the
    # registered one to the target. The partner's versions and runtime follow it.
    registered = current_manifest(session=session, partner=partner)
    manifest = inp.manifest or registered.with_target(inp.target)
    version, registers = register_manifest(
        session=session,
        partner=partner,
        manifest=manifest,
        validated_at=inp.validated_at if inp.manifest else None,
        applied_at=None if inp.manifest else inp.enforced_at,
        source=inp.event.workflow_id,
        key=inp.event.key,
        at=inp.event.at,
    )
    data["manifest_version"] = version
    if not registers:
        data["manifest_superseded"] = (
            f"version {version}, validated after this migration's manifest, stands"
        )
    if "tier" in inp.target:
        row = get_process(session=session, workflow_id=inp.event.workflow_id)
        migration = state_of(row, contract.MIGRATION)
        if migration is None:
            raise UnknownPartner(f"no record of {inp.event.workflow_id}")
        moved = _tier_change(
            session,
            partner,
            migration_id=migration.id,
            target=inp.target["tier"],
            trigger=migration.trigger,
            subtype=migration.subtype,
            origin=migration.origin,
            with_tier=None,  # runs rolled out before: their release moved the tier already
        )
        data["tier_change"] = moved.model_dump(mode="json")
    _record_once(session, inp.event.model_copy(update={"data": data}))
    session.add(partner)
    session.commit()
    return True


def set_partner_status(*, session: Session, inp: PartnerStatusInput) -> bool:
    """Restrict or restore a partner's access (M-9.2, M-9.3), with its audit event, once."""
    if not _record_once(session, inp.event):
        return False
    partner = session.get(Partner, inp.partner_id)
    if partner is None:
        session.rollback()
        raise UnknownPartner(inp.partner_id)
    partner.status = inp.status.value
    session.add(partner)
    session.commit()
    return True
