"""What the annual stewardship review judges in its figures (E-13.1, M-10.1): which matrix entries
no partner uses, and which partners' evidence trends the wrong way. (Its sections and sign-off
are in policy.expansion.)"""

from __future__ import annotations

from collections.abc import Sequence

from policy.evidence import MatrixEntry, PartnerState, Telemetry
from policy.vocabulary import ComponentKind, MatrixStatus

PLATFORM = "kwanus"
# E-13.1: a mean that moves less than this between two evidence windows is noise, not a trend.
TREND_TOLERANCE = 0.005


def uses(partner: PartnerState, kind: str, name: str, version: str) -> bool:
    """E-13.1 / M-10.1: whether the partner's record runs a matrix entry (an entry no partner
    uses may be retired): its OS, API, runtime, or a workflow trigger or handler its manifest
    runs (or a grant of the workflow's name). Permission entries are not judged on records."""
    if kind == ComponentKind.OS:
        return name == PLATFORM and partner.os_version == version
    if kind == ComponentKind.API:
        return name == PLATFORM and partner.api_version == version
    if kind == ComponentKind.RUNTIME:
        return (partner.runtime_name, partner.runtime_version) == (name, version)
    if kind == ComponentKind.WORKFLOW:
        ref = f"{name}@{version}"
        return name in partner.capabilities or any(
            ref in (w.trigger, w.handler) for w in partner.workflows
        )
    return True


def accepted(kind: str, name: str, version: str, proposal: str) -> MatrixEntry | None:
    """E-13.1 / M-10.1: what a report's matrix proposal becomes once TSC accepts it — a `retire`
    proposal retires its entry (E-9.1: the platform's rows change only by TSC)."""
    if proposal != "retire":
        return None
    return MatrixEntry(kind=kind, name=name, version=version, status=MatrixStatus.RETIRED)


def trend(before: Sequence[Telemetry], last: Sequence[Telemetry], violations: int) -> list[str]:
    """E-13.1 sustainability: why a partner's evidence trends the wrong way — workflow success
    down or API errors up between the previous and the last evidence window, or violations in
    the year. Empty when it does not."""
    reasons = []
    if last and before:
        success = [sum(r.workflow_success_rate for r in x) / len(x) for x in (before, last)]
        errors = [sum(r.api_error_rate for r in x) / len(x) for x in (before, last)]
        if success[1] < success[0] - TREND_TOLERANCE:
            reasons.append(f"workflow success {success[0]:.3f} → {success[1]:.3f}")
        if errors[1] > errors[0] + TREND_TOLERANCE:
            reasons.append(f"API error rate {errors[0]:.3f} → {errors[1]:.3f}")
    if violations:
        reasons.append(f"{violations} violation(s) in the year")
    return reasons
