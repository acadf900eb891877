"""structured grants: each capability or integration a partner holds, with its kind and permissions

Partners' capabilities become grants with a kind and permissions (E-2.7): a partner registered
before keeps its capability names, each with kind `unknown` and no permissions, and its
permissions as registered ones (carried by no grant).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PARTNER = sa.table(
    'partner',
    sa.column('id', sa.String()),
    sa.column('capabilities', sa.JSON()),
    sa.column('grants', sa.JSON()),
    sa.column('registered_permissions', sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('grants', sa.JSON(), nullable=True))
        batch_op.alter_column(
            'permissions', new_column_name='registered_permissions', existing_type=sa.JSON()
        )
    conn = op.get_bind()
    for partner_id, names in conn.execute(sa.select(PARTNER.c.id, PARTNER.c.capabilities)):
        grants = [
            {'type': 'capability', 'name': name, 'kind': 'unknown', 'permissions': []}
            for name in names or []
        ]
        conn.execute(PARTNER.update().where(PARTNER.c.id == partner_id).values(grants=grants))
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.alter_column('grants', existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column('capabilities')


def downgrade() -> None:
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('capabilities', sa.JSON(), nullable=True))
    conn = op.get_bind()
    rows = sa.select(PARTNER.c.id, PARTNER.c.grants, PARTNER.c.registered_permissions)
    for partner_id, grants, registered in conn.execute(rows):
        # Back to one list of names and one of permissions: the grants' own go with the rest.
        names = list(dict.fromkeys(g['name'] for g in grants or []))
        held = sorted({*(registered or []), *(p for g in grants or [] for p in g['permissions'])})
        conn.execute(
            PARTNER.update()
            .where(PARTNER.c.id == partner_id)
            .values(capabilities=names, registered_permissions=held)
        )
    with op.batch_alter_table('partner', schema=None) as batch_op:
        batch_op.alter_column('capabilities', existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column('grants')
        batch_op.alter_column(
            'registered_permissions', new_column_name='permissions', existing_type=sa.JSON()
        )
