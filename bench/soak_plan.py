"""The soak's plan (bench/soak.py): which processes it starts, in what order and under which
policy version, the steps their people take, the final state each must reach, and when the
worker and the server are killed — all drawn from `--seed`, never read back from the run."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kwanus import contract
from policy.document import DEFAULT_POLICY


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "expansions" | "migrations"
    profile: str  # which policy version it starts under
    expected: tuple[str, str]  # final (stage, status)
    weight: int


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("expansion completed", "expansions", "steady", ("Review", "completed"), 30),
        Scenario("expansion rejected", "expansions", "steady", ("Approval", "rejected"), 12),
        Scenario("expansion withdrawn", "expansions", "steady", ("Evaluation", "withdrawn"), 12),
        Scenario("expansion expired", "expansions", "expiring", ("Evaluation", "expired"), 10),
        Scenario("migration parked", "migrations", "parked", ("Monitoring", "active"), 16),
        Scenario("migration declined", "migrations", "steady", ("Plan", "declined"), 10),
        # A forced migration nobody acts on: its target applies at the window's end (M-2.3) and it
        # sits in monitoring for its fallback.
        Scenario("migration enforced", "migrations", "steady", ("Monitoring", "active"), 10),
    )
}
TARGET = {"os_version": "5.0", "api_version": "3.0"}
MATRIX = [
    {"kind": "os", "name": "kwanus", "version": "5.0", "status": "supported"},
    {"kind": "api", "name": "kwanus", "version": "3.0", "status": "supported"},
    {"kind": "runtime", "name": "kwanus-runtime", "version": "3.0", "status": "supported"},
]


def policies() -> dict[str, dict[str, Any]]:
    """The policy versions processes start under (P-5: each keeps its own). `steady`: people
    have days, monitoring lasts seconds, forced migrations 10 s; `expiring`: a review window
    of seconds; `parked`: the defaults (migrations sit in monitoring for their fallback)."""
    base = DEFAULT_POLICY.model_dump(mode="json", exclude={"version"})
    base["max_open_proposals_per_partner"] = 100_000
    base["migration_windows"]["forced"] = "PT10S"
    steady = {**base, "monitoring": {**base["monitoring"]}}
    steady["monitoring"] |= {"expansion_period": "PT6S", "check_interval": "PT3S"}
    expiring = {
        **steady,
        "review": {"period": "PT6S", "reminder": "PT3S"},
        "escalation": {"period": "PT4S", "reminder": "PT2S"},
    }
    return {"steady": steady, "expiring": expiring, "parked": base}


@dataclass
class Planned:
    index: int
    scenario: Scenario
    partner: str
    pid: str
    gap: float  # seconds before its start
    reviews_before_withdrawal: int

    @property
    def workflow_id(self) -> str:
        if self.scenario.kind == "expansions":
            return contract.expansion_workflow_id(self.pid)
        return contract.migration_workflow_id(self.pid)


@dataclass
class Plan:
    seed: int
    processes: list[Planned]
    partners: list[str]
    kill_gaps: list[float]
    restart_after_kill: int
    worker_down: list[float]
    # Which worker each kill takes (index into the stack's workers): with several, every one is
    # killed (as evenly as the count allows) in a seeded order; with one, always it.
    kill_targets: list[int] = field(default_factory=list)


def make_plan(seed: int, n: int, kills: int, restarts: int, workers: int = 1) -> Plan:
    rng = random.Random(seed)
    partners = [f"p{seed}-{i}" for i in range(max(2, n // 8))]
    names = list(SCENARIOS)
    weights = [SCENARIOS[s].weight for s in names]
    kill_gaps = [rng.uniform(3.0, 8.0) for _ in range(kills)]
    start_phase = max(sum(kill_gaps), 5.0)
    processes = [
        Planned(
            index=i,
            scenario=SCENARIOS[rng.choices(names, weights)[0]],
            partner=rng.choice(partners),
            pid=f"soak{seed}-{i:04d}",
            gap=rng.expovariate(n / start_phase),
            reviews_before_withdrawal=rng.randint(0, 2),
        )
        for i in range(n)
    ]
    worker_down = [rng.uniform(0.2, 2.0) for _ in range(kills)]
    kill_targets = [i % workers for i in range(kills)]
    if workers > 1:  # drawn last: a one-worker plan is the same as before there was a choice
        rng.shuffle(kill_targets)
    return Plan(
        seed=seed,
        processes=processes,
        partners=partners,
        kill_gaps=kill_gaps,
        restart_after_kill=kills // 2 if restarts else -1,
        worker_down=worker_down,
        kill_targets=kill_targets,
    )


def partner_body(partner_id: str) -> dict[str, Any]:
    return {
        "id": partner_id,
        "name": f"Partner {partner_id}",
        "tier": "verified",
        "os_version": "4.2",
        "api_version": "2.1",
        "runtime": {"name": "kwanus-runtime", "version": "3.0"},
        "capabilities": [],
        "permissions": ["orders:read"],
    }


def proposal_body(pid: str) -> dict[str, Any]:
    return {
        "id": pid,
        "category": "A",
        "description": "A read-only order analytics widget",
        "justification": "Merchants ask for order trends",
        "requested_tier": "verified",
        "requested_capabilities": [
            {"name": f"trends-{pid}", "kind": "read_only", "permissions": [f"trends-{pid}:read"]}
        ],
        # each new, its permission too (E-2.7)
        "integrations": [{"name": f"orders-api-{pid}", "kind": "api"}],
        "governance_alignment": "Governed read APIs only",
        "compatibility_impact": "Additive",
        "security_impact": "Read-only, partner-scoped",
        "lifecycle_plan": "Two OS major versions",
        "risk_mitigation": "Feature flag",
        "fallback_plan": "Disable it",
        "monitoring_plan": "Dashboards",
    }


def migration_body(p: Planned) -> dict[str, Any]:
    common = {"id": p.pid, "partner_id": p.partner}
    if p.scenario.name == "migration parked":
        extra = {"trigger": "os_major_version", "type": "version", "subtype": "os"}
        return {**common, **extra, "target": TARGET, "fallback_months": 6}
    if p.scenario.name == "migration declined":
        # the partner's own downgrade: optional, so it may decline it (M-2.2)
        extra = {"trigger": "tier_downgrade", "type": "tier", "subtype": "downgrade"}
        return {**common, **extra, "target": {"tier": "community"}}
    return {**common, "trigger": "security_violation", "type": "permission", "subtype": "reduction"}
