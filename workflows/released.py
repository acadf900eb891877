"""What a released proposal changes, run by the expansion's Release stage in this order (E-2.7):
a new tier into the catalogue (E-7.3), a category D's policy change (E-3.4), the grants added
to what the partner holds and exactly `removes` taken away, and the migration the proposal
calls for (E-2.1a)."""

from __future__ import annotations

from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from activities.processes import ProcessStarter
    from kwanus import contract
    from kwanus.models.expansion import (
        ExpansionInput,
        ExpansionStatus,
        NewTierInput,
        PolicyChangeInput,
        ReleaseInput,
    )
    from kwanus.models.migration import MigrationInput, WithTier
    from policy.forms import Release
    from policy.proposal import NewTier
    from policy.tiers import follow_up, moves_tier
    from workflows.common import Ledger, call


async def add_tier(ledger: Ledger, new_tier: NewTier) -> None:
    """E-7.3: the approved new tier joins the catalogue; the tier migration moves the partner."""
    await call(
        GovernanceActivities.add_tier,
        NewTierInput(
            event=ledger.now_event(
                "new_tier", "tier_created", rules=["E-7.3"], data={"tier": new_tier.spec.name}
            ),
            new_tier=new_tier,
        ),
        summary="add the new tier to the catalogue",
    )


async def publish_policy(ledger: Ledger, change: dict[str, Any]) -> int | None:
    """E-3.4 (Decision): a category-D release publishes its policy change as a new policy
    version authored by the expansion — judged again against the policy in force; running
    processes keep theirs (P-5). The version, or None (refused, on record)."""
    return await call(
        GovernanceActivities.publish_policy,
        PolicyChangeInput(
            event=ledger.now_event(
                "policy_change",
                "policy_published",
                rules=["E-3.4", "E-13.1", "P-5"],
                data={"change": change},
            ),
            change=change,
        ),
        summary="publish the policy change",
    )


async def update_grants(ledger: Ledger, inp: ExpansionInput, release: Release) -> None:
    """E-2.7: the approved grants added to what the partner holds at release, exactly `removes`
    taken away, the partner's declared compatibility stored as its own (E-9.2). A category-B
    release's grants come with its tier, at the tier migration's rollout (E-7.4: what a tier
    allows is held on that tier, never before it)."""
    proposal = inp.proposal
    with_tier = moves_tier(proposal, inp.policy)
    add = [] if with_tier else list(proposal.grants)
    removes = [] if with_tier else list(proposal.removes)
    await call(
        GovernanceActivities.release_grants,
        ReleaseInput(
            event=ledger.now_event(
                "governance_update",
                "governance_update",
                rules=["E-2.7", "E-9.1", "E-9.2"],
                data={
                    "version": release.version,
                    "requested": [g.model_dump(mode="json") for g in add],
                    "removes": removes,
                    "with_the_tier": with_tier,
                },
            ),
            partner_id=inp.partner_id,
            add=add,
            removes=removes,
            release=release.version,
            declared=list(release.compatibility),
        ),
        summary="governance update",
    )


async def start_migration(ledger: Ledger, inp: ExpansionInput, state: ExpansionStatus) -> None:
    """E-2.1a: start the PartnerMigration the release calls for, ID from the proposal, linked
    (not a child): it outlives the expansion's run."""
    proposal = inp.proposal
    follow = follow_up(proposal, inp.partner_tier, inp.policy)
    migration_id = contract.expansion_migration_id(inp.expansion_id)
    await call(
        ProcessStarter.start_migration,
        MigrationInput(
            migration_id=migration_id,
            partner_id=inp.partner_id,
            trigger=follow.trigger,
            type_=follow.type_,
            subtype=follow.subtype,
            fallback_months=inp.policy.fallback_default_months,
            policy=inp.policy,
            origin=state.workflow_id,
            requested_by="system",
            target={"tier": proposal.requested_tier} if follow.with_tier else {},
            with_tier=WithTier(
                from_tier=inp.partner_tier,
                grants=list(proposal.grants),
                removes=list(proposal.removes),
                spec=proposal.new_tier.spec if proposal.new_tier else None,
            )
            if follow.with_tier
            else None,
        ),
        summary=f"start migration {migration_id}",
    )
    state.migration_id = migration_id
    await ledger.emit(
        "migration_started",
        "migration_started",
        rules=["E-2.1a", "E-9.1"],
        data={
            "migration_id": migration_id,
            "trigger": follow.trigger.value,
            "type": follow.type_.value,
        },
    )
