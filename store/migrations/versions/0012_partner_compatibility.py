"""partners' own compatibility, as their releases and rollouts declared it

A partner's release or rollout declares the platform versions it works with; they are stored
per partner and release, never written to the platform's rows (E-9.2).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 08:02:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('partner_compat',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('release', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('declared_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('audit_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['partner.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'kind', 'name', 'version', name='uq_partner_compat_decl')
    )
    with op.batch_alter_table('partner_compat', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_partner_compat_partner_id'), ['partner_id'], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table('partner_compat', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_compat_partner_id'))
    op.drop_table('partner_compat')
