"""process list indexes ending in workflow_id (keyset pages without a sort)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 05:55:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('process', schema=None) as batch_op:
        batch_op.create_index(
            'ix_process_kind_partner_wf', ['kind', 'partner_id', 'workflow_id'], unique=False
        )
        batch_op.create_index(
            'ix_process_kind_stage_wf', ['kind', 'stage', 'workflow_id'], unique=False
        )
        batch_op.create_index(
            'ix_process_kind_status_wf', ['kind', 'status', 'workflow_id'], unique=False
        )
        batch_op.drop_index('ix_process_kind_partner')
        batch_op.drop_index('ix_process_kind_stage')


def downgrade() -> None:
    with op.batch_alter_table('process', schema=None) as batch_op:
        batch_op.create_index('ix_process_kind_stage', ['kind', 'stage'], unique=False)
        batch_op.create_index('ix_process_kind_partner', ['kind', 'partner_id'], unique=False)
        batch_op.drop_index('ix_process_kind_status_wf')
        batch_op.drop_index('ix_process_kind_stage_wf')
        batch_op.drop_index('ix_process_kind_partner_wf')
