"""Request and response shapes of the admin data (partners, tokens): `XCreate` carries only what
a caller may set; `XPublic` only what a caller may see."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from policy.grants import UNKNOWN_KIND, Grant, GrantType, Holdings
from policy.manifest import Manifest, Runtime, derived
from policy.types import Name, Permission, Version
from policy.vocabulary import PartnerStatus, Role

PartnerId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")]


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: PartnerId = Field(description="Lower-case slug, 2-63 characters: letters, digits, '-'.")
    name: Name
    tier: Name
    os_version: Version
    api_version: Version
    runtime: Runtime
    capabilities: list[Name] = Field(
        default_factory=list,
        max_length=200,
        description="Capabilities held, by name only (recorded with kind `unknown`); `grants` "
        "records them with their kind and permissions.",
    )
    grants: list[Grant] = Field(
        default_factory=list,
        max_length=200,
        description="Capabilities and integrations held, each with its kind and permissions.",
    )
    permissions: list[Permission] = Field(
        default_factory=list,
        max_length=200,
        description="Permissions registered with the partner, carried by no grant.",
    )
    manifest: Manifest | None = Field(
        default=None,
        description="What the partner's integration runs and asks for (its versions and "
        "runtime are the ones above). Its workflows are governed by this registration's "
        "workflow grants. Without one, the partner's manifest is derived: the versions and "
        "runtime above, every permission held requested, no workflows.",
    )

    def manifest_differs(self) -> dict[str, str]:
        """Each field of `manifest` that is not the registration's own (its versions and
        runtime are the partner's: one record, never two)."""
        if self.manifest is None:
            return {}
        return {
            f"manifest.{field}": f"{mine} differs from the registration's {field} ({theirs})"
            for field, mine, theirs in (
                ("os_version", self.manifest.os_version, self.os_version),
                ("api_version", self.manifest.api_version, self.api_version),
                ("runtime", self.manifest.runtime, self.runtime),
            )
            if mine != theirs
        }

    @property
    def registered_manifest(self) -> Manifest:
        """Version 1 of the partner's manifest: the one registered, or the derived one."""
        if self.manifest is not None:
            return self.manifest
        return derived(
            os_version=self.os_version,
            api_version=self.api_version,
            runtime=self.runtime,
            permissions=self.holdings.permissions,
        )

    @field_validator("grants")
    @classmethod
    def _kinds_known(cls, grants: list[Grant]) -> list[Grant]:
        for grant in grants:
            if grant.kind == UNKNOWN_KIND:
                raise ValueError(
                    f"{grant.name}: name its kind ({UNKNOWN_KIND!r} is for grants "
                    "recorded before kinds were)"
                )
        return grants

    @property
    def holdings(self) -> Holdings:
        named = [
            Grant(type=GrantType.CAPABILITY, name=n, kind=UNKNOWN_KIND)
            for n in self.capabilities
            if n not in {g.name for g in self.grants}
        ]
        return Holdings(grants=(*self.grants, *named), registered=tuple(self.permissions))


class DeclaredCompatibility(BaseModel):
    """A platform version the partner's release (or rollout) declared it works with (E-9.2)."""

    kind: str
    name: str
    version: str
    release: str = Field(description="The version released or rolled out.")
    source: str = Field(description="The release's expansion or the rollout's migration.")
    declared_at: datetime


class PartnerPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    tier: str
    status: PartnerStatus
    os_version: str
    api_version: str
    runtime: Runtime
    capabilities: list[str] = Field(description="The name of every grant held.")
    permissions: list[str] = Field(
        description="The permissions held: the grants' and the registered ones."
    )
    grants: list[Grant]
    registered_permissions: list[str]
    compatibility: list[DeclaredCompatibility] = Field(
        description="What its releases and rollouts declared they work with, newest first."
    )
    created_at: datetime


class ManifestVersion(BaseModel):
    """One version of a partner's manifest: registered with the partner, or by the migration
    (`source`, its workflow id) whose validation inspected it (M-8.1, M-4.7)."""

    version: int
    manifest: Manifest
    source: str
    registered_at: datetime
    validated_at: datetime = Field(
        description="When it was judged (its migration's validation, or its registration): a "
        "manifest validated earlier never replaces it."
    )


class ManifestPublic(ManifestVersion):
    """`GET /v1/partners/{id}/manifest`: the partner's manifest and its history."""

    partner_id: str
    history: list[ManifestVersion] = Field(description="Every version, newest first.")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    partner_id: PartnerId | None = Field(
        default=None, validate_default=True, description="Required for role `partner`, only then."
    )
    label: Annotated[str, StringConstraints(max_length=200)] = ""
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the token stops working (with its time zone)."
    )

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value

    @field_validator("partner_id")
    @classmethod
    def _partner_binding(cls, value: str | None, info: ValidationInfo) -> str | None:
        role = info.data.get("role")
        if role is Role.PARTNER and value is None:
            raise ValueError("required for role partner")
        if role is not None and role is not Role.PARTNER and value is not None:
            raise ValueError("only a partner token is bound to a partner")
        return value


class TokenPublic(BaseModel):
    id: str
    role: Role
    partner_id: str | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None


class TokenCreated(TokenPublic):
    token: str = Field(description="The bearer token. Shown once; only its hash is stored.")
