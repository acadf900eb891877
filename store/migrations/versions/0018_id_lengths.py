"""id lengths

Every id the contract allows fits the store (contract.PROCESS_ID, 160): a deprecation's
migration `<notice>.<partner>` is up to 64 + 1 + 63 characters, more than `process_id` (100)
held, and its workflow id more than `workflow_id` (128) — on PostgreSQL its records failed for
ever, and a fan-out page's, which records its migrations' notices in one transaction, with
it. Process ids 160, workflow ids and the sources naming them 200, audit keys 300,
notification keys 400 (store/tables.py). Only widened: no row changes; on PostgreSQL a wider
varchar is a catalogue change, no table rewrite.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 20:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table → (column, length before, length now)
WIDENED = {
    'process': [('workflow_id', 128, 200), ('process_id', 100, 160)],
    'pending_action': [('workflow_id', 128, 200), ('process_id', 100, 160)],
    'audit_event': [('key', 200, 300), ('workflow_id', 128, 200), ('process_id', 100, 160)],
    'notification': [('key', 300, 400), ('workflow_id', 128, 200), ('process_id', 128, 160)],
    'stewardship_report': [('workflow_id', 128, 200)],
    'compat_change': [('source', 128, 200), ('audit_key', 200, 300)],
    'partner_compat': [('source', 128, 200), ('audit_key', 200, 300)],
    'partner_manifest': [('source', 128, 200), ('audit_key', 200, 300)],
}


def _alter(to_new: bool) -> None:
    for table, columns in WIDENED.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, before, now in columns:
                batch_op.alter_column(
                    column,
                    existing_type=sa.String(length=before if to_new else now),
                    type_=sa.String(length=now if to_new else before),
                )


def upgrade() -> None:
    _alter(True)


def downgrade() -> None:
    _alter(False)
