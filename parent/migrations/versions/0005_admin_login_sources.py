"""admin login sources: addresses an admin has logged in from (login throttling)

Revision ID: 0005
Revises: 0009
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('admin_login_sources',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('admin_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('last_login_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['admin_id'], ['admins.id'], name=op.f('fk_admin_login_sources_admin_id_admins'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_login_sources')),
    sa.UniqueConstraint('admin_id', 'source', name=op.f('uq_admin_login_sources_admin_id'))
    )
    with op.batch_alter_table('admin_login_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_admin_login_sources_last_login_at'), ['last_login_at'], unique=False)


def downgrade():
    with op.batch_alter_table('admin_login_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_admin_login_sources_last_login_at'))

    op.drop_table('admin_login_sources')
