"""Big admin writes take turns on SQLite, so node requests keep finding the write lock free.

SQLite has one writer at a time, and its busy handler is not a queue: while several
5,000-feed imports took turns with the lock (and the CPU), heartbeats waited 30 s and got
503. Imports therefore run one at a time across all workers of a parent (a lock file next
to the database), and write in short chunks. PostgreSQL needs neither.
"""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager

from ..extensions import db

_THREADS = threading.Lock()


@contextmanager
def one_big_write_at_a_time():
    """Wait for this parent's other big admin writes (any worker) to finish first."""
    bind = db.session.get_bind()
    database = bind.url.database or ""
    if bind.dialect.name != "sqlite" or database in ("", ":memory:") \
            or database.startswith("file:"):
        yield
        return
    with _THREADS:
        fd = os.open(f"{database}.bulk-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
