"""The compatibility matrix belongs to the platform (E-9.1, E-9.2, M-5.1): its rows change only
by TSC and by platform processes — the shipped seed, and a deprecation notice marking its
version deprecated. A partner declares its own compatibility, which must name versions the
platform still lists."""

from __future__ import annotations

from collections.abc import Sequence

from policy.decisions import Decision, Finding
from policy.deprecation import DeprecationNotice
from policy.evidence import CompatibilityMatrix, MatrixEntry, PlatformRef
from policy.vocabulary import MatrixStatus


def check_declared(
    field: str, refs: Sequence[PlatformRef], matrix: CompatibilityMatrix
) -> Decision:
    """E-9.2: a partner's release (or rollout) declares only versions the matrix lists and has
    not retired — a declaration on anything else would be runtime fragmentation."""
    out = []
    for i, ref in enumerate(refs):
        status = matrix.status_of(ref.kind, ref.name, ref.version)
        if status is None or status is MatrixStatus.RETIRED:
            what = "retired" if status else "not listed in the compatibility matrix"
            out.append(
                Finding(
                    field=f"{field}.{i}",
                    rule="E-9.2",
                    message=f"{ref.kind.value} {ref.name} {ref.version} is {what}",
                )
            )
    return Decision(findings=tuple(out))


def deprecated_by(notice: DeprecationNotice, matrix: CompatibilityMatrix) -> list[MatrixEntry]:
    """M-5.1 / M-2.1: the platform row a deprecation notice changes — its version, listed and
    supported, marked `deprecated`. A notice never lists a version (a partner could then
    declare it, E-9.2) nor brings a retired one back: listing and retiring are TSC's calls."""
    if notice.version is None:  # a permission notice names no version
        return []
    if matrix.status_of(notice.kind, notice.name, notice.version) is not MatrixStatus.SUPPORTED:
        return []
    return [
        MatrixEntry(
            kind=notice.kind,
            name=notice.name,
            version=notice.version,
            status=MatrixStatus.DEPRECATED,
        )
    ]
