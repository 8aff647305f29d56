"""message-task channels; task secrets encrypted at rest; per-destination send budgets

Revision ID: 0007
Revises: 0008
Create Date: 2026-12-01

"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0008'
branch_labels = None
depends_on = None

_SECRET_COLUMNS = ('web_hook_url', 'headers', 'cookies')


def _cipher():
    from parent.crypto import cipher

    return cipher()


def upgrade():
    with op.batch_alter_table('message_tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('sign_secret', sa.Text(), nullable=True))
        batch_op.alter_column('web_hook_url', existing_type=sa.String(length=1000),
                              type_=sa.Text(), existing_nullable=False)
        batch_op.alter_column('headers', existing_type=sa.JSON(), type_=sa.Text(),
                              existing_nullable=False, postgresql_using='headers::text')
    # Encrypt what was stored in plain text.
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        'SELECT id, web_hook_url, headers, cookies FROM message_tasks')).all()
    if rows:
        cipher = _cipher()
        for row in rows:
            headers = json.loads(row.headers) if row.headers else {}
            values = {
                'web_hook_url': cipher.encrypt_field(row.web_hook_url or ''),
                'headers': cipher.encrypt_field(json.dumps(headers, ensure_ascii=False,
                                                           sort_keys=True)),
                'cookies': cipher.encrypt_field(row.cookies or ''),
            }
            connection.execute(sa.text(
                'UPDATE message_tasks SET web_hook_url = :web_hook_url, headers = :headers, '
                'cookies = :cookies WHERE id = :id'), {**values, 'id': row.id})

    op.create_table('send_budgets',
    sa.Column('destination', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('next_at', sa.Float(), nullable=False),
    sa.Column('grants', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('destination', name=op.f('pk_send_budgets'))
    )
    op.create_table('notice_marks',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_notice_marks'))
    )


def downgrade():
    op.drop_table('notice_marks')
    op.drop_table('send_budgets')
    connection = op.get_bind()
    rows = connection.execute(sa.text(
        'SELECT id, web_hook_url, headers, cookies FROM message_tasks')).all()
    if rows:
        cipher = _cipher()
        for row in rows:
            plain = {name: cipher.decrypt_field(getattr(row, name) or '') or ''
                     for name in _SECRET_COLUMNS}
            plain['headers'] = plain['headers'] or '{}'
            connection.execute(sa.text(
                'UPDATE message_tasks SET web_hook_url = :web_hook_url, headers = :headers, '
                'cookies = :cookies WHERE id = :id'), {**plain, 'id': row.id})
    with op.batch_alter_table('message_tasks', schema=None) as batch_op:
        batch_op.alter_column('headers', existing_type=sa.Text(), type_=sa.JSON(),
                              existing_nullable=False, postgresql_using='headers::json')
        batch_op.alter_column('web_hook_url', existing_type=sa.Text(),
                              type_=sa.String(length=1000), existing_nullable=False)
        batch_op.drop_column('sign_secret')
        batch_op.drop_column('channel')
