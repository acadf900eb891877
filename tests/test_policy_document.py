"""The policy document's hard floors: a new version may tighten the spec, never loosen it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from policy.document import DEFAULT_POLICY, PolicyContent, check_floors, check_update
from policy.vocabulary import RiskLevel

BASE: dict[str, Any] = DEFAULT_POLICY.model_dump(exclude={"version"})


def _doc(**changes: Any) -> PolicyContent:
    return PolicyContent.model_validate({**BASE, **changes})


def _rules(doc: PolicyContent) -> set[str]:
    return set(check_floors(doc).rules)


def test_shipped_defaults_hold_every_floor() -> None:
    assert check_floors(DEFAULT_POLICY).allowed
    assert DEFAULT_POLICY.version == 1


def test_fallback_below_six_months_refused() -> None:
    """M-6.2: the minimum fallback can be raised, never lowered below 6 months."""
    assert _rules(_doc(fallback_min_months=5)) == {"M-6.2"}
    assert _rules(_doc(fallback_default_months=5)) == {"M-6.2"}
    assert check_floors(_doc(fallback_min_months=9, fallback_default_months=12)).allowed


@pytest.mark.parametrize(("severity", "days"), [("minor", 31), ("moderate", 15), ("severe", 1)])
def test_longer_remediation_window_refused(severity: str, days: int) -> None:
    """M-9.2: minor at most 30 days, moderate at most 14, severe at once."""
    windows = {**BASE["remediation_windows"], severity: timedelta(days=days)}
    assert _rules(_doc(remediation_windows=windows)) == {"M-9.2"}


def test_monitoring_needs_a_check_interval() -> None:
    """M-4.6: telemetry is checked at intervals; zero would check it in a busy loop, and an
    interval longer than the expansion's monitoring period would never check it at all."""
    zero = _doc(monitoring={**BASE["monitoring"], "check_interval": timedelta(0)})
    assert [f.field for f in check_floors(zero).findings] == ["monitoring.check_interval"]
    assert _rules(zero) == {"M-4.6"}
    longer = {"expansion_period": timedelta(days=7), "check_interval": timedelta(days=8)}
    assert _rules(_doc(monitoring={**BASE["monitoring"], **longer})) == {"M-4.6"}


def test_shorter_remediation_window_is_a_tightening() -> None:
    windows = {**BASE["remediation_windows"], "minor": timedelta(days=21)}
    assert check_floors(_doc(remediation_windows=windows)).allowed


def test_forbidden_kind_made_allowed_refused() -> None:
    """E-6.3, E-8.3: a forbidden kind stays forbidden; E-6.2, E-8.2: a restricted one is not
    made allowed; an allowed one may become restricted."""
    caps = {**BASE["capability_classes"], "raw_data_access": "allowed", "write": "allowed"}
    integ = {**BASE["integration_classes"], "direct_db_access": "restricted"}
    decision = check_floors(_doc(capability_classes=caps, integration_classes=integ))
    assert {(f.field, f.rule) for f in decision.findings} == {
        ("capability_classes.raw_data_access", "E-6.3"),
        ("capability_classes.write", "E-6.2"),
        ("integration_classes.direct_db_access", "E-8.3"),
    }
    tighter = {**BASE["capability_classes"], "read_only": "restricted"}
    assert check_floors(_doc(capability_classes=tighter)).allowed


def test_risk_plans_cannot_be_dropped() -> None:
    """E-11.1: every level requires mitigation, fallback and monitoring plans."""
    risk = {**BASE["risk"], "plans_required": {**BASE["risk"]["plans_required"], "low": ()}}
    assert _rules(_doc(risk=risk)) == {"E-11.1"}
    bad_order = {**BASE["risk"], "thresholds": {**BASE["risk"]["thresholds"], "high": 2}}
    assert _rules(_doc(risk=bad_order)) == {"E-11.1"}


def test_forced_window_stays_shortest() -> None:
    """M-2.3: forced migrations have shorter windows."""
    windows = {**BASE["migration_windows"], "forced": timedelta(days=200)}
    assert _rules(_doc(migration_windows=windows)) == {"M-2.3"}


def test_every_step_keeps_a_deadline_with_a_reminder_before_it() -> None:
    """P-3: no step waits forever; the reminder comes before the deadline."""
    bad = {"period": timedelta(days=7), "reminder": timedelta(days=8)}
    assert _rules(_doc(vote=bad)) == {"P-3"}


def test_tiers_are_not_removed_by_an_edit_and_hold_nothing_forbidden() -> None:
    """E-7.3: tiers come and go (and rank) through governance; E-5.2: no tier holds a
    forbidden kind."""
    fewer = _doc(tiers=BASE["tiers"][:3])
    assert check_update(DEFAULT_POLICY, fewer).rules == ["E-7.3"]
    # a tier's rank is its place: reordered, partners would rise with no migration (E-7.1)
    reordered = _doc(tiers=list(reversed(BASE["tiers"])))
    assert "E-7.3" in check_update(DEFAULT_POLICY, reordered).rules
    # nor added: a new tier is a category B proposal's, with its vote (E-7.3)
    extra = {**BASE["tiers"][-1], "name": "platinum"}
    assert check_update(DEFAULT_POLICY, _doc(tiers=[*BASE["tiers"], extra])).rules == ["E-7.3"]
    top = BASE["tiers"][-1]
    rogue = {**top, "capability_kinds": [*top["capability_kinds"], "raw_data_access"]}
    assert _rules(_doc(tiers=[*BASE["tiers"][:-1], rogue])) == {"E-5.2"}


def test_a_tiers_rank_is_what_it_holds() -> None:
    """E-7.4: each tier holds at least what the one below holds — a tier ranked low with a
    wider catalogue would make a downgrade onto it widen what a partner may do."""
    wider = {**BASE["tiers"][0], "permission_actions": ["read", "write", "delete"]}
    assert _rules(_doc(tiers=[wider, *BASE["tiers"][1:]])) == {"E-7.4"}
    assert check_floors(DEFAULT_POLICY).allowed


def test_incomplete_tables_are_invalid() -> None:
    with pytest.raises(ValueError, match="migration_windows"):
        _doc(migration_windows={"required": timedelta(days=9)})


def test_round_trips_through_json() -> None:
    """Stored as JSON, read back equal (the store keeps every version)."""
    restored = type(DEFAULT_POLICY).model_validate_json(DEFAULT_POLICY.model_dump_json())
    assert restored == DEFAULT_POLICY
    assert restored.risk.thresholds[RiskLevel.CRITICAL] == 15
