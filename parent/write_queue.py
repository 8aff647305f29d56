"""A request reads without a transaction, and opens its write transaction at its first write.

**Reads take no lock and open no transaction.** Each read before a request's first write is
its own statement on the newest committed data, as every statement of a READ COMMITTED
transaction on PostgreSQL is (the semantics every service is written for). Just before the
first statement that may write (anything but a plain ``SELECT``), the connection opens its
transaction (``BEGIN IMMEDIATE`` on SQLite, ``BEGIN`` on PostgreSQL); from then on until
its COMMIT or ROLLBACK it is one transaction, as before. A ``SELECT`` that takes something
until COMMIT (``FOR UPDATE``/``FOR SHARE`` row locks, ``pg_advisory_xact_lock``) counts as
a write, and so does a ``with_for_update()`` select on SQLite, which does not render it: a
claim reads the rows it takes inside its write transaction on both backends. So a plain heartbeat or an unchanged pull, which turn out to write nothing, never
queue behind SQLite's database-wide write lock, and on PostgreSQL cost one round trip
instead of three (BEGIN, the read, COMMIT). A request whose only write is one statement
left for its commit (a signed request's nonce: ``unit_of_work.insert_at_commit``) runs it
with the ``ALONE`` option: it takes the write turn but opens no transaction, and commits
itself (one round trip instead of three).

On SQLite (pysqlite's own transaction handling off, ``_tune_engine``) a read transaction is
never upgraded into a write one, so a writer cannot meet ``SQLITE_BUSY_SNAPSHOT`` (which the
busy handler does not retry) — unless a read's cursor is still open when the write begins,
which the ORM (it buffers its rows) and our services never leave.

**SQLite writers queue on a lock file.** SQLite's own wait for its lock is a busy handler
that sleeps in growing steps up to 100 ms: a writer that has waited a while looks again
only every 100 ms, so while a big import hands the lock from chunk to chunk, and fresh
heartbeats keep arriving, the oldest waiters lose nearly every race (heartbeats waited
6–30 s behind imports whose chunks held the lock under 0.7 s). Here a writer first takes
an exclusive ``flock`` on ``<database>.write-lock``: a waiter checks every millisecond or
so, and the lock is released by the kernel if its process dies. The SQLite lock is then
free by the time it asks, so the busy timeout remains only for writers outside this parent
(the sqlite3 shell).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import re
import time
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

_FD = "werss_write_lock_fd"
_HELD = "werss_write_lock_held"
# Checking more often than this costs CPU for little gain: a commit takes ~1 ms.
_MAX_STEP = 0.002
BEGIN_WRITE = "BEGIN IMMEDIATE"  # SQLite's: a write transaction takes the lock up front
# Execution option: this write is the transaction's only statement; it takes the write turn
# but opens no transaction (it commits itself, and the COMMIT that follows has nothing to end).
ALONE = "werss_write_alone"
# A SELECT that holds something until COMMIT must run inside the transaction.
_HOLDS_UNTIL_COMMIT = re.compile(
    r"\bFOR\s+(?:UPDATE|SHARE|NO\s+KEY\s+UPDATE|KEY\s+SHARE)\b|pg_advisory", re.IGNORECASE)


class WriteLockTimeout(Exception):
    """The parent's other writers held the write lock for longer than the timeout."""


@functools.lru_cache(maxsize=4096)  # the same few compiled statements, request after request
def reads_only(statement: str) -> bool:
    """Whether a statement may run outside a transaction: a SELECT that takes no lock."""
    return statement.lstrip()[:6].upper() == "SELECT" \
        and _HOLDS_UNTIL_COMMIT.search(statement) is None


def _takes_rows(context: Any) -> bool:
    """Whether the statement is a SELECT ... FOR UPDATE, even where it is not rendered.

    SQLite has no FOR UPDATE: there, a claim's read of the rows it is about to take must
    run in its write transaction (after its turn), or a concurrent claimer reads the same
    rows and one of them finds nothing left to take.
    """
    compiled = getattr(context, "compiled", None)
    return getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is not None


def _alone(context: Any) -> bool:
    """Whether the statement commits itself: run with ``ALONE``, or on the driver's cursor
    (parent/driver_sql.py, announced with no execution context), which the node lane does
    only on a connection that holds no transaction."""
    return context is None or bool(context.execution_options.get(ALONE))


def sqlite_in_transaction(dbapi_connection: Any) -> bool:
    return dbapi_connection.in_transaction


def psycopg_in_transaction(dbapi_connection: Any) -> bool:
    from psycopg.pq import TransactionStatus

    return dbapi_connection.info.transaction_status != TransactionStatus.IDLE


def ends_a_transaction(connection: Connection) -> bool:
    """Whether committing ``connection`` now ends a transaction open in the database."""
    dbapi_connection = connection.connection.dbapi_connection
    if connection.dialect.name == "sqlite":
        return sqlite_in_transaction(dbapi_connection)
    if connection.dialect.driver == "psycopg":
        return psycopg_in_transaction(dbapi_connection)
    return True


class _Queue:
    def __init__(self, lock_path: str | None, timeout: float, begin: str | None,
                 in_transaction: Callable[[Any], bool]):
        self.lock_path = lock_path
        self.timeout = timeout
        self.begin = begin
        self.in_transaction = in_transaction

    def enter(self, connection: Connection, begin: bool = True) -> None:
        """Take this connection's write turn and open its write transaction, once."""
        fairy = connection.connection
        info = fairy.info
        if self.lock_path is not None and not info.get(_HELD):
            fd = info.get(_FD)
            if fd is None:
                fd = info[_FD] = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _acquire(fd, self.timeout)
            except WriteLockTimeout:
                raise OperationalError(BEGIN_WRITE, {}, WriteLockTimeout(
                    f"database is locked (other writers held it over {self.timeout:.0f} s)"),
                ) from None
            info[_HELD] = True
        dbapi_connection = fairy.dbapi_connection
        if begin and self.begin is not None and dbapi_connection is not None \
                and not self.in_transaction(dbapi_connection):
            try:
                dbapi_connection.execute(self.begin)
            except Exception as exc:  # SQLite: a writer outside this parent held on
                if not isinstance(exc, connection.dialect.loaded_dbapi.OperationalError):
                    raise
                raise OperationalError(self.begin, {}, exc) from None


_QUEUES: weakref.WeakKeyDictionary[Engine, _Queue] = weakref.WeakKeyDictionary()


def install(engine: Engine, database_path: str | None, timeout: float,
            begin: str | None = None,
            in_transaction: Callable[[Any], bool] = sqlite_in_transaction) -> None:
    """Make each transaction on ``engine`` wait its turn, and begin, before its first write.

    ``database_path``: whose ``.write-lock`` file holds the turn (None: no lock file, for an
    in-memory database or PostgreSQL). ``begin``: the statement that opens the transaction
    then, on a connection whose driver does not begin transactions itself (SQLite with
    pysqlite's handling off, PostgreSQL in autocommit); ``in_transaction`` tells whether one
    is open.
    """
    queue = _QUEUES[engine] = _Queue(
        f"{database_path}.write-lock" if database_path else None, timeout, begin,
        in_transaction)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_write(connection, _cursor, statement, _parameters, context, _executemany):
        if not reads_only(statement) or _takes_rows(context):
            queue.enter(connection, begin=not _alone(context))

    @event.listens_for(engine, "after_cursor_execute")
    def _after_write(connection, _cursor, statement, _parameters, context, _executemany):
        if _alone(context) and not reads_only(statement):
            _release(connection.connection.info)  # it committed itself: the turn is over

    @event.listens_for(engine, "commit")
    def _on_commit(connection):
        # Fired just before the COMMIT itself: the next writer, let in now, finds SQLite's
        # lock free within the commit's millisecond (its busy handler's first step).
        _release(connection.connection.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection):
        # An invalidated connection (the server dropped it) has no DBAPI connection to ask;
        # the pool's close of it below lets go of the turn.
        if not connection.invalidated:
            _release(connection.connection.info)

    # A connection returned or closed without either (an error mid-transaction) lets go too.
    @event.listens_for(engine.pool, "checkin")
    def _on_checkin(_dbapi_connection, record):
        _release(record.info)

    @event.listens_for(engine.pool, "close")
    def _on_close(_dbapi_connection, record):
        _release(record.info)
        fd = record.info.pop(_FD, None)
        if fd is not None:
            os.close(fd)


def begin_write(connection: Connection) -> None:
    """Take the write turn now, before any write (no-op where no queue is installed).

    For a request that must wait for a concurrent writer before it even reads (a retry of
    an idempotent request still running elsewhere).
    """
    queue = _QUEUES.get(connection.engine)
    if queue is not None:
        queue.enter(connection)


def _release(info: dict) -> None:
    if info.get(_HELD):
        info[_HELD] = False
        fcntl.flock(info[_FD], fcntl.LOCK_UN)


def _acquire(fd: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    step = 0.0002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            raise WriteLockTimeout()
        time.sleep(step)
        step = min(_MAX_STEP, step * 2)
