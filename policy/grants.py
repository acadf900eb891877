"""What a partner holds — its grants, each a capability or integration with its kind and its
permissions — and how governance changes it: what a grant's kind may carry (E-6.1, E-8.1), what
the requested tier's catalogue allows (E-7.4), and the release's governance update, which adds
and takes away only what the proposal names (E-2.7)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from policy.decisions import Decision, Finding
from policy.document import PolicyContent, TierSpec
from policy.types import Name, Permission, action_of
from policy.vocabulary import CapabilityKind, Classification, IntegrationKind

# A grant recorded before grants had kinds (a partner registered by capability names only).
UNKNOWN_KIND = "unknown"


class GrantType(StrEnum):
    CAPABILITY = "capability"
    INTEGRATION = "integration"


# E-6.1 / E-8.1 (Decision): a kind is what its permissions do. The actions each kind may carry;
# None is any bounded action (E-5.2 refuses `*` separately). Forbidden kinds are refused whatever
# they carry (E-6.3, E-8.3).
READ = frozenset({"read"})
READ_WRITE = frozenset({"read", "write"})
KIND_ACTIONS: dict[str, frozenset[str] | None] = {
    CapabilityKind.READ_ONLY: READ,
    CapabilityKind.UI_COMPONENT: READ,
    CapabilityKind.WORKFLOW_TRIGGER: READ,
    IntegrationKind.API: READ,
    IntegrationKind.EXTENSION: READ,
    IntegrationKind.WORKFLOW: READ,
    CapabilityKind.WRITE: READ_WRITE,
    CapabilityKind.INTELLIGENCE_WORKFLOW: READ_WRITE,
    CapabilityKind.ADVANCED_PERMISSION: None,
}


# The kinds that govern a workflow, by grant type: a partner's workflows are the names of its
# grants of these kinds (E-2.7: one workflow, one grant — whichever type names it).
WORKFLOW_KINDS: dict[GrantType, frozenset[str]] = {
    GrantType.CAPABILITY: frozenset(
        {CapabilityKind.WORKFLOW_TRIGGER, CapabilityKind.INTELLIGENCE_WORKFLOW}
    ),
    GrantType.INTEGRATION: frozenset(
        {IntegrationKind.WORKFLOW, IntegrationKind.INTELLIGENCE_WORKFLOW}
    ),
}


class Grant(BaseModel):
    """One capability or integration a partner holds, with its kind and permissions."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: GrantType
    name: Name
    kind: str = Field(
        description="A capability or integration kind, or `unknown` for a grant recorded "
        "before kinds were (registered by name)."
    )
    permissions: tuple[Permission, ...] = ()

    @model_validator(mode="after")
    def _kind_of_its_type(self) -> Grant:
        kinds = CapabilityKind if self.type is GrantType.CAPABILITY else IntegrationKind
        if self.kind != UNKNOWN_KIND and self.kind not in set(kinds):
            raise ValueError(f"{self.kind!r} is not a {self.type.value} kind")
        return self

    @property
    def key(self) -> tuple[GrantType, str]:
        return self.type, self.name


class Holdings(BaseModel):
    """Everything a partner holds: its grants, and the permissions registered with it outside
    any grant. The permissions in effect are their union."""

    model_config = ConfigDict(frozen=True)

    grants: tuple[Grant, ...] = ()
    registered: tuple[Permission, ...] = Field(
        default=(), description="Permissions registered directly, carried by no grant."
    )

    @property
    def capabilities(self) -> tuple[str, ...]:
        """The names of every grant held (capabilities and integrations)."""
        return tuple(sorted({g.name for g in self.grants}))

    @property
    def permissions(self) -> tuple[str, ...]:
        return tuple(sorted({*self.registered, *(p for g in self.grants for p in g.permissions)}))

    def holds(self, item: str) -> bool:
        """A grant of that name, or a permission in effect."""
        return item in self.capabilities or item in self.permissions


def governs_workflow(grant: Grant) -> bool:
    """A grant of a workflow kind (`WORKFLOW_KINDS`): the workflow it governs is its name. A
    grant of unknown kind (recorded before kinds were) governs none that can be told."""
    return grant.kind in WORKFLOW_KINDS[grant.type]


def governed_workflows(held: Holdings) -> set[str]:
    """The workflows a partner's grants govern: the names (as granted) of its workflow-kind
    capabilities and integrations."""
    return {g.name for g in held.grants if governs_workflow(g)}


def requested_grants(
    capabilities: Iterable[tuple[str, str, Sequence[str]]],
    integrations: Iterable[tuple[str, str, Sequence[str]]],
) -> tuple[Grant, ...]:
    """Grants from (name, kind, permissions) requests, in the order requested."""
    return tuple(
        Grant(type=type_, name=name, kind=str(kind), permissions=tuple(dict.fromkeys(perms)))
        for type_, items in (
            (GrantType.CAPABILITY, capabilities),
            (GrantType.INTEGRATION, integrations),
        )
        for name, kind, perms in items
    )


def classify_grant(grant: Grant, policy: PolicyContent) -> Classification:
    """E-6 / E-8: the policy's class of a grant's kind (a grant of unknown kind, recorded
    before kinds were, is judged by its permissions alone)."""
    if grant.kind == UNKNOWN_KIND:
        return Classification.ALLOWED
    if grant.type is GrantType.CAPABILITY:
        return policy.capability_classes[CapabilityKind(grant.kind)]
    return policy.integration_classes[IntegrationKind(grant.kind)]


def check_fit(field: str, grant: Grant, *, forbidden: bool) -> list[Finding]:
    """E-6.1 (capabilities) / E-8.1 (integrations): every permission's action is one its kind
    may carry. A forbidden kind is refused by its own rule (E-6.3, E-8.3), whatever it carries."""
    allowed = KIND_ACTIONS.get(grant.kind)
    if forbidden or grant.kind == UNKNOWN_KIND or allowed is None:
        return []
    rule = "E-6.1" if grant.type is GrantType.CAPABILITY else "E-8.1"
    return [
        Finding(
            field=f"{field}.permissions.{j}",
            rule=rule,
            message=f"{perm} does more than a {grant.kind} {grant.type.value} may "
            f"(actions: {', '.join(sorted(allowed))})",
        )
        for j, perm in enumerate(grant.permissions)
        if "*" not in perm and action_of(perm) not in allowed  # `*` is E-5.2's to refuse
    ]


def unbounded_findings(field: str, permissions: Sequence[str]) -> list[Finding]:
    """E-5.2: a permission with a `*` anywhere is unbounded, forbidden without exception."""
    return [
        Finding(
            field=f"{field}.{j}",
            rule="E-5.2",
            message=f"permission {perm!r} is unbounded (contains '*'): forbidden without exception",
        )
        for j, perm in enumerate(permissions)
        if "*" in perm
    ]


def action_findings(field: str, permissions: Sequence[str], tier: TierSpec) -> list[Finding]:
    """E-7.4: every permission's action is one the tier's catalogue entry allows (`*` is
    E-5.2's to refuse)."""
    return [
        Finding(
            field=f"{field}.{j}",
            rule="E-7.4",
            message=f"tier {tier.name} allows the actions "
            f"{', '.join(sorted(tier.permission_actions))}, not {action_of(perm)!r}",
        )
        for j, perm in enumerate(permissions)
        if "*" not in perm and action_of(perm) not in tier.permission_actions
    ]


def check_catalogue(field: str, grant: Grant, tier: TierSpec) -> list[Finding]:
    """E-7.4: the kind and every permission's action are in the tier's catalogue entry."""
    out = []
    kinds: frozenset[str] = (
        tier.capability_kinds if grant.type is GrantType.CAPABILITY else tier.integration_kinds
    )
    if grant.kind != UNKNOWN_KIND and grant.kind not in kinds:
        out.append(
            Finding(
                field=f"{field}.kind",
                rule="E-7.4",
                message=f"tier {tier.name} holds no {grant.kind} {grant.type.value}",
            )
        )
    return out + action_findings(f"{field}.permissions", grant.permissions, tier)


def within_tier(held: Holdings, tier: TierSpec) -> Holdings:
    """E-7.4 (Decision): what a partner keeps on moving down to `tier` — the grants whose kind
    the tier holds, each with only the permissions whose action the tier allows (a grant left
    with none is removed), and the registered permissions the tier allows."""

    def allowed(perm: str) -> bool:
        return "*" not in perm and action_of(perm) in tier.permission_actions

    kept = []
    for grant in held.grants:
        if check_catalogue("grant", grant.model_copy(update={"permissions": ()}), tier):
            continue  # its kind is not on the tier
        permissions = tuple(p for p in grant.permissions if allowed(p))
        if grant.permissions and not permissions:
            continue
        kept.append(grant.model_copy(update={"permissions": permissions}))
    return Holdings(grants=tuple(kept), registered=tuple(p for p in held.registered if allowed(p)))


def read_only(held: Holdings) -> Holdings:
    """M-2.3 / M-9.3 at the lowest tier, where no tier is below: the forced outcome keeps only
    the `:read` permissions (a grant left with none is removed)."""

    def reads(perm: str) -> bool:
        return action_of(perm) == "read" and "*" not in perm  # `*:read` reads everything

    kept = []
    for grant in held.grants:
        permissions = tuple(p for p in grant.permissions if reads(p))
        if grant.permissions and not permissions:
            continue
        kept.append(grant.model_copy(update={"permissions": permissions}))
    return Holdings(grants=tuple(kept), registered=tuple(p for p in held.registered if reads(p)))


# E-6 for capabilities, E-8 for integrations: the same classes, their own rule IDs.
CLASS_RULES = {
    GrantType.CAPABILITY: {Classification.FORBIDDEN: "E-6.3", Classification.RESTRICTED: "E-6.2"},
    GrantType.INTEGRATION: {Classification.FORBIDDEN: "E-8.3", Classification.RESTRICTED: "E-8.2"},
}


def check_requested(
    requested: Sequence[tuple[str, Grant]], policy: PolicyContent, tier: TierSpec | None
) -> Decision:
    """Grants asked for (by a proposal, or at registration), each with the field it came from:
    a forbidden kind refused (E-6.3, E-8.3) and a restricted one flagged for SCO (E-6.2,
    E-8.2); an unbounded permission refused (E-5.2); a kind carrying more than it may (E-6.1,
    E-8.1) and, where the tier is known, what its catalogue does not allow (E-7.4) refused."""
    findings: list[Finding] = []
    flags: list[Finding] = []
    for field, grant in requested:
        cls = classify_grant(grant, policy)
        noun = grant.type.value
        if cls is Classification.FORBIDDEN:
            findings.append(
                Finding(
                    field=f"{field}.kind",
                    rule=CLASS_RULES[grant.type][cls],
                    message=f"{noun} kind {grant.kind} is forbidden",
                )
            )
        elif cls is Classification.RESTRICTED:
            flags.append(
                Finding(
                    field=f"{field}.kind",
                    rule=CLASS_RULES[grant.type][cls],
                    message=f"{noun} kind {grant.kind} is restricted: SCO must approve",
                )
            )
        findings += unbounded_findings(f"{field}.permissions", grant.permissions)
        forbidden = cls is Classification.FORBIDDEN
        findings += check_fit(field, grant, forbidden=forbidden)
        if tier is not None and not forbidden:
            findings += check_catalogue(field, grant, tier)
    return Decision(findings=tuple(findings), flags=tuple(flags))


def requested_once(requested: Sequence[tuple[str, Grant]]) -> list[Finding]:
    """E-2.7: one grant a name in one request (names compared regardless of case) — two,
    merged, would blur a kind; two spelt apart by case would read as one to a runtime."""
    out: list[Finding] = []
    seen: set[tuple[GrantType, str]] = set()
    for field, grant in requested:
        key = (grant.type, grant.name.casefold())
        if key in seen:
            out.append(
                Finding(
                    field=f"{field}.name",
                    rule="E-2.7",
                    message=f"{grant.type.value} {grant.name!r} is requested twice",
                )
            )
        seen.add(key)
    return out


def check_against_holdings(
    requested: Sequence[tuple[str, Grant]], removes: Sequence[str], held: Holdings
) -> Decision:
    """E-2.7 at submission: a proposal removes only what the partner holds (a grant by name, or
    a permission), and requests nothing it holds already unless it removes it too — a change
    is a removal and a new grant, never a silent second grant: not under a held name, not for a
    workflow a held grant of the other type governs, not of a permission in effect (a grant's
    or registered). Nor twice in one proposal: a permission in two grants, a workflow as a
    capability and an integration (two grants of one type and name are `requested_once`'s).
    Each requested grant comes with the field it came from."""
    out = [
        Finding(
            field=f"removes.{i}",
            rule="E-2.7",
            message=f"{item!r} is not held: neither a grant nor a permission of the partner",
        )
        for i, item in enumerate(removes)
        if not held.holds(item)
    ]
    # What stays held once `removes` is taken away (by the held spelling, as the release's
    # update takes it) is what a request may not ask for again.
    kept = governance_update(held, add=(), removes=removes)
    return Decision(
        findings=(*out, *_names_again(requested, kept), *_permissions_again(requested, kept))
    )


def _names_again(requested: Sequence[tuple[str, Grant]], kept: Holdings) -> list[Finding]:
    """E-2.7: no grant under a name held (names compared regardless of case: `Acme-Widget`
    beside `acme-widget` is a second grant a runtime would read as the first), and no workflow
    governed twice — held, or requested before in this proposal, as the other type."""
    out: list[Finding] = []
    asked: dict[str, tuple[str, Grant]] = {}  # a workflow (casefold) -> where first requested
    for field, grant in requested:
        name = grant.name.casefold()
        same = [g for g in kept.grants if g.type is grant.type and g.name.casefold() == name]
        other = [
            g
            for g in kept.grants
            if g.type is not grant.type and governs_workflow(g) and g.name.casefold() == name
        ]
        earlier = asked.get(name)
        if governs_workflow(grant):
            asked.setdefault(name, (field, grant))
        change = "; to change it, name it in `removes` too"
        if same:
            message = f"the partner holds {grant.type.value} {same[0].name!r} already{change}"
        elif governs_workflow(grant) and other:
            g = other[0]
            message = (
                f"the partner holds {g.type.value} {g.name!r} ({g.kind}) already, which governs "
                f"workflow {g.name!r}: one workflow is one grant{change}"
            )
        elif governs_workflow(grant) and earlier is not None and earlier[1].type is not grant.type:
            message = (
                f"workflow {grant.name!r} is requested twice (as {earlier[1].type.value} "
                f"{earlier[0]} too): one workflow is one grant"
            )
        else:
            continue
        out.append(Finding(field=f"{field}.name", rule="E-2.7", message=message))
    return out


def _permissions_again(requested: Sequence[tuple[str, Grant]], kept: Holdings) -> list[Finding]:
    """E-2.7: no permission in effect (a grant's, or registered) requested again, and none
    requested twice (compared regardless of case) — each finding naming what carries it."""
    carriers: dict[str, tuple[str, list[str]]] = {}  # casefold -> held spelling, carried by
    for perm in kept.registered:
        carriers.setdefault(perm.casefold(), (perm, []))[1].append("registered")
    for g in kept.grants:
        for perm in g.permissions:
            carriers.setdefault(perm.casefold(), (perm, []))[1].append(f"{g.type.value} {g.name!r}")
    out: list[Finding] = []
    asked: dict[str, str] = {}  # casefold -> the field of the grant that first requested it
    for field, grant in requested:
        for j, perm in enumerate(grant.permissions):
            key = perm.casefold()
            if key in carriers:
                spelt, by = carriers[key]
                message = (
                    f"the partner holds permission {spelt!r} already ({', '.join(by)}); to "
                    "change it, name it in `removes` too"
                )
            elif key in asked:
                message = f"permission {perm!r} is requested twice (by {asked[key]} too)"
            else:
                message = None
            if message is not None:
                out.append(Finding(field=f"{field}.permissions.{j}", rule="E-2.7", message=message))
            asked.setdefault(key, field)
    return out


def grantable(
    held: Holdings, add: Sequence[Grant], removes: Sequence[str], tier: TierSpec | None
) -> tuple[list[Grant], list[Finding]]:
    """What of `add` may be granted now, and why the rest may not: each grant within the
    catalogue of the tier in effect when it is granted (E-7.4: the tier may have moved since
    submission), and none under a name held with another kind that the update does not remove
    (E-6.1: a grant is what its permissions say — merged, it would carry both)."""
    kinds = {g.key: g.kind for g in held.grants if g.name not in removes}
    ok: list[Grant] = []
    withheld: list[Finding] = []
    for grant in add:
        found = check_catalogue(grant.name, grant, tier) if tier is not None else []
        if kinds.get(grant.key, grant.kind) != grant.kind:
            found.append(
                Finding(
                    field=grant.name,
                    rule="E-6.1",
                    message=f"held as {kinds[grant.key]}, requested as {grant.kind}",
                )
            )
        if found:
            withheld += found
        else:
            ok.append(grant)
            kinds[grant.key] = grant.kind  # a second grant of the name must be the same kind
    return ok, withheld


def governance_update(held: Holdings, *, add: Sequence[Grant], removes: Sequence[str]) -> Holdings:
    """E-2.7 (Decision): what the partner holds at release time, minus exactly what `removes`
    names, plus what was approved. A removed grant takes its permissions with it unless another
    held grant (or the registration) carries them; a removed permission goes from every grant.
    A grant approved again under a name held keeps its permissions and gains the new ones."""
    names = set(removes)
    registered = tuple(p for p in held.registered if p not in names)
    kept: dict[tuple[GrantType, str], Grant] = {}
    for grant in held.grants:
        if grant.name in names:
            continue
        perms = tuple(p for p in grant.permissions if p not in names)
        kept[grant.key] = grant.model_copy(update={"permissions": perms})
    for grant in add:
        old = kept.get(grant.key)
        perms = grant.permissions if old is None else (*old.permissions, *grant.permissions)
        kept[grant.key] = grant.model_copy(update={"permissions": tuple(dict.fromkeys(perms))})
    return Holdings(grants=tuple(kept.values()), registered=registered)


def legacy_additions(
    held: Holdings, names: Sequence[str], permissions: Sequence[str], removes: Sequence[str]
) -> Holdings:
    """A release as runs released before E-2.7's decision sent it (names and permissions, no
    kinds): exactly its `removes` taken away, then what it names added — grants of unknown
    kind, registered permissions."""
    kept = governance_update(held, add=(), removes=removes)
    named = tuple(
        Grant(type=GrantType.CAPABILITY, name=n, kind=UNKNOWN_KIND)
        for n in dict.fromkeys(names)
        if n not in kept.capabilities
    )
    registered = tuple(dict.fromkeys((*kept.registered, *permissions)))
    return Holdings(grants=(*kept.grants, *named), registered=registered)


class HoldingsChange(BaseModel):
    """What a governance update changed, for its audit event (before and after)."""

    before: Holdings
    after: Holdings
    added: list[str]
    removed: list[str]
    permissions_added: list[str]
    permissions_removed: list[str]


def change(before: Holdings, after: Holdings) -> HoldingsChange:
    was, now = set(before.capabilities), set(after.capabilities)
    perms_was, perms_now = set(before.permissions), set(after.permissions)
    return HoldingsChange(
        before=before,
        after=after,
        added=sorted(now - was),
        removed=sorted(was - now),
        permissions_added=sorted(perms_now - perms_was),
        permissions_removed=sorted(perms_was - perms_now),
    )
