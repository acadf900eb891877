"""The partner manifest — what a partner's integration runs and asks for (issue 20; the checks
that inspect it are policy/validation.py's).

A manifest is declared, not granted: its `permissions` are what the integration requests, its
`workflows` what it runs. The grants stay the governance record; a manifest passes only within
them. A partner registers one with its registration (admin) and replaces it only through a
migration whose validation passed it (M-4.7)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from policy.types import Name, Permission, Version

# A platform workflow component (a trigger or a handler) as a manifest names it: `name@version`
# — the row `(workflow, name, version)` of the matrix. Without `@version` it is unversioned,
# refused by the workflow check (M-5.2) rather than here, so the check names it.
WorkflowRef = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=140, pattern=r"^[A-Za-z0-9_.+-]{1,100}(@[^\s@]{1,32})?$"
    ),
]


class Runtime(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    version: Version


class ManifestWorkflow(BaseModel):
    """One workflow the integration runs: governed by the grant of its name (E-5.2, M-8.2)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name = Field(description="The workflow grant that governs it.")
    trigger: WorkflowRef = Field(description="A platform workflow row, `name@version`.")
    handler: WorkflowRef = Field(description="A platform workflow row, `name@version`.")
    permissions: tuple[Permission, ...] = Field(
        default=(), max_length=100, description="Within the manifest's `permissions`."
    )


class Manifest(BaseModel):
    """What a partner's integration runs and asks for (issue 20): the platform versions it is
    built on, its runtime, the permissions it requests and the workflows it runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    os_version: Version
    api_version: Version
    runtime: Runtime
    permissions: tuple[Permission, ...] = Field(default=(), max_length=200)
    workflows: tuple[ManifestWorkflow, ...] = Field(default=(), max_length=100)

    @model_validator(mode="after")
    def _one_workflow_a_name(self) -> Manifest:
        seen: set[str] = set()
        for wf in self.workflows:
            if wf.name.casefold() in seen:
                raise ValueError(f"workflow {wf.name!r} is declared twice")
            seen.add(wf.name.casefold())
        return self

    def with_target(self, target: Mapping[str, str]) -> Manifest:
        """The manifest with a migration's target versions applied (what a run that reported
        its implementation before manifests existed is judged on, and what a forced migration
        the partner did not act on registers)."""
        runtime = self.runtime.model_copy(
            update={
                k: target[f"runtime_{k}"] for k in ("name", "version") if f"runtime_{k}" in target
            }
        )
        versions = {k: target[k] for k in ("os_version", "api_version") if k in target}
        return self.model_copy(update={**versions, "runtime": runtime})

    def left_for(self, after: Manifest) -> dict[str, str]:
        """The components this manifest runs on and `after` does not (what moving to `after`
        moves off), by telemetry key → a readable name."""
        now = after.components()
        return {k: v for k, v in self.components().items() if k not in now}

    def components(self) -> dict[str, str]:
        """What it runs on, by telemetry key (`api:3.0`, `runtime:kwanus-runtime@3.0`,
        `workflow:order.created@1.0`) → a readable name."""
        out = {
            f"os:{self.os_version}": f"os {self.os_version}",
            f"api:{self.api_version}": f"api {self.api_version}",
            f"runtime:{self.runtime.name}@{self.runtime.version}": (
                f"runtime {self.runtime.name} {self.runtime.version}"
            ),
        }
        for wf in self.workflows:
            for ref in (wf.trigger, wf.handler):
                if "@" in ref:
                    out[f"workflow:{ref}"] = f"workflow {ref}"
        return out


def split_ref(ref: str) -> tuple[str, str | None]:
    """`order.created@1.0` → (`order.created`, `1.0`); unversioned → (name, None)."""
    name, _, version = ref.partition("@")
    return name, version or None


def derived(
    *,
    os_version: str,
    api_version: str,
    runtime: Runtime,
    permissions: Iterable[str],
) -> Manifest:
    """The manifest of a partner registered without one: what its record says it runs on, and
    every permission it holds requested; no workflows."""
    return Manifest(
        os_version=os_version,
        api_version=api_version,
        runtime=runtime,
        permissions=tuple(sorted(set(permissions))),
    )
