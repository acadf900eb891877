"""What a grant may carry (E-6.1, E-8.1), what a tier's catalogue allows (E-7.4), what a release
may take away (E-2.7), how a tier may move (E-7.1, E-7.2) and what a partner may declare against
the platform's matrix (E-9.2) — the pure rules; tests/test_api_governance.py reaches each one
through the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policy.compatibility import check_declared, deprecated_by
from policy.decisions import Decision, Finding
from policy.deprecation import DeprecationNotice
from policy.document import DEFAULT_POLICY
from policy.evidence import (
    CompatibilityMatrix,
    MatrixEntry,
    PlatformRef,
    Telemetry,
    TierEvidence,
    Violation,
)
from policy.grants import (
    WORKFLOW_KINDS,
    Grant,
    GrantType,
    Holdings,
    check_against_holdings,
    governed_workflows,
    grantable,
    legacy_additions,
)
from policy.proposal import Proposal, check_submission
from policy.tiers import same_new_tier, tier_move, upgrade_still_eligible
from policy.vocabulary import MatrixStatus, Trigger
from testdata.factories import proposal_body


def findings(**changes: Any) -> set[tuple[str, str]]:
    proposal = Proposal.model_validate(proposal_body(**changes))
    return {(f.field, f.rule) for f in check_submission(proposal, DEFAULT_POLICY).findings}


def cap(kind: str, *permissions: str) -> dict[str, Any]:
    return {"name": f"c-{kind}", "kind": kind, "permissions": list(permissions)}


def test_a_capability_is_what_its_permissions_do() -> None:
    """E-6.1 (Decision): a read-only capability carrying a write is refused, whatever it is
    called; each kind carries only its actions."""
    assert findings(requested_capabilities=[cap("read_only", "payments:write")]) == {
        ("requested_capabilities.0.permissions.0", "E-6.1")
    }
    assert findings(requested_capabilities=[cap("ui_component", "orders:read")]) == set()
    assert findings(requested_capabilities=[cap("workflow_trigger", "orders:write")]) == {
        ("requested_capabilities.0.permissions.0", "E-6.1")
    }
    assert findings(requested_capabilities=[cap("write", "orders:read", "orders:write")]) == set()
    assert findings(
        requested_tier="premier",
        requested_capabilities=[cap("write", "orders:admin")],
    ) >= {("requested_capabilities.0.permissions.0", "E-6.1")}
    premier_advanced = findings(
        requested_tier="premier", requested_capabilities=[cap("advanced_permission", "x:admin")]
    )
    assert ("requested_capabilities.0.permissions.0", "E-6.1") not in premier_advanced


def test_an_integration_is_what_its_permissions_do() -> None:
    """E-8.1: an API, workflow or extension integration reads; a write one writes."""
    assert findings(integrations=[{"name": "i", "kind": "api", "permissions": ["o:write"]}]) == {
        ("integrations.0.permissions.0", "E-8.1")
    }
    ok = {"name": "i", "kind": "write", "permissions": ["o:read", "o:write"]}
    assert findings(integrations=[ok]) == set()


def test_the_requested_tiers_catalogue_bounds_the_request() -> None:
    """E-7.4: every kind and permission action requested is in the requested tier's catalogue
    entry (verified holds no advanced permissions and no `admin` action)."""
    assert findings(requested_capabilities=[cap("advanced_permission", "orders:admin")]) == {
        ("requested_capabilities.0.kind", "E-7.4"),
        ("requested_capabilities.0.permissions.0", "E-7.4"),
    }
    community = findings(requested_tier="community", requested_capabilities=[cap("write")])
    assert community == {("requested_capabilities.0.kind", "E-7.4")}
    assert findings(requested_tier="strategic", requested_capabilities=[cap("write")]) == set()
    assert findings(
        integrations=[{"name": "ai", "kind": "intelligence_workflow", "permissions": []}]
    ) == {("integrations.0.kind", "E-7.4")}


HELD = Holdings(
    grants=(
        Grant(type="capability", name="orders-dashboard", kind="unknown"),
        Grant(type="capability", name="stock", kind="write", permissions=("stock:write",)),
    ),
    registered=("orders:read",),
)


def test_a_release_removes_only_what_is_held_and_grants_nothing_twice() -> None:
    """E-2.7: a `removes` entry names a grant or a permission the partner holds; a grant held
    already is requested again only to change it (named in `removes` too)."""
    assert check_against_holdings([], ["orders-dashboard", "orders:read"], HELD).allowed
    refused = check_against_holdings([], ["orders-dashboard", "payments:write"], HELD)
    assert [(f.field, f.rule) for f in refused.findings] == [("removes.1", "E-2.7")]
    again = Grant(type="capability", name="stock", kind="read_only", permissions=("stock:read",))
    requested = [("requested_capabilities.0", again)]
    twice = check_against_holdings(requested, [], HELD)
    assert [(f.field, f.rule) for f in twice.findings] == [
        ("requested_capabilities.0.name", "E-2.7")
    ]
    assert check_against_holdings(requested, ["stock"], HELD).allowed  # a change


def test_what_is_granted_is_judged_when_it_is_granted() -> None:
    """E-7.4 / E-6.1 at the release: a grant the tier in effect does not allow (it moved since
    the vote), or one under a held name of another kind, is withheld with why."""
    community = DEFAULT_POLICY.tier("community")
    write = Grant(type="capability", name="w", kind="write", permissions=("o:write",))
    read = Grant(type="capability", name="r", kind="read_only", permissions=("o:read",))
    stock = Grant(type="capability", name="stock", kind="read_only", permissions=("s:read",))
    ok, withheld = grantable(HELD, [write, read, stock], [], community)
    assert ok == [read]
    assert [(f.field, f.rule) for f in withheld] == [
        ("w.kind", "E-7.4"),
        ("w.permissions.0", "E-7.4"),
        ("stock", "E-6.1"),
    ]
    ok, _ = grantable(HELD, [stock], ["stock"], community)
    assert ok == [stock]  # removed and granted again: a change


def test_a_release_from_before_adds_and_removes_what_it_named() -> None:
    """E-2.7: an `apply_grant` of a run released before the decision, still in flight at a
    deploy, takes exactly its `removed` away and adds what it names — wiping nothing."""
    after = legacy_additions(HELD, ["order-trends"], ["trends:read"], ["stock"])
    assert after.capabilities == ("order-trends", "orders-dashboard")
    assert after.permissions == ("orders:read", "trends:read")


@pytest.mark.parametrize(
    ("current", "target", "trigger", "subtype", "governed", "rule"),
    [
        ("verified", "premier", Trigger.TIER_UPGRADE, "upgrade", True, None),
        ("verified", "premier", Trigger.TIER_UPGRADE, "upgrade", False, "E-7.1"),
        ("verified", "premier", Trigger.TIER_DOWNGRADE, "downgrade", False, "E-7.1"),
        ("verified", "community", Trigger.TIER_DOWNGRADE, "downgrade", False, None),
        ("verified", "community", Trigger.SECURITY_VIOLATION, "downgrade", False, None),
        ("verified", "community", Trigger.API_DEPRECATION, "downgrade", False, "E-7.2"),
        ("verified", "community", Trigger.TIER_UPGRADE, "upgrade", True, "E-7.2"),
        ("verified", "verified", Trigger.TIER_DOWNGRADE, "downgrade", False, "E-7.2"),
        ("verified", "platinum", Trigger.TIER_DOWNGRADE, "downgrade", False, "E-7.3"),
    ],
)
def test_a_tier_moves_only_by_governance(
    current: str, target: str, trigger: Trigger, subtype: str, governed: bool, rule: str | None
) -> None:
    """E-7.1: up only as the migration an approved category-B release started; E-7.2, M-2.2,
    M-2.3: down only by a downgrade (the partner's own, or a forced one)."""
    decision = tier_move(
        current=current,
        target=target,
        trigger=trigger,
        subtype=subtype,
        governed=governed,
        policy=DEFAULT_POLICY,
    )
    assert decision.rules == ([rule] if rule else [])


def test_a_governed_rise_still_needs_its_evidence() -> None:
    """E-7.1: when the tier rises (months after the vote), the recorded evidence still holds —
    an open violation since refuses it."""
    unclean = Decision(
        findings=(Finding(field="compliance_clean", rule="E-7.1", message="1 open violation"),)
    )
    args: dict[str, Any] = {
        "current": "verified",
        "target": "premier",
        "trigger": Trigger.TIER_UPGRADE,
        "subtype": "upgrade",
        "governed": True,
        "policy": DEFAULT_POLICY,
    }
    assert tier_move(**args, evidence=unclean).rules == ["E-7.1"]
    assert tier_move(**args, evidence=Decision()).allowed
    down = {
        **args,
        "target": "community",
        "trigger": Trigger.TIER_DOWNGRADE,
        "subtype": "downgrade",
    }
    assert tier_move(**down, evidence=unclean).allowed  # evidence is for rises


MATRIX = CompatibilityMatrix(
    entries=(
        MatrixEntry(kind="os", name="kwanus", version="4.2", status="retired"),
        MatrixEntry(kind="os", name="kwanus", version="5.0", status="supported"),
        MatrixEntry(kind="api", name="kwanus", version="2.1", status="deprecated"),
    )
)


def test_a_declaration_names_listed_versions_not_retired() -> None:
    """E-9.2: a partner declares only versions the matrix lists and has not retired."""
    refs = [
        PlatformRef(kind="os", name="kwanus", version="5.0"),
        PlatformRef(kind="api", name="kwanus", version="2.1"),  # deprecated: still works
        PlatformRef(kind="os", name="kwanus", version="4.2"),
        PlatformRef(kind="runtime", name="home-grown", version="1.0"),
    ]
    refused = check_declared("compatibility", refs, MATRIX)
    assert [(f.field, f.rule) for f in refused.findings] == [
        ("compatibility.2", "E-9.2"),
        ("compatibility.3", "E-9.2"),
    ]


def test_a_notice_deprecates_its_version_and_never_revives_one() -> None:
    """M-5.1: a deprecation notice marks its version deprecated; retirement stays TSC's call."""
    notice = DeprecationNotice(kind="os", version="5.0", replacement="6.0")
    assert deprecated_by(notice, MATRIX) == [
        MatrixEntry(kind="os", name="kwanus", version="5.0", status=MatrixStatus.DEPRECATED)
    ]
    retired = DeprecationNotice(kind="os", version="4.2", replacement="6.0")
    assert deprecated_by(retired, MATRIX) == []
    assert deprecated_by(DeprecationNotice(kind="permission", name="orders:write"), MATRIX) == []
    # nor lists one: a version the matrix never listed stays unlisted (a partner could then
    # declare it, E-9.2)
    unlisted = DeprecationNotice(
        kind="runtime", name="shadow-runtime", version="1.0", replacement="3.0"
    )
    assert deprecated_by(unlisted, MATRIX) == []


def test_a_declared_version_is_the_listed_one() -> None:
    """E-9.2: a version is read stripped and checked, so `4.2 ` is the listed `4.2` — never a
    second row beside it, for TSC or a partner."""
    assert PlatformRef(kind="os", name="kwanus", version="4.2 ").version == "4.2"
    assert (
        MatrixEntry(kind="os", name="kwanus", version=" 5.0", status="supported").version == "5.0"
    )
    with pytest.raises(ValueError):
        PlatformRef(kind="os", name="kwanus", version="4.2 beta")
    with pytest.raises(ValueError):  # longer than any column keeps (the fuzzer found it)
        MatrixEntry(kind="os", name="kwanus", version="0.0." + "0" * 40, status="retired")


def test_names_are_one_grant_whatever_their_case() -> None:
    """E-2.7: `Stock` beside a held `stock`, or two of one name in different case, is a second
    grant a runtime would read as the first — refused."""
    again = Grant(type="capability", name="STOCK", kind="write", permissions=("stock:write",))
    twice = check_against_holdings([("requested_capabilities.0", again)], [], HELD)
    assert [(f.field, f.rule) for f in twice.findings] == [
        ("requested_capabilities.0.name", "E-2.7"),
        ("requested_capabilities.0.permissions.0", "E-2.7"),  # stock:write, held by `stock`
    ]
    pair = [cap("read_only", "a:read"), cap("read_only", "b:read")]
    pair[1]["name"] = pair[0]["name"].upper()
    assert findings(requested_capabilities=pair) == {("requested_capabilities.1.name", "E-2.7")}


def test_a_grant_is_requested_once() -> None:
    """E-2.7: one grant a name in a proposal — two of one name, merged, would blur its kind."""
    twice = [cap("write", "reports:write"), cap("read_only", "reports:read")]
    twice[1]["name"] = twice[0]["name"]
    assert findings(requested_capabilities=twice) == {("requested_capabilities.1.name", "E-2.7")}
    read = Grant(type="capability", name="r", kind="read_only", permissions=("o:read",))
    write = Grant(type="capability", name="r", kind="write", permissions=("o:write",))
    ok, withheld = grantable(Holdings(), [read, write], [], DEFAULT_POLICY.tier("verified"))
    assert ok == [read] and [f.rule for f in withheld] == ["E-6.1"]


# A partner holding a workflow (a capability), an integration and two registered permissions —
# one of them carried by the workflow's grant as well.
WORKFLOWS = Holdings(
    grants=(
        Grant(
            type="capability",
            name="order-sync",
            kind="workflow_trigger",
            permissions=("orders:read",),
        ),
        Grant(type="integration", name="stock-feed", kind="api", permissions=("stock:read",)),
    ),
    registered=("customers:read", "orders:read"),
)


def refusals(decision: Decision) -> list[tuple[str, str]]:
    return [(f.field, f.rule) for f in decision.findings]


def test_e27_a_permission_held_is_not_granted_again() -> None:
    """E-2.7: a permission in effect — a grant's or registered — requested again is refused at
    the permission, naming what carries it; a proposal that removes it (by name, or every grant
    carrying it) changes it instead."""
    trends = Grant(
        type="capability",
        name="order-trends",
        kind="read_only",
        permissions=("trends:read", "stock:read", "customers:read", "Orders:Read"),
    )
    requested = [("requested_capabilities.0", trends)]
    refused = check_against_holdings(requested, [], WORKFLOWS)
    assert refusals(refused) == [
        ("requested_capabilities.0.permissions.1", "E-2.7"),
        ("requested_capabilities.0.permissions.2", "E-2.7"),
        ("requested_capabilities.0.permissions.3", "E-2.7"),  # compared regardless of case
    ]
    by_grant, by_registration, by_both = (f.message for f in refused.findings)
    assert "'stock:read'" in by_grant and "integration 'stock-feed'" in by_grant
    assert "'customers:read'" in by_registration and "(registered)" in by_registration
    assert "registered" in by_both and "capability 'order-sync'" in by_both
    # Removed by name, or every grant carrying it gone: a change, allowed.
    removes = ["stock-feed", "customers:read", "orders:read"]
    assert check_against_holdings(requested, removes, WORKFLOWS).allowed
    # orders:read is registered too: removing the grant that carries it leaves it in effect.
    still = check_against_holdings(
        requested, ["stock-feed", "customers:read", "order-sync"], WORKFLOWS
    )
    assert refusals(still) == [("requested_capabilities.0.permissions.3", "E-2.7")]
    assert "(registered)" in still.findings[0].message
    # An integration's permission likewise.
    feed = Grant(type="integration", name="feed", kind="api", permissions=("stock:read",))
    assert refusals(check_against_holdings([("integrations.0", feed)], [], WORKFLOWS)) == [
        ("integrations.0.permissions.0", "E-2.7")
    ]


def test_e27_a_permission_is_requested_once_in_a_proposal() -> None:
    """E-2.7: the same permission in two grants of one proposal would be granted twice — the
    second occurrence is refused, naming the first."""
    first = Grant(type="capability", name="a", kind="read_only", permissions=("reports:read",))
    second = Grant(type="integration", name="b", kind="api", permissions=("x:read", "REPORTS:read"))
    requested = [("requested_capabilities.0", first), ("integrations.0", second)]
    twice = check_against_holdings(requested, [], Holdings())
    assert refusals(twice) == [("integrations.0.permissions.1", "E-2.7")]
    assert "requested twice" in twice.findings[0].message
    assert "requested_capabilities.0" in twice.findings[0].message
    # Removing what the partner holds does not make two requests of it one.
    held = Holdings(registered=("reports:read",))
    changed = check_against_holdings(requested, ["reports:read"], held)
    assert refusals(changed) == [("integrations.0.permissions.1", "E-2.7")]


def test_e27_a_workflow_is_governed_by_one_grant_whatever_its_type() -> None:
    """E-2.7: a workflow held as a capability (workflow_trigger) is not granted again as an
    integration (workflow), whatever the case of its name, unless the proposal removes it; nor
    is one workflow requested as both in one proposal. A name of another kind is no workflow."""
    assert governed_workflows(WORKFLOWS) == {"order-sync"}
    assert WORKFLOW_KINDS[GrantType.INTEGRATION] == {"workflow", "intelligence_workflow"}
    sync = Grant(type="integration", name="Order-Sync", kind="workflow", permissions=("sync:read",))
    refused = check_against_holdings([("integrations.0", sync)], [], WORKFLOWS)
    assert refusals(refused) == [("integrations.0.name", "E-2.7")]
    assert "capability 'order-sync' (workflow_trigger)" in refused.findings[0].message
    assert check_against_holdings([("integrations.0", sync)], ["order-sync"], WORKFLOWS).allowed
    smart = sync.model_copy(update={"kind": "intelligence_workflow"})
    assert not check_against_holdings([("integrations.0", smart)], [], WORKFLOWS).allowed
    # An api integration of the name governs no workflow; nor does the held api integration.
    api = sync.model_copy(update={"kind": "api"})
    assert check_against_holdings([("integrations.0", api)], [], WORKFLOWS).allowed
    trigger = Grant(type="capability", name="stock-feed", kind="workflow_trigger")
    assert check_against_holdings([("requested_capabilities.0", trigger)], [], WORKFLOWS).allowed
    # Twice in one proposal, as a capability and an integration.
    flows = Grant(type="capability", name="flows", kind="workflow_trigger")
    also = Grant(type="integration", name="FLOWS", kind="workflow")
    requested = [("requested_capabilities.0", flows), ("integrations.0", also)]
    twice = check_against_holdings(requested, [], Holdings())
    assert refusals(twice) == [("integrations.0.name", "E-2.7")]
    assert "requested twice" in twice.findings[0].message
    reads = flows.model_copy(update={"kind": "read_only"})
    pair = [("requested_capabilities.0", reads), ("integrations.0", also)]
    assert check_against_holdings(pair, [], Holdings()).allowed


def test_a_rise_waits_on_clean_evidence_but_not_on_its_own_remediation() -> None:
    """E-7.1 at the rollout: a forced downgrade under way, or a violation, holds the rise back —
    but not the remediation the rising migration's own validation opened and closed."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    reports = tuple(
        Telemetry(
            period_start=now - timedelta(days=d + 7),
            period_end=now - timedelta(days=d),
            workflow_success_rate=0.999,
            api_error_rate=0.001,
        )
        for d in (7, 21, 35)
    )
    own = Violation(
        at=now - timedelta(days=3),
        severity="minor",
        kind="validation_failed",
        resolved_at=now - timedelta(days=1),
        origin="migration-exp-e1",
    )
    evidence = TierEvidence(telemetry=reports, violations=(own,))
    args: dict[str, Any] = {"now": now, "policy": DEFAULT_POLICY}
    assert upgrade_still_eligible(evidence, rising="migration-exp-e1", **args).allowed
    assert upgrade_still_eligible(evidence, rising="migration-exp-e2", **args).rules == ["E-7.1"]
    forced = evidence.model_copy(update={"violations": (), "forced_downgrade": "downgrade-x"})
    assert upgrade_still_eligible(forced, rising="migration-exp-e1", **args).rules == ["E-7.1"]


def test_a_new_tiers_rise_lands_on_the_tier_it_defined() -> None:
    """E-7.3: the catalogue's tier of that name must be the one the proposal defined."""
    gold = DEFAULT_POLICY.tiers[1].model_copy(update={"name": "gold"})
    other = gold.model_copy(update={"permission_actions": frozenset({"read", "write", "admin"})})
    assert same_new_tier(gold, gold).allowed and same_new_tier(None, other).allowed
    assert same_new_tier(gold, other).rules == ["E-7.3"]
