"""pending since

Since when each awaited step has been waiting (`pending_action.since`), kept across its
process's events while the step stays open: the oldest waiting step, a business gauge. Rows
from before are dated by their process's latest event.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 19:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('pending_action', schema=None) as batch_op:
        batch_op.add_column(sa.Column('since', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE pending_action SET since = (SELECT p.updated_at FROM process p"
        " WHERE p.workflow_id = pending_action.workflow_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table('pending_action', schema=None) as batch_op:
        batch_op.drop_column('since')
