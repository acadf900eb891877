"""Reviews (E-2.2, E-4.x), risk (E-2.3, E-11.1) and the vote (E-2.4, E-5.1, E-5.2, E-6.2,
E-10.2)."""

from __future__ import annotations

from itertools import product

from hypothesis import given
from hypothesis import strategies as st

from policy.decisions import Decision, Finding
from policy.document import DEFAULT_POLICY
from policy.proposal import Proposal
from policy.review import (
    CRITERIA,
    Review,
    check_first_review,
    check_review,
    criteria_of,
    forbidden_at_review,
    reviews_complete,
)
from policy.risk import assess, level_for, plans_decision
from policy.vocabulary import Body, Outcome, RiskCategory, RiskLevel, Verdict, VoteDecision
from policy.vote import Vote, approval_requirements, tally
from testdata.factories import proposal_body

APPROVE, REJECT = VoteDecision.APPROVE, VoteDecision.REJECT


def review(body: Body, verdict: Verdict = Verdict.PASS, **extra: object) -> Review:
    return Review.model_validate(
        {
            "criteria": dict.fromkeys(criteria_of(body), verdict),
            "recommendation": "approve",
            **extra,
        }
    )


def votes(**decisions: VoteDecision) -> dict[Body, Vote]:
    return {Body(b): Vote(decision=d) for b, d in decisions.items()}


# --- reviews --------------------------------------------------------------------------------


def test_each_body_reviews_its_own_criteria() -> None:
    """E-4.1 TSC technical; E-4.2 SCO security; E-4.3 SCO compliance; E-4.4 ERC workflow impact,
    CGB developer and partner impact; E-10.1 CGB sustainability."""
    assert set(criteria_of(Body.TSC)) == {
        "architecture_alignment",
        "performance_impact",
        "compatibility_impact",
        "maintainability",
    }
    assert {c for c, (_, rule, _) in CRITERIA.items() if rule == "E-4.2"} == {
        "permission_boundaries",
        "data_access_rules",
        "sandbox_integrity",
    }
    assert {c for c, (_, rule, _) in CRITERIA.items() if rule == "E-4.3"} == {
        "data_protection",
        "retention_rules",
        "deletion_rules",
        "auditability",
    }
    assert set(criteria_of(Body.ERC)) == {"workflow_impact"}
    assert set(criteria_of(Body.CGB)) == {"developer_impact", "partner_impact", "sustainability"}
    assert CRITERIA["sustainability"][1] == "E-10.1"
    for body in Body:
        assert check_review(body, review(body)).allowed


def test_incomplete_or_foreign_review_refused() -> None:
    """E-4.x: a review judges every criterion of its body and no other's."""
    partial = Review(criteria={"maintainability": Verdict.PASS}, recommendation=APPROVE)
    decision = check_review(Body.TSC, partial)
    assert {f.field for f in decision.findings} == {
        "criteria.architecture_alignment",
        "criteria.performance_impact",
        "criteria.compatibility_impact",
    }
    assert decision.rules == ["E-4.1"]
    foreign = review(Body.ERC).model_copy(
        update={"criteria": {"workflow_impact": Verdict.PASS, "sandbox_integrity": Verdict.PASS}}
    )
    found = check_review(Body.ERC, foreign).findings
    assert [(f.field, f.rule) for f in found] == [("criteria.sandbox_integrity", "E-4.2")]
    sco_missing = check_review(Body.SCO, Review(criteria={}, recommendation=APPROVE))
    assert sco_missing.rules == ["E-4.2", "E-4.3"]
    cgb_missing = check_review(Body.CGB, Review(criteria={}, recommendation=APPROVE))
    assert cgb_missing.rules == ["E-10.1", "E-4.4"]


def test_each_body_reviews_once_and_all_four_review() -> None:
    """E-2.2: four bodies, in parallel, once each."""
    done = {Body.TSC: review(Body.TSC)}
    assert check_first_review(Body.TSC, done).rules == ["E-2.2"]
    assert check_first_review(Body.SCO, done).allowed
    assert not reviews_complete(done)
    assert reviews_complete({b: review(b) for b in Body})


def test_forbidden_finding_at_review() -> None:
    """E-5.2: a reviewer's finding of ungoverned workflows etc. is forbidden without exception."""
    found = forbidden_at_review({Body.TSC: review(Body.TSC, forbidden=["incompatible_runtimes"])})
    assert found.rules == ["E-5.2"]
    assert forbidden_at_review({b: review(b) for b in Body}).allowed


# --- risk -----------------------------------------------------------------------------------


def test_risk_scored_across_four_categories_from_reviews() -> None:
    """E-11.1: technical, security, compliance, ecosystem, each from its criteria's verdicts."""
    proposal = Proposal.model_validate(proposal_body())
    clean = assess(proposal, {b: review(b) for b in Body}, DEFAULT_POLICY)
    assert clean.total == 0 and clean.level is RiskLevel.LOW
    worried = {b: review(b) for b in Body}
    worried[Body.SCO] = review(Body.SCO, Verdict.CONCERN)  # 3 security + 4 compliance concerns
    scored = assess(proposal, worried, DEFAULT_POLICY)
    assert scored.scores[RiskCategory.SECURITY] == 3 * 2
    assert scored.scores[RiskCategory.COMPLIANCE] == 4 * 2
    assert scored.scores[RiskCategory.TECHNICAL] == 0
    assert scored.level is RiskLevel.HIGH  # 14: high from 9, critical from 15
    assert scored.rules == ("E-2.3", "E-11.1")


def test_proposal_itself_adds_risk() -> None:
    """E-11.1: restricted items weigh on security, a breaking change on technical."""
    body = proposal_body(
        requested_capabilities=[{"name": "w", "kind": "write"}],
        breaking_change=True,
        release_version="2.0.0",
        migration_plan="dual run",
    )
    scored = assess(Proposal.model_validate(body), {}, DEFAULT_POLICY)
    assert scored.scores[RiskCategory.SECURITY] == 2 * 2
    assert scored.scores[RiskCategory.TECHNICAL] == 3
    assert level_for(7, DEFAULT_POLICY) is RiskLevel.MEDIUM


def test_plans_required_before_the_vote() -> None:
    """E-2.3: risk mitigation, fallback and monitoring plans before the vote; plans sent later
    count."""
    body = proposal_body()
    for plan in ("risk_mitigation", "fallback_plan", "monitoring_plan"):
        del body[plan]
    proposal = Proposal.model_validate(body)
    scored = assess(proposal, {}, DEFAULT_POLICY)
    assert scored.missing_plans == ("risk_mitigation", "fallback_plan", "monitoring_plan")
    assert plans_decision(scored).rules == ["E-2.3"]
    later = assess(
        proposal,
        {},
        DEFAULT_POLICY,
        plans={"risk_mitigation": "flags", "fallback_plan": "off", "monitoring_plan": "dash"},
    )
    assert later.missing_plans == ()


# --- the vote -------------------------------------------------------------------------------


def restated(v: dict[Body, VoteDecision | None]) -> Outcome:
    """E-2.4 in plain words: at least 3 of 4 approve and CGB approves."""
    approvals = sum(1 for d in v.values() if d is APPROVE)
    return Outcome.APPROVED if approvals >= 3 and v.get(Body.CGB) is APPROVE else Outcome.REJECTED


def test_every_combination_of_four_votes() -> None:
    """E-2.4 over all 16 complete vote sets: approved iff >= 3 approve and CGB approves."""
    for combo in product(list(VoteDecision), repeat=4):
        cast = dict(zip(Body, combo, strict=True))
        result = tally(
            votes(**{b.value: d for b, d in cast.items()}),
            restricted=False,
            risk_level=RiskLevel.LOW,
        )
        assert result.outcome is restated(dict(cast)), cast
        assert "E-2.4" in result.rules


@given(st.fixed_dictionaries({b: st.sampled_from([APPROVE, REJECT, None]) for b in Body}))
def test_partial_votes_decide_only_when_no_outstanding_vote_could_change_it(
    cast: dict[Body, VoteDecision | None],
) -> None:
    """E-2.4 with votes outstanding: decided iff every completion gives the same outcome; at the
    deadline (final) an outstanding vote does not approve."""
    given_votes = votes(**{b.value: d for b, d in cast.items() if d is not None})
    missing = [b for b, d in cast.items() if d is None]
    completions = {
        restated({**cast, **dict(zip(missing, fill, strict=True))})
        for fill in product([APPROVE, REJECT], repeat=len(missing))
    }
    result = tally(given_votes, restricted=False, risk_level=RiskLevel.LOW)
    expected = completions.pop() if len(completions) == 1 else Outcome.PENDING
    assert result.outcome is expected
    final = tally(given_votes, restricted=False, risk_level=RiskLevel.LOW, final=True)
    assert final.outcome is restated(cast)


def test_cgb_rejection_rejects_despite_three_approvals() -> None:
    """E-2.4: CGB has final authority."""
    result = tally(
        votes(TSC=APPROVE, SCO=APPROVE, ERC=APPROVE, CGB=REJECT),
        restricted=False,
        risk_level=RiskLevel.LOW,
    )
    assert result.outcome is Outcome.REJECTED
    assert "CGB rejected, with final authority" in result.reasons
    early = tally(votes(CGB=REJECT), restricted=False, risk_level=RiskLevel.LOW)
    assert early.outcome is Outcome.REJECTED  # decided at once: nothing else can approve it


def test_tie_is_no_majority() -> None:
    """E-2.4: 2-2 is not a majority, even with CGB approving."""
    result = tally(
        votes(TSC=APPROVE, SCO=REJECT, ERC=REJECT, CGB=APPROVE),
        restricted=False,
        risk_level=RiskLevel.LOW,
    )
    assert result.outcome is Outcome.REJECTED
    assert any("2-2 tie is no majority" in r for r in result.reasons)


def test_sustainability_ground_recorded() -> None:
    """E-10.2: CGB may reject a short-term expansion that harms long-term stability."""
    cast = votes(TSC=APPROVE, SCO=APPROVE, ERC=APPROVE)
    cast[Body.CGB] = Vote(decision=REJECT, long_term_harm=True, rationale="erodes stability")
    result = tally(cast, restricted=False, risk_level=RiskLevel.LOW)
    assert result.outcome is Outcome.REJECTED and "E-10.2" in result.rules


def test_restricted_item_needs_sco_and_at_most_medium_risk() -> None:
    """E-6.2: SCO must approve and the risk be no higher than medium."""
    without_sco = votes(TSC=APPROVE, SCO=REJECT, ERC=APPROVE, CGB=APPROVE)
    result = tally(without_sco, restricted=True, risk_level=RiskLevel.LOW)
    assert result.outcome is Outcome.REJECTED and result.rules == ("E-6.2",)
    all_yes = votes(TSC=APPROVE, SCO=APPROVE, ERC=APPROVE, CGB=APPROVE)
    assert tally(all_yes, restricted=True, risk_level=RiskLevel.HIGH).rules == ("E-6.2",)
    ok = tally(all_yes, restricted=True, risk_level=RiskLevel.MEDIUM)
    assert ok.outcome is Outcome.APPROVED and ok.rules == ("E-2.4", "E-6.2")


def test_forbidden_finding_beats_any_vote() -> None:
    """E-5.2: no vote, not even a unanimous one, approves a forbidden item."""
    forbidden = Decision(findings=(Finding(field="x", rule="E-5.2", message="unbounded"),))
    result = tally(
        votes(TSC=APPROVE, SCO=APPROVE, ERC=APPROVE, CGB=APPROVE),
        restricted=False,
        risk_level=RiskLevel.LOW,
        forbidden=forbidden,
    )
    assert result.outcome is Outcome.REJECTED and "E-5.2" in result.rules


def test_approval_requirements() -> None:
    """E-5.1: governance alignment, compatibility plan, lifecycle plan, migration plan (when
    applicable) and risk mitigation are required for approval."""
    body = proposal_body(category="B", migration_plan="dual run", requested_tier="premier")
    del body["risk_mitigation"]
    proposal = Proposal.model_validate(body)
    assert approval_requirements(proposal, {}) == ["risk_mitigation"]
    assert approval_requirements(proposal, {"risk_mitigation": "flags"}) == []
    result = tally(
        votes(TSC=APPROVE, SCO=APPROVE, ERC=APPROVE, CGB=APPROVE),
        restricted=False,
        risk_level=RiskLevel.LOW,
        missing_requirements=["risk_mitigation"],
    )
    assert result.outcome is Outcome.REJECTED and result.rules == ("E-5.1",)
