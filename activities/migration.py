"""Activities of the migration process: the notice (M-4.1), the partner's state, the four
validation checks (M-8.1), and the lifecycle update at completion (M-4.7)."""

from __future__ import annotations

from temporalio import activity

from kwanus.models.migration import (
    LifecycleInput,
    NoticeInput,
    NoticeResult,
    Notification,
    RolloutInput,
    TierChange,
    ValidationInput,
    ValidationResult,
)
from policy import migration as rules
from policy.decisions import Decision
from policy.evidence import PartnerState
from store import repo
from store.db import Database


class MigrationActivities:
    def __init__(self, db: Database) -> None:
        self.db = db

    @activity.defn(name="notify_partner")
    def notify_partner(self, note: Notification) -> bool:
        """M-4.1 as runs noticed before the one-activity notice sent it: their `notice` event,
        recorded next, notifies the partner (`migration.notice`, P-7) — nothing to do here."""
        return True

    @activity.defn(name="partner_state")
    def partner_state(self, partner_id: str) -> PartnerState:
        with self.db.session() as session:
            row = repo.get_partner(session=session, partner_id=partner_id)
            if row is None:
                raise repo.UnknownPartner(partner_id)
            return repo.partner_state(row)

    @activity.defn(name="notice")
    def notice(self, inp: NoticeInput) -> NoticeResult:
        """M-4.1 in one activity: the fallback keeps its read-only permissions and never more
        than the partner holds (M-6.1, M-6.3), and `notice` and the move to Plan are recorded
        with their projection in one transaction, each once per key (P-4) — the partner's
        `migration.notice` with them (P-7). A retry after the commit answers from the record:
        no second notice, no second read of the grants. A refused fallback records nothing; the
        workflow refuses it."""
        with self.db.session() as session:
            done = repo.audit_data(session=session, key=inp.notice.key)
        if done is not None:  # a retry after the commit: the recorded fallback stands
            return NoticeResult(permissions=list(done["fallback_permissions"]))
        held = list(self.partner_state(inp.partner_id).permissions)
        permissions = rules.fallback_permissions(held)
        refused = rules.check_fallback(permissions, held)
        if not refused.allowed:
            return NoticeResult(permissions=permissions, refused=refused)
        with self.db.session() as session:
            repo.record_events(session=session, events=inp.recorded(permissions))
        return NoticeResult(permissions=permissions)

    @activity.defn(name="validate")
    def validate(self, inp: ValidationInput) -> ValidationResult:
        """M-8.1: one check — API contract, workflow, permission boundary or runtime
        compatibility — of the partner's state with the target applied, against the matrix."""
        with self.db.session() as session:
            row = repo.get_partner(session=session, partner_id=inp.partner_id)
            if row is None:
                raise repo.UnknownPartner(inp.partner_id)
            held = repo.holdings(row)
            state = repo.partner_state(row)
            matrix = repo.compatibility_matrix(session=session)
        target = {k: v for k, v in inp.target.items() if k in repo.LIFECYCLE_FIELDS}
        state = rules.as_migrated(state, held, target, inp.policy)
        decision: Decision
        if inp.check == "api_contract":
            decision = rules.validate_api_contract(state, matrix)
        elif inp.check == "workflow":
            decision = rules.validate_workflows(state)
        elif inp.check == "permission_boundary":
            decision = rules.validate_permission_boundary(state, inp.policy)
        elif inp.check == "runtime_compatibility":
            decision = rules.validate_runtime(state, matrix)
        else:
            raise ValueError(f"unknown validation check {inp.check!r}")
        return ValidationResult(
            check=inp.check, passed=decision.allowed, findings=list(decision.findings), at=inp.at
        )

    @activity.defn(name="roll_out")
    def roll_out(self, inp: RolloutInput) -> TierChange | None:
        """M-4.5: the rollout on record with what it changes — the partner's declared
        compatibility and a tier migration's tier (judged against the tier now) — once."""
        with self.db.session() as session:
            return repo.roll_out(session=session, inp=inp)

    @activity.defn(name="apply_lifecycle")
    def apply_lifecycle(self, inp: LifecycleInput) -> bool:
        """M-4.7: the partner's lifecycle record takes the target, once."""
        with self.db.session() as session:
            return repo.apply_lifecycle(session=session, inp=inp)
