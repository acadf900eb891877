"""What runs started before a patch did, kept only so they replay (README, "Changing workflow
code"): a live run takes the patched path. Each function is its patch's old branch, commands and
records as they were."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.governance import GovernanceActivities
    from kwanus.models.common import Act
    from kwanus.models.expansion import ExpansionInput, GrantInput
    from kwanus.models.migration import MatrixInput
    from policy.evidence import PartnerState
    from policy.expansion import legacy_governance_update
    from policy.forms import Release, Rollout
    from workflows.common import Ledger, call


async def release_over_nothing(ledger: Ledger, inp: ExpansionInput, release: Release) -> None:
    """Before `release-adds-to-what-is-held`: the release wrote the requested tier and grants
    over an empty "before" (`apply_grant`)."""
    before = PartnerState(
        partner_id=inp.partner_id,
        tier=inp.partner_tier,
        os_version="",
        api_version="",
        runtime_name="",
        runtime_version="",
    )
    granted = legacy_governance_update(before, inp.proposal)
    await call(
        GovernanceActivities.apply_grant,
        GrantInput(
            event=ledger.now_event(
                "governance_update",
                "governance_update",
                rules=["E-2.7", "E-9.1"],
                data={
                    "version": release.version,
                    "tier": granted.tier,
                    "granted": list(granted.capabilities),
                    "permissions": list(granted.permissions),
                    "removed": list(inp.proposal.removes),
                    "compatibility": [e.model_dump(mode="json") for e in release.compatibility],
                },
            ),
            partner_id=inp.partner_id,
            tier=granted.tier,
            capabilities=list(granted.capabilities),
            permissions=list(granted.permissions),
            compatibility=list(release.compatibility),
        ),
        summary="governance update",
    )


async def rollout_to_the_matrix(ledger: Ledger, act: Act[Rollout], fallback_active: bool) -> None:
    """Before `rollout-takes-effect`: the rollout was recorded, then its declared compatibility
    written to the platform's matrix (`update_matrix`)."""
    await ledger.emit(
        "rollout",
        "rolled_out",
        actor=act.actor.name,
        rules=["M-4.5", "M-5.2"],
        data={"version": act.body.version, "fallback_active": fallback_active},
    )
    if act.body.compatibility:
        await call(
            GovernanceActivities.update_matrix,
            MatrixInput(
                event=ledger.now_event(
                    "matrix:rollout", "matrix_changed", actor=act.actor.name, rules=["M-5.1"]
                ),
                entries=list(act.body.compatibility),
            ),
            summary="update the compatibility matrix",
        )
