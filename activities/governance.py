"""Activities that write governance state or read the evidence the rules judge."""

from __future__ import annotations

from temporalio import activity

from kwanus.models.common import MonitoringCheck, RecordEvent, TelemetryCheckInput
from kwanus.models.deprecation import NoticedInput
from kwanus.models.expansion import (
    GrantInput,
    NewTierInput,
    PolicyChangeInput,
    ReleaseInput,
    RiskInput,
    TierEvidenceInput,
)
from kwanus.models.migration import MatrixInput
from kwanus.models.remediation import PartnerStatusInput
from kwanus.models.stewardship import CompileInput, StewardshipFigures
from policy.document import PolicyDocument
from policy.evidence import TierEvidence
from policy.migration import telemetry_health
from policy.risk import RiskAssessment, assess
from store import repo, stewardship
from store.db import Database


class GovernanceActivities:
    """Registered as bound methods in `worker.py`; tests hand it a store on a temp database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="record_event")
    def record_event(self, event: RecordEvent) -> bool:
        """Write one governance event and its projection, exactly once per `event.key` (P-4)."""
        with self.db.session() as session:
            return repo.record_event(session=session, event=event)

    @activity.defn(name="assess_risk")
    def assess_risk(self, inp: RiskInput) -> RiskAssessment:
        """E-2.3 / E-11.1: score the proposal and the four reviews."""
        return assess(inp.proposal, inp.reviews, inp.policy, plans=inp.plans)

    @activity.defn(name="release_grants")
    def release_grants(self, inp: ReleaseInput) -> bool:
        """E-2.7: the release's governance update on what the partner holds now, once (keyed by
        its event): grants added, exactly `removes` taken away, compatibility declared."""
        with self.db.session() as session:
            return repo.release_grants(session=session, inp=inp)

    @activity.defn(name="apply_grant")
    def apply_grant(self, grant: GrantInput) -> bool:
        """A release as runs released before E-2.7's decision sent it: it adds, once."""
        with self.db.session() as session:
            return repo.apply_grant(session=session, grant=grant)

    @activity.defn(name="add_tier")
    def add_tier(self, inp: NewTierInput) -> int | None:
        """E-7.3: the new tier lands in the catalogue as a new policy version, once."""
        with self.db.session() as session:
            return repo.add_tier(session=session, event=inp.event, new_tier=inp.new_tier)

    @activity.defn(name="publish_policy")
    def publish_policy(self, inp: PolicyChangeInput) -> int | None:
        """E-3.4: a category-D release's policy change as a new policy version, once."""
        with self.db.session() as session:
            return repo.publish_change(session=session, event=inp.event, change=inp.change)

    @activity.defn(name="update_matrix")
    def update_matrix(self, inp: MatrixInput) -> bool:
        """A rollout's entries as runs rolled out before E-9.2's decision sent them: the
        partner's own compatibility, never the platform's rows, once."""
        with self.db.session() as session:
            return repo.update_matrix(session=session, event=inp.event, entries=inp.entries)

    @activity.defn(name="record_deprecation")
    def record_deprecation(self, inp: NoticedInput) -> bool:
        """M-2.1 / M-5.1: a deprecation notice on record and its version marked deprecated in
        the platform's matrix, once."""
        with self.db.session() as session:
            return repo.record_deprecation(session=session, event=inp.event, notice=inp.notice)

    @activity.defn(name="set_partner_status")
    def set_partner_status(self, inp: PartnerStatusInput) -> bool:
        """M-9.2 restrict at once / M-9.3 keep restricted / M-9.1 restore full access, once."""
        with self.db.session() as session:
            return repo.set_partner_status(session=session, inp=inp)

    @activity.defn(name="tier_evidence")
    def tier_evidence(self, inp: TierEvidenceInput) -> TierEvidence:
        """E-7.1: the partner's recorded evidence, as of `inp.at`."""
        with self.db.session() as session:
            return repo.tier_evidence(session=session, partner_id=inp.partner_id, now=inp.at)

    @activity.defn(name="current_policy")
    def current_policy(self) -> PolicyDocument:
        """The policy version in force (P-5), for a process started by a schedule."""
        with self.db.session() as session:
            return repo.current_policy(session=session)

    @activity.defn(name="compile_stewardship")
    def compile_stewardship(self, inp: CompileInput) -> StewardshipFigures:
        """E-13.1 / M-10.1: the year's figures from the store, stored once as the report."""
        with self.db.session() as session:
            figures = stewardship.compile_figures(session=session, now=inp.at, policy=inp.policy)
            return stewardship.save_report(
                session=session,
                report_id=inp.report_id,
                workflow_id=inp.workflow_id,
                figures=figures,
            )

    @activity.defn(name="check_telemetry")
    def check_telemetry(self, inp: TelemetryCheckInput) -> MonitoringCheck:
        """M-4.6 / expansion monitoring: judge the partner's telemetry for one period."""
        with self.db.session() as session:
            reports = repo.telemetry_between(
                session=session, partner_id=inp.partner_id, since=inp.since, until=inp.until
            )
            partner = repo.get_partner(session=session, partner_id=inp.partner_id)
            granted = repo.in_effect(session=session, partner=partner) if partner else []
            moved_off = list(inp.moved_off)
            if inp.moves_to and partner is not None:  # a forced target, no validated manifest
                registered = repo.current_manifest(session=session, partner=partner)
                moved_off += list(registered.left_for(registered.with_target(inp.moves_to)))
        health = telemetry_health(reports, granted, inp.policy, moved_off=moved_off)
        return MonitoringCheck(
            at=inp.until,
            healthy=health.allowed,
            findings=list(health.findings),
            report=reports[-1] if reports else None,
        )
