"""wechat logins, node commands, invalid feeds

Revision ID: 0008
Revises: 0010
Create Date: 2026-12-01

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('node_commands',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_node_commands'))
    )
    with op.batch_alter_table('node_commands', schema=None) as batch_op:
        batch_op.create_index('ix_node_commands_node_id_status', ['node_id', 'status'],
                              unique=False)

    op.create_table('wechat_logins',
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('command_id', sa.String(length=36), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('qr_png', sa.LargeBinary(), nullable=True),
    sa.Column('qr_expires_at', sa.DateTime(), nullable=True),
    sa.Column('account_name', sa.String(length=255), nullable=True),
    sa.Column('account_avatar', sa.String(length=1000), nullable=True),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('requested_at', sa.DateTime(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('node_id', name=op.f('pk_wechat_logins'))
    )
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invalid_reason', sa.Text(), nullable=True))
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wechat', sa.JSON(), nullable=True))
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('commands_waiting', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))


def downgrade():
    with op.batch_alter_table('articles', schema=None) as batch_op:
        batch_op.drop_column('wechat')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('commands_waiting')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('invalid_reason')
    op.drop_table('wechat_logins')
    with op.batch_alter_table('node_commands', schema=None) as batch_op:
        batch_op.drop_index('ix_node_commands_node_id_status')
    op.drop_table('node_commands')
