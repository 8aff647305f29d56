"""presence from each node's own cadence

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('offline_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('cadence_seconds', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('cadence_seconds')
        batch_op.drop_column('offline_at')
