"""partner manifests

What a partner's integration runs and asks for (issue 20), versioned: registered with the
partner, replaced only by a migration's completion (M-8.1, M-4.7). Every partner registered
before gets version 1, derived from its record: the versions and runtime it is registered on,
every permission it holds requested, no workflows.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 14:00:00.000000
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _as_list(value: object) -> list:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or [])


def upgrade() -> None:
    table = op.create_table('partner_manifest',
    sa.Column('partner_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('validated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('audit_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('partner_id', 'version'),
    sa.UniqueConstraint('audit_key'),
    )
    partners = op.get_bind().execute(
        sa.text(
            'SELECT id, os_version, api_version, runtime_name, runtime_version, grants, '
            'registered_permissions FROM partner'
        )
    ).all()
    now = datetime.now(UTC)
    rows = []
    for p in partners:
        held = set(_as_list(p.registered_permissions))
        for grant in _as_list(p.grants):
            held.update(grant.get('permissions') or [])
        manifest = {
            'os_version': p.os_version,
            'api_version': p.api_version,
            'runtime': {'name': p.runtime_name, 'version': p.runtime_version},
            'permissions': sorted(held),
            'workflows': [],
        }
        rows.append(
            {
                'partner_id': p.id,
                'version': 1,
                'manifest': manifest,
                'source': 'registration',
                'registered_at': now,
                'validated_at': now,
                'audit_key': None,
            }
        )
    if rows:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_table('partner_manifest')
