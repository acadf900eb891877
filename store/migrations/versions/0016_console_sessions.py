"""console sessions

Sign-ins to the web console (`/console`): the sha256 of the session id its cookie holds, the
API token it acts as, its CSRF token, and when it ends.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'console_session',
        sa.Column('id_sha256', sa.String(length=64), primary_key=True),
        sa.Column('token_id', sa.String(length=32), sa.ForeignKey('api_token.id'), nullable=False),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_console_session_token_id', 'console_session', ['token_id'])


def downgrade() -> None:
    op.drop_index('ix_console_session_token_id', table_name='console_session')
    op.drop_table('console_session')
