"""SQLite writers of one parent take the write lock in turn, through a lock file.

Every transaction on SQLite starts with ``BEGIN IMMEDIATE`` (see ``_tune_engine``), so every
request is a writer. SQLite's own wait for its lock is a busy handler that sleeps in growing
steps up to 100 ms: a writer that has waited a while looks again only every 100 ms, so while
a big import hands the lock from chunk to chunk, and fresh heartbeats keep arriving, the
oldest waiters lose nearly every race (heartbeats waited 6–30 s behind imports whose
chunks held the lock under 0.7 s). Here each connection first takes an exclusive ``flock``
on ``<database>.write-lock``: a waiter checks every millisecond or so, and the lock is
released by the kernel if its process dies. The SQLite lock is then free by the time it
asks, so the busy timeout remains only for writers outside this parent (the sqlite3 shell).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time

from sqlalchemy import event
from sqlalchemy.exc import OperationalError

_FD = "werss_write_lock_fd"
_HELD = "werss_write_lock_held"
# Checking more often than this costs CPU for little gain: a commit takes ~1 ms.
_MAX_STEP = 0.002


class WriteLockTimeout(Exception):
    """The parent's other writers held the write lock for longer than the timeout."""


def install(engine, database_path: str, timeout: float) -> None:
    """Make every transaction on ``engine`` wait its turn on ``database_path``'s lock file."""
    lock_path = f"{database_path}.write-lock"

    @event.listens_for(engine, "begin")
    def _take(connection):
        info = connection.connection.info
        if info.get(_HELD):
            return
        fd = info.get(_FD)
        if fd is None:
            fd = info[_FD] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _acquire(fd, timeout)
        except WriteLockTimeout:
            raise OperationalError("BEGIN IMMEDIATE", {}, WriteLockTimeout(
                f"database is locked (other writers held it over {timeout:.0f} s)")) from None
        info[_HELD] = True

    @event.listens_for(engine, "commit")
    def _on_commit(connection):
        # Fired just before the COMMIT itself: the next writer, let in now, finds SQLite's
        # lock free within the commit's millisecond (its busy handler's first step).
        _release(connection.connection.info)

    @event.listens_for(engine, "rollback")
    def _on_rollback(connection):
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
