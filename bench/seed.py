"""The bench's partners and tokens, written straight into the store (set-up, not measured)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from bench.drive import Headers, bearer
from kwanus.models.common import Actor
from policy.document import PolicyDocument
from policy.manifest import Runtime
from policy.vocabulary import Role
from store import repo
from store.db import Database
from store.schemas import PartnerCreate, TokenCreate
from store.tables import Partner, utcnow


@dataclass
class Seeded:
    """What the scenarios act with: each body's and partner's bearer headers (over HTTP), each
    body's and bare partner's actor (straight to Temporal), and the policy in force."""

    headers: dict[str, Headers]
    actors: dict[str, Actor]
    policy: PolicyDocument


def seed(db: Database, *, partners: int, expansions: int) -> Seeded:
    """The fan-out's `partners` on OS 4.2 (every one affected by the notice) and, for each side
    of the `expansions`, partners on 5.0 (none affected): `api-…` driven over HTTP, `bare-…`
    straight to Temporal."""
    now = utcnow()
    # What registering {"capabilities": ["orders-dashboard"], "permissions": ["orders:read"]}
    # stores (store.repo.create_partner): the capability as a grant of kind `unknown`.
    held = PartnerCreate(
        id="seed",
        name="seed",
        tier="verified",
        os_version="4.2",
        api_version="2.1",
        runtime=Runtime(name="kwanus-runtime", version="3.0"),
        capabilities=["orders-dashboard"],
        permissions=["orders:read"],
    ).holdings
    grants = [g.model_dump(mode="json") for g in held.grants]

    def partner(pid: str, os_version: str) -> dict[str, Any]:
        return {
            "id": pid,
            "name": pid,
            "tier": "verified",
            "status": "active",
            "os_version": os_version,
            "api_version": "2.1",
            "runtime_name": "kwanus-runtime",
            "runtime_version": "3.0",
            "grants": grants,
            "registered_permissions": list(held.registered),
            "created_at": now,
        }

    headers: dict[str, Headers] = {}
    actors: dict[str, Actor] = {}
    rows = [partner(f"fo-{i:05d}", "4.2") for i in range(partners)]
    rows += [partner(f"api-{i:04d}", "5.0") for i in range(expansions)]
    rows += [partner(f"bare-{i:04d}", "5.0") for i in range(expansions)]
    with db.session() as session:
        for start in range(0, len(rows), 2000):
            session.execute(insert(Partner), rows[start : start + 2000])
        session.commit()
        for role in (Role.TSC, Role.SCO, Role.ERC, Role.CGB, Role.OPS):
            made = repo.create_token(session=session, token=TokenCreate(role=role))
            headers[role.value] = bearer(made.token)
            actors[role.value] = Actor(role=role, token_id=made.id)
        for pid in [f"api-{i:04d}" for i in range(expansions)] + ["fo-00000", "fo-00001"]:
            made = repo.create_token(
                session=session, token=TokenCreate(role=Role.PARTNER, partner_id=pid)
            )
            headers[pid] = bearer(made.token)
        policy = repo.current_policy(session=session)
    for i in range(expansions):
        pid = f"bare-{i:04d}"
        actors[pid] = Actor(role=Role.PARTNER, token_id=f"bench-{pid}", partner_id=pid)
    return Seeded(headers, actors, policy)
