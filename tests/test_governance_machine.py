"""A hypothesis state machine over the governance API on the dev server: partners submit and
withdraw, the bodies review and vote (approve or reject, sometimes twice, sometimes out of
turn), CGB extends deadlines, SCO reports violations, proposals are released (adding grants,
removing one), a category-B upgrade goes through its migration, TSC changes and deprecates
platform versions — and the partner tries every way around governance it has (its own tier
upgrade, a "downgrade" upward, a tier on a required migration, its own telemetry, a platform
status in its release) — in any order. After every step the invariants hold: a decided
proposal never changes its decision, each body counts once (one review, one vote in the audit
log), no step is taken out of stage, nothing answers with a 5xx, and (issue 15) a tier never
rises but by the rollout of a released category-B expansion's migration (E-7.1), a grant
disappears only through a governed process that names it in its audit event (E-2.7), and the
platform's matrix rows change only by TSC, a deprecation notice or the shipped seed (E-9.2)."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from bench.drive import (
    Driver,
    at_step,
    decided,
    integrate_and_release,
    migration_steps,
)
from policy.vocabulary import Body, ExpansionStage
from store.tables import utcnow
from testdata.factories import RELEASE, ROLLOUT, partner_body, proposal_body
from tests.apistack import Api, unique
from tests.test_api_expansion import review

DAY = timedelta(days=1)
STAGES = [s.value for s in ExpansionStage]
TIERS = ("community", "verified", "premier", "strategic")
GRANTS = (("inventory-view", "inventory:read"), ("stock-alerts", "stock:read"))
TIER_BYPASSES = (
    "own upgrade",
    "body upgrade",
    "downgrade upward",
    "required with a tier",
    "forced upward",
)
STEP_STAGE = {"reviews": ExpansionStage.EVALUATION.value, "votes": ExpansionStage.APPROVAL.value}


def machine(
    api: Api, loop: asyncio.AbstractEventLoop, seen: Counter[str]
) -> type[RuleBasedStateMachine]:
    def call(method: str, url: str, **kwargs: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(api.http.request(method, url, **kwargs), loop)
        response = future.result(timeout=60)
        assert response.status_code < 500, f"{method} {url}: {response.text}"
        return response

    class Governance(RuleBasedStateMachine):
        proposals = Bundle("proposals")

        @initialize(target=proposals)
        def to_the_vote(self) -> str:
            """Every walk starts with one proposal driven to its vote, each step sent once its
            step is open — so what the closing assertion counts (a review and a vote accepted,
            a second one refused) is reached by rule, not by the timing of a random walk."""
            policy = call("GET", "/v1/policy", headers=api.admin).json()
            if policy["max_open_proposals_per_partner"] < 100:  # released ones stay open
                content = {k: v for k, v in policy.items() if k != "version"}
                content["max_open_proposals_per_partner"] = 100
                assert call("PUT", "/v1/policy", json=content, headers=api.admin).status_code == 200
            self.pid = unique("gm")[:20].lower()
            body = partner_body(self.pid, permissions=["orders:read", "customers:read"])
            resp = call("POST", "/v1/partners", json=body, headers=api.admin)
            assert resp.status_code == 201, resp.text
            self.partner = api.token("partner", self.pid)
            self.platform = api.token("platform")
            self.bodies = {b: api.token(b.value) for b in Body}
            self.decided: dict[str, dict[str, Any]] = {}
            self.started: list[str] = []
            self.drive = Driver(api.http, api.admin)
            self.audit_after = 0
            self.events: list[dict[str, Any]] = []  # the partner's audit events so far
            partner = self.held()
            self.grants = set(partner["capabilities"])
            self.permissions = set(partner["permissions"])
            self.report_use()
            eid = self.submit()
            self.awaited(eid, "reviews")
            for body in Body:
                self.step(eid, "reviews", "reviews", self.bodies[body], review(body))
            self.step(eid, "reviews", "reviews", self.bodies[Body.TSC], review(Body.TSC))
            self.awaited(eid, "votes")
            vote = {"decision": "approve", "rationale": "r"}
            self.step(eid, "votes", "votes", self.bodies[Body.TSC], vote)
            self.step(eid, "votes", "votes", self.bodies[Body.TSC], vote)
            self.every_way_around()
            return eid

        def awaited(self, eid: str, step: str, within: float = 60.0) -> dict[str, Any]:
            """Wait until the process awaits `step` (its window is on record)."""
            give_up = time.monotonic() + within
            while True:
                state = self.state(eid)
                if state["step"] == step:
                    return state
                assert time.monotonic() < give_up, (eid, step, state["stage"], state["step"])
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0.1), loop).result()

        def state(self, eid: str) -> dict[str, Any]:
            resp = call("GET", f"/v1/expansions/{eid}", headers=self.bodies[Body.TSC])
            assert resp.status_code == 200, resp.text
            data: dict[str, Any] = resp.json()
            return data

        def step(self, eid: str, step: str, path: str, who: dict[str, str], body: Any) -> None:
            before = self.state(eid)
            resp = call("POST", f"/v1/expansions/{eid}/{path}", headers=who, json=body)
            seen[f"{step} {resp.status_code}"] += 1
            if resp.status_code == 200:
                # accepted: the run was active and had not moved past the step's stage
                assert before["status"] == "active", (step, before["status"])
                assert STAGES.index(before["stage"]) <= STAGES.index(STEP_STAGE[step]), (
                    step,
                    before["stage"],
                )
            else:
                assert resp.status_code in (403, 409, 422), resp.text

        def every_way_around(self) -> None:
            """Each way around governance the partner has (E-7.1, E-7.2, M-3.1, P-6, E-9.2),
            tried at the start of every walk — each refused; the rules try them again later, in
            other states."""
            for way in TIER_BYPASSES:
                self.tier_bypass(way)
            for who in ("partner", "ops"):
                self.self_report(who)
            entry = {"kind": "os", "name": "kwanus", "version": "4.2", "status": "retired"}
            change = {"entries": [entry], "reason": "mine now"}
            resp = call("PUT", "/v1/compatibility-matrix", json=change, headers=self.partner)
            seen[f"partner matrix change {resp.status_code}"] += 1
            assert resp.status_code == 403, resp.text

        # --- helpers for the issue-15 rules ------------------------------------------------

        def run(self, coro: Any, timeout: float = 300) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=timeout)

        def held(self) -> dict[str, Any]:
            resp = call("GET", f"/v1/partners/{self.pid}", headers=self.partner)
            assert resp.status_code == 200, resp.text
            data: dict[str, Any] = resp.json()
            return data

        def report_use(self) -> None:
            """The platform reports three healthy weeks using every permission held (E-7.1's
            evidence of reliable workflows and minimal permissions)."""
            self.run(api.platform_reports(self.pid, dict.fromkeys(self.held()["permissions"], 5)))

        def approved(self, body: dict[str, Any]) -> str | None:
            """Submit and take a proposal through reviews and votes (None: refused or not
            approved)."""
            eid = unique("gx")
            resp = call("POST", "/v1/expansions", json={**body, "id": eid}, headers=self.partner)
            seen[f"governed submit {resp.status_code}"] += 1
            if resp.status_code != 202:
                assert resp.status_code in (422, 429), resp.text
                return None
            self.started.append(eid)
            state = self.run(decided(self.drive, eid, self.partner, self.bodies))
            if state["decision"]["outcome"] != "approved":
                return None
            return eid

        def release(self, eid: str, release: dict[str, Any]) -> dict[str, Any]:
            d = self.drive
            self.run(integrate_and_release(d, eid, self.partner, release=None))
            self.run(d.until("expansions", eid, self.partner, at_step("release")))
            url = f"/v1/expansions/{eid}/release"
            # E-9.2: a platform status, or a retired or unlisted version, is refused first
            for bad in (
                [{"kind": "os", "name": "kwanus", "version": "4.2", "status": "retired"}],
                [{"kind": "os", "name": "kwanus", "version": "0.1"}],
            ):
                resp = call(
                    "POST", url, json={**release, "compatibility": bad}, headers=self.partner
                )
                seen[f"bad declaration {resp.status_code}"] += 1
                assert resp.status_code == 422, resp.text
            resp = call("POST", url, json=release, headers=self.partner)
            assert resp.status_code == 200, resp.text
            state: dict[str, Any] = self.run(
                d.until("expansions", eid, self.partner, lambda s: s["stage"] == "Monitoring")
            )
            return state

        # --- issue 15: governed changes, and every way around them ---------------------

        @rule(grant=st.sampled_from(GRANTS), remove=st.booleans())
        def release_a_grant(self, grant: tuple[str, str], remove: bool) -> None:
            """E-2.7: a release adds its grant; with `removes` it takes exactly one held grant."""
            name, permission = grant
            held = sorted(self.held()["capabilities"])
            removes = [held[0]] if remove and held else []
            body = proposal_body(
                requested_tier=self.held()["tier"],
                requested_capabilities=[
                    {"name": name, "kind": "read_only", "permissions": [permission]}
                ],
                integrations=[],
                removes=removes,
                **({"migration_plan": "retire it with the release"} if removes else {}),
            )
            eid = self.approved(body)
            if eid is None:
                return
            self.release(eid, RELEASE)
            seen["released"] += 1

        def migrate_to_rollout(self, mid: str) -> bool:
            """The partner's steps of a migration; False if validation opened a remediation."""
            d = self.drive
            self.run(migration_steps(d, mid, self.partner, rollout=None))
            state = self.run(
                d.until(
                    "migrations",
                    mid,
                    self.partner,
                    lambda s: s["step"] in ("rollout", "remediation"),
                )
            )
            return bool(state["step"] == "rollout")

        def roll_out(self, mid: str) -> dict[str, Any]:
            url = f"/v1/migrations/{mid}/rollout"
            resp = call("POST", url, json=ROLLOUT, headers=self.partner)
            assert resp.status_code == 200, resp.text
            change: dict[str, Any] = resp.json()["tier_change"]
            return change

        @rule(race_a_downgrade=st.booleans())
        def upgrade_through_governance(self, race_a_downgrade: bool) -> None:
            """E-7.1: the one way up — a category-B proposal, approved and released, whose
            migration rolls out; with `race_a_downgrade`, SCO's forced downgrade rolls out
            first, and the pending upgrade then moves nothing (M-2.3)."""
            tier = self.held()["tier"]
            if tier == TIERS[-1]:
                return
            self.report_use()
            body = proposal_body(
                category="B",
                requested_tier=TIERS[TIERS.index(tier) + 1],
                requested_capabilities=[],
                integrations=[],
                migration_plan="dual run",
            )
            eid = self.approved(body)
            if eid is None:
                return
            mid = self.release(eid, RELEASE)["migration_id"]
            if race_a_downgrade and tier != TIERS[0]:
                forced = unique("forced")
                down = {
                    "id": forced,
                    "partner_id": self.pid,
                    "trigger": "security_violation",
                    "type": "tier",
                    "subtype": "downgrade",
                    "target": {"tier": TIERS[TIERS.index(tier) - 1]},
                }
                resp = call("POST", "/v1/migrations", json=down, headers=self.bodies[Body.SCO])
                assert resp.status_code == 202, resp.text
                if not self.migrate_to_rollout(forced):
                    return
                seen[f"forced downgrade applied {self.roll_out(forced)['applied']}"] += 1
            if not self.migrate_to_rollout(mid):
                seen["upgrade remediated"] += 1
                return
            applied = self.roll_out(mid)["applied"]
            seen[
                f"upgrade {'after a downgrade ' if race_a_downgrade else ''}applied {applied}"
            ] += 1

        @rule(way=st.sampled_from(TIER_BYPASSES))
        def tier_bypass(self, way: str) -> None:
            """E-7.1, E-7.2, M-3.1: every other way to move a tier by hand is refused."""
            tier = self.held()["tier"]
            body: dict[str, Any] = {
                "partner_id": self.pid,
                "type": "tier",
                "trigger": "tier_downgrade",
                "subtype": "downgrade",
                "target": {"tier": "strategic" if tier != "strategic" else tier},
            }
            who = self.partner
            if way == "own upgrade":
                body.update(trigger="tier_upgrade", subtype="upgrade")
            elif way == "body upgrade":
                body.update(trigger="tier_upgrade", subtype="upgrade")
                who = self.bodies[Body.CGB]
            elif way == "required with a tier":
                body.update(trigger="api_deprecation", type="version", subtype="api")
                who = self.bodies[Body.TSC]
            elif way == "forced upward":
                body.update(trigger="security_violation")
                who = self.bodies[Body.SCO]
            resp = call("POST", "/v1/migrations", json=body, headers=who)
            seen[f"tier bypass {resp.status_code}"] += 1
            assert resp.status_code == 422, (way, resp.text)

        @rule(who=st.sampled_from(["partner", "ops"]))
        def self_report(self, who: str) -> None:
            """E-7.1: evidence is the platform's; a partner's (or ops') report is refused."""
            end = utcnow()
            report = {
                "period_start": (end - 7 * DAY).isoformat(),
                "period_end": end.isoformat(),
                "workflow_success_rate": 1.0,
                "api_error_rate": 0.0,
            }
            headers = self.partner if who == "partner" else api.token("ops")
            url = f"/v1/partners/{self.pid}/telemetry"
            resp = call("POST", url, json=report, headers=headers)
            seen[f"self report {resp.status_code}"] += 1
            assert resp.status_code == 403, resp.text

        @rule(version=st.sampled_from(["3.0", "5.0"]))
        def platform_changes(self, version: str) -> None:
            """E-9.2: TSC and deprecation notices move platform rows; a partner cannot."""
            entry = {"kind": "runtime", "name": "kwanus-runtime", "version": "2.0"}
            change = {"entries": [{**entry, "status": "retired"}], "reason": "end of life"}
            url = "/v1/compatibility-matrix"
            assert call("PUT", url, json=change, headers=self.partner).status_code == 403
            assert call("PUT", url, json=change, headers=self.bodies[Body.TSC]).status_code == 200
            kind = "api" if version == "3.0" else "os"
            notice = {
                "id": unique("dep"),
                "kind": kind,
                "version": version,
                "replacement": f"{version}.1",
            }
            resp = call("POST", "/v1/deprecations", json=notice, headers=self.bodies[Body.TSC])
            assert resp.status_code == 202, resp.text
            seen["platform changed by TSC and a notice"] += 1

        @rule(target=proposals)
        def submit_one(self) -> str:
            return self.submit()

        def submit(self) -> str:
            eid = unique("sm")
            body = proposal_body(id=eid, requested_tier=self.held()["tier"])  # E-3.2
            resp = call("POST", "/v1/expansions", json=body, headers=self.partner)
            assert resp.status_code == 202, resp.text
            self.started.append(eid)
            return eid

        @rule(
            eid=proposals,
            body=st.sampled_from(list(Body)),
            verdict=st.sampled_from(["pass", "concern"]),
        )
        def review_it(self, eid: str, body: Body, verdict: str) -> None:
            content = review(body)
            content["criteria"] = dict.fromkeys(content["criteria"], verdict)
            self.step(eid, "reviews", "reviews", self.bodies[body], content)

        @rule(
            eid=proposals,
            body=st.sampled_from(list(Body)),
            decision=st.sampled_from(["approve", "reject"]),
        )
        def vote(self, eid: str, body: Body, decision: str) -> None:
            content = {"decision": decision, "rationale": "r"}
            self.step(eid, "votes", "votes", self.bodies[body], content)

        @rule(eid=proposals, order=st.permutations(list(Body)))
        def every_body_reviews(self, eid: str, order: list[Body]) -> None:
            for body in order:
                self.step(eid, "reviews", "reviews", self.bodies[body], review(body))

        @rule(
            eid=proposals,
            votes=st.lists(
                st.tuples(st.sampled_from(list(Body)), st.sampled_from(["approve", "reject"])),
                min_size=1,
                max_size=6,
            ),
        )
        def bodies_vote(self, eid: str, votes: list[tuple[Body, str]]) -> None:
            for _ in range(300):  # the risk assessment runs between the reviews and the vote
                state = self.state(eid)
                if state["step"] == "votes" or state["status"] != "active":
                    break
                if state["step"] not in (None, "reviews") or len(state["reviews"]) < len(Body):
                    break
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0.1), loop).result()
            for body, decision in votes:
                content = {"decision": decision, "rationale": "r"}
                self.step(eid, "votes", "votes", self.bodies[body], content)

        @rule(eid=proposals)
        def withdraw(self, eid: str) -> None:
            resp = call("POST", f"/v1/expansions/{eid}/withdraw", json={}, headers=self.partner)
            assert resp.status_code in (200, 409), resp.text

        @rule(eid=proposals)
        def extend(self, eid: str) -> None:
            until = (utcnow() + timedelta(days=60)).isoformat()
            resp = call(
                "POST",
                f"/v1/expansions/{eid}/deadline",
                json={"until": until, "reason": "more time"},
                headers=self.bodies[Body.CGB],
            )
            assert resp.status_code in (200, 409, 422), resp.text

        @rule()
        def violate(self) -> None:
            partner_id = self.partner_id()
            resp = call(
                "POST",
                f"/v1/partners/{partner_id}/violations",
                json={"id": unique("v"), "kind": "k", "severity": "minor", "description": "d"},
                headers=api.token("SCO"),
            )
            assert resp.status_code == 202, resp.text

        def partner_id(self) -> str:
            resp = call("GET", "/v1/partners", headers=self.partner)
            return str(resp.json()[0]["id"])

        def new_events(self) -> list[dict[str, Any]]:
            """The partner's audit events written since the last look, in order."""
            fresh: list[dict[str, Any]] = []
            while True:
                params = {"partner_id": self.pid, "after": self.audit_after, "limit": 500}
                page = call("GET", "/v1/audit", params=params, headers=self.bodies[Body.TSC])
                rows = page.json()
                if not rows:
                    break
                fresh += rows
                self.audit_after = rows[-1]["seq"]
            self.events += fresh
            return fresh

        @invariant()
        def governance_explains_tier_and_grants(self) -> None:
            """E-7.1: the tier in effect is the last rollout's that moved it (the registration's
            before), and every rise is the rollout of the migration a released category-B
            expansion of this partner started. E-2.7: a grant gone is named as removed by the
            governed process that took it."""
            if not hasattr(self, "pid"):
                return
            # A process may write between the two reads (a notice's fan-out, say): read the
            # partner between two looks at its log until nothing new landed in between.
            fresh = self.new_events()
            for _ in range(50):
                partner = self.held()
                more = self.new_events()
                if not more:
                    break
                fresh += more
            else:
                raise AssertionError("the partner's audit log never settled")
            moved = [e for e in self.events if (e["data"].get("tier_change") or {}).get("applied")]
            expected = moved[-1]["data"]["tier_change"]["target"] if moved else "verified"
            assert partner["tier"] == expected, (partner["tier"], moved[-1:] or "registration")
            for e in moved:
                change = e["data"]["tier_change"]
                assert e["event"] == "rolled_out" and e["stage"] == "Rollout", e
                if TIERS.index(change["target"]) > TIERS.index(change["before"]):
                    eid = e["workflow_id"].removeprefix("migration-exp-")
                    origin = [x for x in self.events if x["workflow_id"] == f"expansion-{eid}"]
                    assert {"governance_update", "migration_started"} <= {
                        x["event"] for x in origin
                    }, e
                    submitted = next(x for x in origin if x["event"] == "submitted")
                    assert submitted["data"]["category"] == "B", submitted
                    # ...and it rose from the tier the proposal was judged on
                    assert change["before"] == submitted["data"]["partner_tier"], (e, submitted)
            # E-2.7: what went is what a governed process named in its `removes` — a grant, or
            # a permission (by name, or with a grant it named)
            named = {n for e in fresh for n in e["data"].get("removes", [])}
            carried = {
                p
                for e in fresh
                for g in (e["data"].get("before") or {}).get("grants", [])
                if g["name"] in named
                for p in g["permissions"]
            }
            grants, permissions = set(partner["capabilities"]), set(partner["permissions"])
            assert self.grants - grants <= named, (self.grants - grants, named)
            assert self.permissions - permissions <= named | carried, (
                self.permissions - permissions,
                named | carried,
            )
            self.grants, self.permissions = grants, permissions

        @invariant()
        def platform_rows_are_the_platforms(self) -> None:
            """E-9.2: every platform row's history names TSC, a deprecation notice or the
            shipped seed; the matrix is exactly what that history says."""
            if not hasattr(self, "pid"):
                return

            def history() -> list[dict[str, Any]]:
                url = "/v1/compatibility-matrix/history"
                rows: list[dict[str, Any]] = call(
                    "GET", url, params={"limit": 500}, headers=self.partner
                ).json()
                return rows

            # A notice's change lands asynchronously: read the matrix between two reads of its
            # history until both agree (a change writes its row and its history together).
            seen_before = history()
            for _ in range(50):
                matrix = call("GET", "/v1/compatibility-matrix", headers=self.partner).json()
                seen_after = history()
                if seen_after == seen_before:
                    break
                seen_before = seen_after
            else:
                raise AssertionError("the matrix never settled")
            for change in seen_before:
                source = change["source"]
                assert source in ("platform-seed", "compatibility-matrix") or source.startswith(
                    "deprecation-"
                ), change
            latest: dict[tuple[str, str, str], str] = {}
            for change in sorted(seen_before, key=lambda c: c["matrix_version"]):
                latest[(change["kind"], change["name"], change["version"])] = change["status"]
            rows = {(e["kind"], e["name"], e["version"]): e["status"] for e in matrix["entries"]}
            assert rows == latest

        def check(self) -> None:
            """Every invariant, for a scripted walk."""
            self.governance_explains_tier_and_grants()
            self.platform_rows_are_the_platforms()
            self.decisions_never_change()
            self.each_body_counts_once()

        @invariant()
        def decisions_never_change(self) -> None:
            for eid in getattr(self, "started", []):
                decision = self.state(eid).get("decision")
                if eid in self.decided:
                    assert decision == self.decided[eid], (eid, self.decided[eid], decision)
                elif decision is not None:
                    self.decided[eid] = decision

        @invariant()
        def each_body_counts_once(self) -> None:
            for eid in getattr(self, "started", []):
                resp = call(
                    "GET",
                    "/v1/audit",
                    params={"workflow_id": f"expansion-{eid}", "limit": 500},
                    headers=self.bodies[Body.TSC],
                )
                counted = Counter(
                    (e["event"], e["actor"])
                    for e in resp.json()
                    if e["event"] in ("reviewed", "voted")
                )
                assert all(n == 1 for n in counted.values()), counted

    return Governance


@pytest.mark.timeout(480)  # a walk drives whole processes (releases, an upgrade's migration)
async def test_governance_invariants_hold_in_any_order(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()
    Governance = machine(api, loop, seen)
    Governance.TestCase.settings = settings(
        max_examples=int(os.environ.get("KWANUS_MACHINE_EXAMPLES", "6")),
        stateful_step_count=int(os.environ.get("KWANUS_MACHINE_STEPS", "12")),
        deadline=None,
        database=None,
        derandomize=True,
        # No shrinking: each step waits on real servers, so shrinking a failure would take
        # hours; the failing walk is printed as found.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    await asyncio.to_thread(Governance.TestCase().runTest)
    with capsys.disabled():
        print(f"\ngovernance state machine: steps answered {dict(sorted(seen.items()))}")
    assert seen["reviews 200"] and seen["reviews 409"] and seen["votes 200"] and seen["votes 409"]
    # issue 15: every way around governance was tried in every walk, and refused
    assert seen["tier bypass 422"] and seen["self report 403"], seen
    assert seen["partner matrix change 403"], seen


@pytest.mark.timeout(300)
async def test_every_governed_change_keeps_the_invariants(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15, scripted (what the random walks reach depends on their draw): two releases —
    one adding a grant, one removing a held one — an upgrade through its migration, an
    upgrade whose forced downgrade rolls out first (then moving nothing), and TSC's and a
    notice's platform changes; after each, every invariant of the machine (E-7.1, E-2.7,
    E-9.2)."""
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()
    walk = machine(api, loop, seen)()

    def steps() -> None:
        walk.to_the_vote()
        walk.check()
        for step in (
            lambda: walk.release_a_grant(GRANTS[0], remove=False),
            lambda: walk.release_a_grant(GRANTS[1], remove=True),
            lambda: walk.upgrade_through_governance(race_a_downgrade=False),
            lambda: walk.upgrade_through_governance(race_a_downgrade=True),
            lambda: walk.platform_changes("5.0"),
        ):
            step()
            walk.check()

    await asyncio.to_thread(steps)
    with capsys.disabled():
        print(f"\ngovernance walk: steps answered {dict(sorted(seen.items()))}")
    assert seen["released"] == 2 and seen["bad declaration 422"] == 8, seen
    assert seen["upgrade applied True"] == 1 and seen["forced downgrade applied True"] == 1
    assert seen["upgrade after a downgrade applied False"] == 1, seen
    assert seen["platform changed by TSC and a notice"] == 1, seen
