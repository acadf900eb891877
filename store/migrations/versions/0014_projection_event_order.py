"""projection event order

Each process's projection remembers the number of the event that wrote it (`seq`, counted by
its run): of two events of the same workflow time, the later one's state is kept whichever
commits last, so the projection — which every read is served from (P-8) — never goes back.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 08:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('process') as batch:
        batch.add_column(sa.Column('seq', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('process') as batch:
        batch.drop_column('seq')
