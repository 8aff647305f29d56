"""Signed requests' nonces, written in groups: one statement for every request waiting.

A signed heartbeat or unchanged pull writes one row, its nonce, and nothing else; it is
answered only once that row is committed, so a replay is refused by the database's
primary key on every worker and parent instance. Written one statement each, those rows
queued behind SQLite's one writer (and, on PostgreSQL, each waited for its own commit):
the signed heartbeat did 0.30 of the bare app where the plain one did 0.66
(bench/README.md, "The node fast lane").

Here the requests of a worker that want to write a nonce at the same time share one
``INSERT ... ON CONFLICT DO NOTHING RETURNING``: the first to come writes what has
gathered, and whoever comes while it writes waits for the next group, which one of them
then writes (group commit). A nonce the statement did not return was there already: that
request is a replay, refused as before. Each request is still answered only after its
nonce is committed; nothing is kept in memory.
"""

from __future__ import annotations

import functools
import threading
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.sql.selectable import TextualSelect

from . import write_queue
from .driver_sql import DriverStatement
from .models import UsedNonce

_NONCES = cast(Table, UsedNonce.__table__)
_COLUMNS = ("node_id", "nonce", "seen_at")
MAX_ROWS = 64  # per statement; a bigger group (more threads than that) takes several


class _Group:
    __slots__ = ("rows", "keys", "written", "error")

    def __init__(self):
        self.rows: list[dict] = []
        self.keys: set[tuple[str, str]] = set()
        self.written: set[tuple[str, str]] | None = None  # (node id, nonce) the INSERT wrote
        self.error: BaseException | None = None


class NonceWriter:
    """Writes the nonces of one process's requests, a group per statement."""

    def __init__(self, engine):
        self.engine = engine
        self._turn = threading.Condition()
        self._gathering: _Group | None = None  # the group the next request joins
        self._writing = False
        self._statements: dict[int, DriverStatement] = {}  # by rows in the statement

    def write(self, node_id: str, nonce: str, seen_at: datetime,
              connection: Connection | None = None) -> bool:
        """Commit the nonce; False: it was there already (a replay, or a copy that raced).

        ``connection``: the caller's, holding no transaction, for the group if this request
        writes it (one checkout per request instead of two); else one is checked out.
        """
        with self._turn:
            group = self._gathering
            if group is None:
                group = self._gathering = _Group()
            if (node_id, nonce) in group.keys:
                return False  # a copy of a request already in the group: one of them wins
            group.keys.add((node_id, nonce))
            group.rows.append({"node_id": node_id, "nonce": nonce, "seen_at": seen_at})
            while group.written is None and group.error is None:
                if not self._writing and self._gathering is group:
                    self._writing, self._gathering = True, None
                    break  # this request writes the group
                self._turn.wait()
        if group.written is None and group.error is None:
            try:
                if connection is None:
                    with self.engine.connect() as own:
                        group.written = self._write(group.rows, own)
                else:
                    group.written = self._write(group.rows, connection)
            except BaseException as exc:  # every request of the group learns of it
                group.error = exc
            with self._turn:
                self._writing = False
                self._turn.notify_all()
        if group.error is not None:
            raise group.error
        return (node_id, nonce) in cast(set, group.written)

    def _write(self, rows: list[dict], connection: Connection) -> set[tuple[str, str]]:
        written: set[tuple[str, str]] = set()
        for start in range(0, len(rows), MAX_ROWS):
            chunk = rows[start:start + MAX_ROWS]
            parameters = {f"{name}_{i}": row[name]
                          for i, row in enumerate(chunk) for name in _COLUMNS}
            # On the driver's cursor, alone: it takes the write turn and commits itself
            # (parent/driver_sql.py, parent/write_queue.py).
            returned = self._driver(len(chunk)).all(connection, parameters)
            written.update((row.node_id, row.nonce) for row in returned)
        return written

    def _driver(self, count: int) -> DriverStatement:
        statement = self._statements.get(count)
        if statement is None:
            statement = self._statements.setdefault(count, DriverStatement(
                _statement(count), self.engine.dialect, "WrittenNonce",
                execution_options={write_queue.ALONE: True}))
        return statement


@functools.lru_cache(maxsize=MAX_ROWS)
def _statement(count: int) -> TextualSelect:
    """``INSERT ... VALUES`` ``count`` rows ``ON CONFLICT DO NOTHING RETURNING`` the keys.

    Text, one per group size: SQLAlchemy does not cache the compiled form of a dialect's
    ``insert().on_conflict_do_nothing()``, and compiling it took a third of a signed
    heartbeat's time. SQLite (3.35 and later) and PostgreSQL both take this statement.
    """
    values = ", ".join("(" + ", ".join(f":{name}_{i}" for name in _COLUMNS) + ")"
                       for i in range(count))
    return text(
        f"INSERT INTO {_NONCES.name} ({', '.join(_COLUMNS)}) VALUES {values} "
        f"ON CONFLICT DO NOTHING RETURNING {_COLUMNS[0]}, {_COLUMNS[1]}"
    ).bindparams(*(bindparam(f"seen_at_{i}", type_=_NONCES.c.seen_at.type)
                   for i in range(count))).columns(_NONCES.c.node_id, _NONCES.c.nonce)


def nonce_writer(app) -> NonceWriter:
    """The app's writer (one per process: each worker gathers its own requests)."""
    held = app.extensions.get("werss.nonce_writer")
    if held is None:
        from .extensions import db

        with app.app_context():
            held = app.extensions.setdefault("werss.nonce_writer", NonceWriter(db.engine))
    return held
