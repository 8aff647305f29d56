"""Count the SQL a block of requests runs: what the budget tests assert (never time)."""

import contextlib
import re

from sqlalchemy import event

from bench.probe import outer_statement, without_ctes
from parent.extensions import db
from parent.write_queue import ends_a_transaction

_TABLE = re.compile(r"(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def _described(statement: str) -> str:
    """'VERB table'; a statement with data-modifying CTEs names them: 'INSERT leases (WITH
    UPDATE allocations)'."""
    if statement.split()[0].upper() == "WITH":
        main, writes = without_ctes(statement)
        return f"{_described(main)} (WITH {', '.join(writes)})" if writes else _described(main)
    table = _TABLE.search(outer_statement(statement))
    return f"{statement.split()[0].upper()} {table.group(1) if table else ''}".strip()


@contextlib.contextmanager
def counted(app):
    """Collect 'VERB table' for each statement, and the COMMITs, run in the block.

    A COMMIT counts when it ends a transaction in the database (a request that only read
    has none to end: parent/write_queue.py).
    """
    seen = {"statements": [], "commits": 0}

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen["statements"].append(_described(statement))

    def on_commit(conn):
        if ends_a_transaction(conn):
            seen["commits"] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "commit", on_commit)
