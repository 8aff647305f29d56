"""The work generation: a parent-wide counter that moves whenever claimable work appears.

Every transaction that makes work claimable (an allocation becoming pending, a node command
queued) calls ``bump()``; the counter moves when that transaction commits, and not if it
rolls back. Each gunicorn worker watches it (``GenerationWatcher``) and releases the claims
it parks when it moves (parent/gunicorn_worker.py; docs/OPERATIONS.md, "Waiting claims").

The counter is the ``work_generation`` row of ``meta_values`` (no migration). It is written
just before the COMMIT, not where ``bump()`` is called, so the row is locked only for the
commit itself: a claim that requeues expired leases and then materialises a cron run must
not hold it while it waits on another worker's insert of the same run.
"""

from __future__ import annotations

import logging
import re
import select
import sqlite3
import threading
from collections.abc import Callable

from sqlalchemy import BigInteger, Text, cast, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from shared.envelope import WORK_TOKEN_HEADER

from ..extensions import db
from ..models import MetaValue

KEY = "work_generation"
# On every native claim answer of a parking worker: "<generation>.<due UNIX second>".
WORK_TOKEN = WORK_TOKEN_HEADER
_TOKEN = re.compile(r"(\d{1,18})\.(\d{1,12})")
CHANNEL = "werss_work_generation"
POLL_SECONDS = 0.25
# On PostgreSQL a NOTIFY wakes the watcher; the poll only covers a lost notification.
PG_FALLBACK_POLL_SECONDS = 5.0
_PENDING = "werss.work_signal.pending"
_log = logging.getLogger(__name__)


def bump() -> None:
    """Move the work generation when the current transaction commits."""
    session = db.session()
    session.connection()  # begin now: the mark belongs to this transaction only
    session.info[_PENDING] = session.get_transaction()


def current() -> int:
    """The work generation as this transaction sees it (0 before the first bump)."""
    value = db.session.execute(
        db.select(MetaValue.value).where(MetaValue.key == KEY)).scalar()
    return int(value) if value else 0


def token(generation: int, due: int) -> str:
    """The X-Work-Token of a claim answer: nothing changes for this node before ``due``."""
    return f"{generation}.{due}"


def parse_token(value: str | bytes | None) -> tuple[int, int] | None:
    """``(generation, due)`` of a well-formed token, else None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    match = _TOKEN.fullmatch((value or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def _write_bump(session: Session) -> None:
    # A mark left by a transaction that was rolled back is not this one's.
    pending = session.info.pop(_PENDING, None)
    if pending is None or pending is not session.get_transaction():
        return
    table = MetaValue.__table__
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table).values(key=KEY, value="1").on_conflict_do_update(
        index_elements=["key"],
        set_={"value": cast(cast(table.c.value, BigInteger) + 1, Text)})
    session.execute(statement)
    if dialect == "postgresql":
        # Delivered to the listeners when this transaction commits, and only then.
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


# Registered once, at import (when the app is built), never while serving: adding a
# listener while another thread's commit iterates the listeners fails that commit
# ("deque mutated during iteration": three heartbeats answered 500 at the first dispatch of
# a 10,000-child fleet when this was done at the first bump).
event.listen(Session, "before_commit", _write_bump)


class GenerationWatcher:
    """Read the work generation off the request path and report each change.

    SQLite: a read-only connection of its own (no BEGIN IMMEDIATE, no write lock) read every
    ``POLL_SECONDS``. PostgreSQL: LISTEN for ``bump()``'s NOTIFY, with a slow poll behind it.
    ``on_change(generation)`` is called from the watcher's thread.
    """

    def __init__(self, database_url: str, on_change: Callable[[int], None]):
        self.url = make_url(database_url)
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="work-generation", daemon=True)
        self._last: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _report(self, generation: int) -> None:
        if generation != self._last:
            self._last = generation
            self.on_change(generation)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.url.get_backend_name() == "postgresql":
                    self._watch_postgresql()
                else:
                    self._watch_sqlite()
            except Exception:  # noqa: BLE001 - the database may be away a while; keep trying
                _log.warning("work generation: cannot read it; retrying", exc_info=True)
            self._stop.wait(2.0)

    def _watch_sqlite(self) -> None:
        connection = sqlite3.connect(f"file:{self.url.database}?mode=ro", uri=True,
                                     isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.is_set():
                self._report(_read(connection.execute(
                    "SELECT value FROM meta_values WHERE key = ?", (KEY,)).fetchone()))
                self._stop.wait(POLL_SECONDS)
        finally:
            connection.close()

    def _watch_postgresql(self) -> None:
        import psycopg

        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            while not self._stop.is_set():
                self._report(_read(connection.execute(
                    "SELECT value FROM meta_values WHERE key = %s", (KEY,)).fetchone()))
                # Wait for a notification (or the fallback poll), then drain them all.
                select.select([connection.fileno()], [], [], PG_FALLBACK_POLL_SECONDS)
                for _ in connection.notifies(timeout=0):
                    pass


def _read(row) -> int:
    return int(row[0]) if row and row[0] else 0
