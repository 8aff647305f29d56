"""node sources, route family, claim cancel

Revision ID: 0009
Revises: 0004
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sources', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('route_family', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('claim_cancelled_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('claim_cancelled_at')
        batch_op.drop_column('route_family')
        batch_op.drop_column('sources')
