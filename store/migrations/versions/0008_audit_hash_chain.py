"""audit hash chain

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 03:37:27.947499
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# PostgreSQL refuses any UPDATE or DELETE on the audit log (tamper evidence beyond the chain).
REFUSE_CHANGES = """
CREATE OR REPLACE FUNCTION kwanus_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
  FOR EACH ROW EXECUTE FUNCTION kwanus_audit_append_only();
"""


def upgrade() -> None:
    from store.audit import GENESIS, HASHED, row_hash

    TYPES = {
        'at': sa.DateTime(timezone=True),
        'recorded_at': sa.DateTime(timezone=True),
        'rules': sa.JSON(),
        'data': sa.JSON(),
    }

    op.create_table('audit_chain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False, server_default=''))
        batch_op.create_unique_constraint('uq_audit_event_seq', ['seq'])

    # Chain the rows already logged, in the order they were written.
    bind = op.get_bind()
    audit = sa.table(
        'audit_event',
        sa.column('id'), sa.column('seq'), sa.column('prev_hash'), sa.column('hash'),
        *(sa.column(name, TYPES.get(name)) for name in HASHED),
    )
    prev, seq = GENESIS, 0  # (typed columns: the hash is of what the application reads)
    for row in bind.execute(sa.select(audit).order_by(audit.c.id)).mappings().all():
        seq += 1
        digest = row_hash(prev, {k: row[k] for k in HASHED})
        bind.execute(
            audit.update().where(audit.c.id == row['id']).values(seq=seq, prev_hash=prev, hash=digest)
        )
        prev = digest
    bind.execute(sa.text("INSERT INTO audit_chain (id, seq, hash) VALUES (1, :seq, :hash)"), {"seq": seq, "hash": prev})
    if bind.dialect.name == 'postgresql':
        op.execute(REFUSE_CHANGES)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS audit_event_append_only ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS kwanus_audit_append_only()")
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_constraint('uq_audit_event_seq', type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')

    op.drop_table('audit_chain')
