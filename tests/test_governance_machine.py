"""A hypothesis state machine over the governance API on the dev server: partners submit and
withdraw, the bodies review and vote (approve or reject, sometimes twice, sometimes out of
turn), CGB extends deadlines, SCO reports violations — in any order. After every step the
invariants hold: a decided proposal never changes its decision, each body counts once (one
review, one vote in the audit log), no step is taken out of stage (a process that has closed or
moved past a stage never accepts that stage's step), and nothing answers with a 5xx."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from policy.vocabulary import Body, ExpansionStage
from store.tables import utcnow
from tests.apistack import Api, unique
from tests.factories import proposal_body
from tests.test_api_expansion import review

STAGES = [s.value for s in ExpansionStage]
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
            self.partner = asyncio.run_coroutine_threadsafe(
                api.partner(unique("gm")[:20].lower()), loop
            ).result(timeout=30)
            self.bodies = {b: api.token(b.value) for b in Body}
            self.decided: dict[str, dict[str, Any]] = {}
            self.started: list[str] = []
            eid = self.submit()
            self.awaited(eid, "reviews")
            for body in Body:
                self.step(eid, "reviews", "reviews", self.bodies[body], review(body))
            self.step(eid, "reviews", "reviews", self.bodies[Body.TSC], review(Body.TSC))
            self.awaited(eid, "votes")
            vote = {"decision": "approve", "rationale": "r"}
            self.step(eid, "votes", "votes", self.bodies[Body.TSC], vote)
            self.step(eid, "votes", "votes", self.bodies[Body.TSC], vote)
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

        @rule(target=proposals)
        def submit_one(self) -> str:
            return self.submit()

        def submit(self) -> str:
            eid = unique("sm")
            resp = call("POST", "/v1/expansions", json=proposal_body(id=eid), headers=self.partner)
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


async def test_governance_invariants_hold_in_any_order(
    api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()
    Governance = machine(api, loop, seen)
    Governance.TestCase.settings = settings(
        max_examples=8,
        stateful_step_count=15,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    await asyncio.to_thread(Governance.TestCase().runTest)
    with capsys.disabled():
        print(f"\ngovernance state machine: steps answered {dict(sorted(seen.items()))}")
    assert seen["reviews 200"] and seen["reviews 409"] and seen["votes 200"] and seen["votes 409"]
