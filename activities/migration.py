"""Activities of the migration process: the notice (M-4.1), the partner's state, the four
validation checks (M-8.1), and the lifecycle update at completion (M-4.7)."""

from __future__ import annotations

from datetime import UTC, datetime

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
from policy.evidence import PartnerState
from policy.validation import CHECKS, Judged
from store import repo
from store.db import Database

# Telemetry "since the implementation" has no end: every report the platform made after it.
FOREVER = datetime(9999, 1, 1, tzinfo=UTC)


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
        compatibility — of the manifest the partner shipped, against the migration's target,
        the matrix, the tier and grants the partner will hold and the platform's telemetry
        since the implementation. A run whose implementation came before manifests is judged
        on its registered manifest with the target applied."""
        with self.db.session() as session:
            row = repo.get_partner(session=session, partner_id=inp.partner_id)
            if row is None:
                raise repo.UnknownPartner(inp.partner_id)
            held = repo.holdings(row)
            before = repo.current_manifest(session=session, partner=row)
            matrix = repo.compatibility_matrix(session=session)
            telemetry = (
                repo.telemetry_between(
                    session=session, partner_id=row.id, since=inp.since, until=FOREVER
                )
                if inp.since is not None
                else []
            )
            tier_now = row.tier
        target = {k: v for k, v in inp.target.items() if k in repo.LIFECYCLE_FIELDS}
        with_tier = inp.with_tier
        tier, after = rules.after_migration(
            held,
            tier_now=tier_now,
            target=target,
            trigger=inp.trigger,
            type_=inp.type_,
            subtype=inp.subtype,
            policy=inp.policy,
            adds=with_tier.grants if with_tier else (),
            removes=with_tier.removes if with_tier else (),
            new_tier=with_tier.spec if with_tier else None,
        )
        judged = Judged(
            manifest=inp.manifest or before.with_target(target),
            before=before,
            target=target,
            tier=tier,
            held=after,
            matrix=matrix,
            telemetry=tuple(telemetry),
            since=inp.since,
        )
        check = CHECKS.get(inp.check)
        if check is None:
            raise ValueError(f"unknown validation check {inp.check!r}")
        decision = check(judged)
        return ValidationResult(
            check=inp.check,
            passed=decision.allowed,
            findings=list(decision.findings),
            at=inp.at,
            moved_off=sorted(judged.moved_off()),
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
