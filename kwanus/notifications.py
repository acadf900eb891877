"""Who hears of a governance event, and what they hear (P-7).

Every notification is derived from the audit event that records what happened, in the same
transaction (store.repo.notifications): the processes send no notification of their own, so a
workflow's commands — and the histories of running processes — are what they were, and an
event written once (P-4) notifies once. A receiver is named as the audit log names an actor:
`partner:<id>` for a partner, `TSC`, `SCO`, `ERC` or `CGB` for a body.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, Field

from kwanus.contract import resource_path
from kwanus.models.common import Awaiting, RecordEvent
from policy.vocabulary import Body, NotificationType, ProcessKind, ProcessStatus

T = NotificationType

BODIES = frozenset(b.value for b in Body)

# The access a remediation restricts or gives back (its own events and SCO's restoration).
RESTRICTING = frozenset({"restricted", "kept_restricted"})
RESTORING = frozenset({"access_restored", "access_restored_by_sco"})
# Events that open a step under another name: a stewardship report's sign-offs; a remediation's
# next step (M-9.1: each one taken opens the next — SCO's re-validation after the fixes, the
# fixes again after a failed re-validation).
OPENING = frozenset({"window_opened", "report_compiled"})
REMEDIATION_NEXT = frozenset(
    {
        "root_cause_submitted",
        "plan_submitted",
        "fixes_submitted",
        "revalidation_failed",
    }
)
# CGB's (or TSC's) decisions on a running process.
DECIDING = frozenset({"decided", "monitoring_decided", "fallback_decided"})


class Note(BaseModel):
    """One notification to one receiver, keyed so it is written once (P-7)."""

    key: str = Field(description="`<audit key>><receiver>`: one per event and receiver.")
    type: NotificationType
    receiver: str
    partner_id: str = Field(description="The partner the process is about ('' for none).")
    process: str
    process_id: str
    workflow_id: str
    link: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    at: datetime


def receiver_of_partner(partner_id: str) -> str:
    return f"partner:{partner_id}"


def partner_of(receiver: str) -> str | None:
    """The partner a receiver is, if it is one (a body is none)."""
    return receiver.removeprefix("partner:") if receiver.startswith("partner:") else None


def is_receiver(name: str) -> bool:
    """A partner or a body: the only parties an inbox or a subscription belongs to."""
    return name in BODIES or (name.startswith("partner:") and len(name) > len("partner:"))


def notes_for(event: RecordEvent) -> list[Note]:
    """The notifications an audit event makes: whoever the process waits on or decides about."""
    partner = receiver_of_partner(event.partner_id) if event.partner_id else None
    data = event.data
    awaited = {a.actor: a for a in event.awaiting}
    name = event.event
    to = partial(_to, event)

    if event.process is ProcessKind.MIGRATION and name == "notice":
        state = event.state or {}
        return to(
            T.MIGRATION_NOTICE,
            [partner],
            f"Migration {event.process_id} has started: its window ends "
            f"{data.get('window_end')}, the fallback is kept until {data.get('fallback_until')}.",
            window_end=data.get("window_end"),
            fallback={
                "until": data.get("fallback_until"),
                "permissions": data.get("fallback_permissions", []),
            },
            target=state.get("target", {}),
            trigger=state.get("trigger"),
            trigger_class=data.get("trigger_class"),
        )
    if name in OPENING or (event.process is ProcessKind.REMEDIATION and name in REMEDIATION_NEXT):
        step = data.get("step") or (event.state or {}).get("step")
        return to(T.STEP_OPENED, awaited, f"{step} is awaited from you", step=step, after=name)
    if name == "reminder":
        step = data.get("step")
        receivers = data.get("awaiting") or list(awaited)
        return to(T.STEP_REMINDER, receivers, f"reminder: {step} is still awaited", step=step)
    if name == "escalated" and event.status is ProcessStatus.ACTIVE:
        step, missing = data.get("step"), data.get("missing") or []
        return to(
            T.STEP_ESCALATED,
            [data.get("to", Body.CGB.value), *missing],
            f"{step} missed its deadline and is escalated to {data.get('to', 'CGB')}",
            step=step,
            missing=missing,
        )
    if name == "deadline_extended":
        return to(
            T.DEADLINE_MOVED,
            [*awaited, partner],
            f"the deadline of {data.get('step')} moved to {data.get('until')}",
            step=data.get("step"),
            until=data.get("until"),
            reason=data.get("reason"),
        )
    if event.process is ProcessKind.REMEDIATION:
        return _remediation(event, partner)
    if event.process is ProcessKind.MIGRATION and name == "enforced":
        return to(
            T.OUTCOME_ENFORCED,
            [partner],
            f"the forced outcome of migration {event.process_id} applies now",
            target=data.get("target", {}),
            missed=data.get("missed"),
        )
    if name in DECIDING or (
        event.status is not ProcessStatus.ACTIVE and name != "rejected"  # told by `decided`
    ):
        outcome = data.get("outcome") or data.get("decision") or event.status.value
        return to(
            T.PROCESS_DECIDED,
            [partner],
            f"{event.process.value} {event.process_id}: {name.replace('_', ' ')} ({outcome})",
            event=name,
            outcome=outcome,
            status=event.status.value,
        )
    return []


def _remediation(event: RecordEvent, partner: str | None) -> list[Note]:
    data, name = event.data, event.event
    to = partial(_to, event)

    if name == "remediation_opened":
        return to(
            T.REMEDIATION_OPENED,
            [partner],
            f"remediation {event.process_id} is open until {data.get('deadline')}",
            severity=data.get("severity"),
            kind=data.get("kind"),
            deadline=data.get("deadline"),
        )
    if name in RESTRICTING:
        return to(T.ACCESS_RESTRICTED, [partner], "your access is restricted to read-only (M-9.2)")
    if name in RESTORING:
        return to(T.ACCESS_RESTORED, [partner], "your full access is restored (M-9.1)")
    if event.status is not ProcessStatus.ACTIVE:
        return to(
            T.REMEDIATION_CLOSED,
            [partner],
            f"remediation {event.process_id} is {event.status.value}",
            status=event.status.value,
            migration_id=data.get("migration_id"),
        )
    return []


def _to(
    event: RecordEvent,
    kind: NotificationType,
    receivers: Iterable[str | None],
    message: str,
    /,
    **extra: Any,
) -> list[Note]:
    """One note of `kind` to each receiver named (once each, parties only)."""
    awaited = {a.actor: a for a in event.awaiting}
    named = list(dict.fromkeys(r for r in receivers if r and is_receiver(r)))
    return [_note(event, kind, r, message, extra, awaited.get(r)) for r in named]


def _note(
    event: RecordEvent,
    kind: NotificationType,
    receiver: str,
    message: str,
    extra: dict[str, Any],
    awaiting: Awaiting | None,
) -> Note:
    body: dict[str, Any] = {"rules": list(event.rules), **extra}
    if awaiting is not None:
        body["action"] = awaiting.action
        deadline = awaiting.deadline or event.next_deadline
        body["deadline"] = deadline.isoformat() if deadline else None
    return Note(
        key=f"{event.key}>{receiver}",
        type=kind,
        receiver=receiver,
        partner_id=event.partner_id,
        process=event.process.value,
        process_id=event.process_id,
        workflow_id=event.workflow_id,
        link=resource_path(event.process, event.process_id),
        message=message,
        data=body,
        at=event.at,
    )


def subscription_disabled(
    subscription_id: str, owner: str, url: str, reason: str, at: datetime, workflow_id: str
) -> Note:
    """A subscription that kept failing was disabled: its owner hears of it in the inbox (and
    through any other subscription of theirs)."""
    return Note(
        key=f"{subscription_id}:disabled",  # once: a disabled subscription stays disabled
        type=T.SUBSCRIPTION_DISABLED,
        receiver=owner,
        partner_id=partner_of(owner) or "",
        process="webhook",
        process_id=subscription_id,
        workflow_id=workflow_id,
        link=f"/v1/webhooks/{subscription_id}",
        message=f"webhook {subscription_id} ({url}) is disabled: {reason}",
        data={"subscription_id": subscription_id, "url": url, "reason": reason},
        at=at,
    )
