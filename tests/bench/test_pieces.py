"""`python -m bench.pieces` measures what it names, on a real migrated database."""

from sqlalchemy import func, select

from bench import pieces
from parent.extensions import db
from parent.models import UsedNonce


def test_every_piece_runs_and_the_nonce_pieces_really_insert(app, node):
    with pieces.cases(app, node.api_key) as cases:
        results = pieces.measure(cases, count=2, rounds=1, warmup=1)
    assert set(results) == set(cases)
    assert all(low > 0 and middle >= low for low, middle in results.values())
    with app.app_context():
        inserted = db.session.execute(select(func.count()).select_from(UsedNonce).where(
            UsedNonce.node_id == "bench-node")).scalar_one()
    assert inserted == 2 * (1 + 2)  # two INSERT pieces, each run once to warm up and twice
