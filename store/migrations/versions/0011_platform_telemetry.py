"""telemetry reported by the platform: its reporter, and calls by platform version

Each report records who reported it (E-7.1: evidence is what the platform reported); reports
stored before have no reporter — self-reported, never evidence.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 08:01:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('telemetry_report', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('calls_by_version', sa.JSON(), nullable=False, server_default='{}')
        )
        batch_op.add_column(
            sa.Column('reported_by', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column('reporter_role', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
    with op.batch_alter_table('telemetry_report', schema=None) as batch_op:
        batch_op.alter_column('calls_by_version', existing_type=sa.JSON(), server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('telemetry_report', schema=None) as batch_op:
        batch_op.drop_column('reporter_role')
        batch_op.drop_column('reported_by')
        batch_op.drop_column('calls_by_version')
