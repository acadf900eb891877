"""What a partner holds and declares, changed only by governance (E-2.7, E-9.2): a release's grants,
the old runs' `apply_grant`, and the compatibility a release or rollout declares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlmodel import Session, col, select

from kwanus.models.common import RecordEvent
from kwanus.models.expansion import GrantInput, ReleaseInput
from policy.decisions import Finding
from policy.evidence import PlatformRef
from policy.grants import Grant, Holdings, change, governance_update, grantable, legacy_additions
from store.repo.common import insert_for
from store.repo.partners import _locked_partner, _set_holdings, holdings
from store.repo.policies import current_policy
from store.repo.processes import _first_time, _record_once
from store.tables import Partner, PartnerCompat


def _change_holdings(
    session: Session,
    event: RecordEvent,
    partner_id: str,
    update: Callable[[Partner, Holdings], tuple[Holdings, dict[str, Any]]],
    *,
    release: str,
    declared: Sequence[PlatformRef],
) -> bool:
    """A governed change of what the partner holds, once per key: `update` applied to what it
    holds *now* (read under the audit chain's lock, so no other governed change lands in
    between), its declared compatibility stored as its own (E-9.2), and the event recording
    before, after, added and removed (and what `update` adds to it) — in one transaction."""
    if not _first_time(session, event.key):
        return False
    partner = _locked_partner(session, partner_id)
    before = holdings(partner)
    after, extra = update(partner, before)
    data = {
        **event.data,
        **change(before, after).model_dump(mode="json"),
        **extra,
        "declared": _declare(session, partner_id, event, release, declared),
    }
    _record_once(session, event.model_copy(update={"data": data}))
    _set_holdings(partner, after)
    session.add(partner)
    session.commit()
    return True


def _granted(
    session: Session, partner: Partner, held: Holdings, add: Sequence[Grant], removes: Sequence[str]
) -> tuple[Holdings, list[Finding]]:
    """E-2.7: what the partner holds with exactly `removes` taken away and what may be granted
    now added (E-7.4 against the tier in effect, E-6.1); the rest withheld, with why."""
    tier = current_policy(session=session).tier(partner.tier)
    ok, withheld = grantable(held, add, removes, tier)
    return governance_update(held, add=ok, removes=removes), withheld


def release_grants(*, session: Session, inp: ReleaseInput) -> bool:
    """E-2.7: the release's governance update — the approved grants added, exactly `removes`
    taken away; no tier and no platform row changes. A grant the tier in effect does not allow
    (it moved since the vote) is withheld, and named in the event."""

    def update(partner: Partner, held: Holdings) -> tuple[Holdings, dict[str, Any]]:
        after, withheld = _granted(session, partner, held, inp.add, inp.removes)
        return after, {"withheld": [f"{f.field}: {f.message} ({f.rule})" for f in withheld]}

    return _change_holdings(
        session, inp.event, inp.partner_id, update, release=inp.release, declared=inp.declared
    )


def apply_grant(*, session: Session, grant: GrantInput) -> bool:
    """A release as runs released before E-2.7's decision sent it, in flight at a deploy: its
    event's `removed` taken away and what it names added; neither the tier nor a platform row
    moves."""
    removes = [str(r) for r in grant.event.data.get("removed", [])]
    return _change_holdings(
        session,
        grant.event,
        grant.partner_id,
        lambda _, held: (
            legacy_additions(held, grant.capabilities, grant.permissions, removes),
            {},
        ),
        release="",
        declared=grant.compatibility,
    )


def _declare(
    session: Session,
    partner_id: str,
    event: RecordEvent,
    release: str,
    refs: Sequence[PlatformRef],
) -> list[dict[str, str]]:
    """Store a release's or rollout's declared compatibility as the partner's own (E-9.2), once
    per (process, entry). Returns what was declared, for the audit event."""
    insert = insert_for(session)
    out = []
    for ref in refs:
        stmt = (
            insert(PartnerCompat)
            .values(
                partner_id=partner_id,
                source=event.workflow_id,
                release=release,
                kind=ref.kind.value,
                name=ref.name,
                version=ref.version,
                declared_at=event.at,
                audit_key=event.key,
            )
            .on_conflict_do_nothing(index_elements=["source", "kind", "name", "version"])
        )
        session.execute(stmt)
        out.append({"kind": ref.kind.value, "name": ref.name, "version": ref.version})
    return out


def compatibility_of(
    *, session: Session, partner_ids: Sequence[str]
) -> dict[str, list[PartnerCompat]]:
    """`partner_compatibility` for a page of partners, in one query."""
    out: dict[str, list[PartnerCompat]] = {}
    if not partner_ids:
        return out
    rows = session.exec(
        select(PartnerCompat)
        .where(col(PartnerCompat.partner_id).in_(partner_ids))
        .order_by(col(PartnerCompat.declared_at).desc(), col(PartnerCompat.id).desc())
    ).all()
    for row in rows:
        out.setdefault(row.partner_id, []).append(row)
    return out


def partner_compatibility(*, session: Session, partner_id: str) -> Sequence[PartnerCompat]:
    """What the partner's releases and rollouts declared they work with, newest first."""
    return session.exec(
        select(PartnerCompat)
        .where(col(PartnerCompat.partner_id) == partner_id)
        .order_by(col(PartnerCompat.declared_at).desc(), col(PartnerCompat.id).desc())
    ).all()
