"""The child's local cache: SQLite (WAL) with a versioned schema.

Holds feeds, tasks, pull cursors and ETags, articles already seen, HTTP validators of
sources, the durable outbox of writes to the parent, and the leases in hand.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA_VERSION = 2
# What the child keeps of a feed: enough to name it, route it and fetch it. Covers and
# intros (the bulk of a WeChat feed's bytes) are sent again with every lease that needs them.
FEED_FIELDS = ("id", "faker_id", "mp_name", "status", "source_type", "source_url", "labels",
               "updated_at")
_MIGRATIONS = {
    1: """
    CREATE TABLE feeds (id TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE tasks (id TEXT PRIMARY KEY, data TEXT NOT NULL);
    CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE seen_articles (
        feed_id TEXT NOT NULL, article_id TEXT NOT NULL, seen_at REAL NOT NULL,
        PRIMARY KEY (feed_id, article_id));
    CREATE TABLE http_validators (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL, method TEXT NOT NULL, route TEXT NOT NULL, body TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE, created_at REAL NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        state TEXT NOT NULL DEFAULT 'pending');
    CREATE TABLE leases (lease_id TEXT PRIMARY KEY, data TEXT NOT NULL, started_at REAL NOT NULL);
    """,
    # A paged full pull marks each row it writes; rows left unmarked at its end are gone.
    2: """
    ALTER TABLE feeds ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
    """,
}


def _prepare_private_file(path: Path) -> None:
    """Create the data directory 0700 and the cache 0600: it holds webhook tokens and cookies.

    Files left 0644 by an older version are tightened; an existing directory keeps its mode.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        try:
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)
        except (FileNotFoundError, PermissionError):
            pass


class LocalCache:
    """Thread-safe access to the cache database (one connection, one lock)."""

    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / "child-cache.db"
        _prepare_private_file(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # the outbox must survive power loss
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer werss-child (schema {version})")
            for target in range(version + 1, SCHEMA_VERSION + 1):
                # executescript() commits first, so the transaction lives inside the script.
                script = (f"BEGIN IMMEDIATE;\n{_MIGRATIONS[target]}\n"
                          f"PRAGMA user_version = {target};\nCOMMIT;")
                try:
                    self._db.executescript(script)
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    def _write(self, statements: Iterable[tuple[str, tuple]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- meta (cursors, etags, last contact) -------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_meta(self, name: str, value: str | None) -> None:
        self._write([("INSERT INTO meta (name, value) VALUES (?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))])

    # -- feeds and tasks ---------------------------------------------------------------------
    def next_generation(self, table: str) -> int:
        """The mark a new full pull of ``table`` gives the rows it writes."""
        assert table in ("feeds", "tasks")
        return int(self.get_meta(f"{table}.generation") or 0) + 1

    def write_page(self, table: str, items: list[dict], generation: int) -> None:
        """Write one page of a full pull in one transaction."""
        assert table in ("feeds", "tasks")
        self._write([(f"INSERT INTO {table} (id, data, generation) VALUES (?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET data = excluded.data, "
                      "generation = excluded.generation",
                      (str(item["id"]), _encode(table, item), generation)) for item in items])

    def finish_full_pull(self, table: str, generation: int, etag: str | None,
                         cursor: str | None) -> None:
        """Drop what the finished full pull did not write; then its ETag and cursor count."""
        assert table in ("feeds", "tasks")
        statements = [(f"DELETE FROM {table} WHERE generation <> ?", (generation,)),
                      ("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) "
                       "DO UPDATE SET value = excluded.value",
                       (f"{table}.generation", str(generation)))]
        statements += _meta_updates(table, etag, cursor)
        self._write(statements)

    def replace_all(self, table: str, items: list[dict], etag: str | None,
                    cursor: str | None) -> None:
        """A full pull that arrived as one list (a parent that does not page)."""
        generation = self.next_generation(table)
        self.write_page(table, items, generation)
        self.finish_full_pull(table, generation, etag, cursor)

    def apply_changes(self, table: str, items: list[dict], deleted: list[str],
                      cursor: str, etag: str | None = None) -> None:
        assert table in ("feeds", "tasks")
        statements: list[tuple[str, tuple[str, ...]]] = [(f"INSERT INTO {table} (id, data) VALUES (?, ?) ON CONFLICT(id) "
                       "DO UPDATE SET data = excluded.data",
                       (str(item["id"]), _encode(table, item))) for item in items]
        statements += [(f"DELETE FROM {table} WHERE id = ?", (str(i),)) for i in deleted]
        statements += _meta_updates(table, etag, cursor)
        self._write(statements)

    def count(self, table: str) -> int:
        assert table in ("feeds", "tasks")
        return self._query(f"SELECT count(*) FROM {table}")[0][0]

    def one(self, table: str, item_id: str) -> dict | None:
        assert table in ("feeds", "tasks")
        rows = self._query(f"SELECT data FROM {table} WHERE id = ?", (str(item_id),))
        return json.loads(rows[0][0]) if rows else None

    def all(self, table: str) -> list[dict]:
        assert table in ("feeds", "tasks")
        return [json.loads(row[0]) for row in self._query(f"SELECT data FROM {table} ORDER BY id")]

    # -- articles already collected (the WeChat collector's stop-at-a-seen-page rule) ---------
    def unseen(self, feed_id: str, article_ids: list[str]) -> set[str]:
        if not article_ids:
            return set()
        seen: set[str] = set()
        for start in range(0, len(article_ids), 500):
            chunk = article_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            seen.update(row[0] for row in self._query(
                f"SELECT article_id FROM seen_articles WHERE feed_id = ? AND article_id IN ({marks})",
                (feed_id, *chunk)))
        return set(article_ids) - seen

    def mark_seen(self, feed_id: str, article_ids: Iterable[str]) -> None:
        now = time.time()
        self._write([("INSERT OR IGNORE INTO seen_articles (feed_id, article_id, seen_at) "
                      "VALUES (?, ?, ?)", (feed_id, article_id, now)) for article_id in article_ids])

    # -- HTTP validators of sources ----------------------------------------------------------
    def validators(self, url: str) -> tuple[str | None, str | None]:
        rows = self._query("SELECT etag, last_modified FROM http_validators WHERE url = ?", (url,))
        return rows[0] if rows else (None, None)

    def set_validators(self, url: str, etag: str | None, last_modified: str | None) -> None:
        self._write([("INSERT INTO http_validators (url, etag, last_modified) VALUES (?, ?, ?) "
                      "ON CONFLICT(url) DO UPDATE SET etag = excluded.etag, "
                      "last_modified = excluded.last_modified", (url, etag, last_modified))])

    # -- outbox ------------------------------------------------------------------------------
    def enqueue(self, kind: str, method: str, route: str, body: Any, key: str) -> None:
        self._write([("INSERT OR IGNORE INTO outbox (kind, method, route, body, idempotency_key, "
                      "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                      (kind, method, route, json.dumps(body, ensure_ascii=False), key, time.time()))])

    def pending_outbox(self, limit: int = 50) -> list[dict]:
        rows = self._query("SELECT id, kind, method, route, body, idempotency_key, attempts "
                           "FROM outbox WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,))
        return [{"id": r[0], "kind": r[1], "method": r[2], "route": r[3], "body": json.loads(r[4]),
                 "key": r[5], "attempts": r[6]} for r in rows]

    def outbox_done(self, entry_id: int) -> None:
        self._write([("DELETE FROM outbox WHERE id = ?", (entry_id,))])

    def outbox_retry_later(self, entry_id: int, error: str) -> None:
        self._write([("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                      (error[:1000], entry_id))])

    def outbox_rewrite(self, entry_id: int, route: str, body: Any, key: str) -> None:
        self._write([("UPDATE outbox SET route = ?, body = ?, idempotency_key = ? WHERE id = ?",
                      (route, json.dumps(body, ensure_ascii=False), key, entry_id))])

    def outbox_reject(self, entry_id: int, error: str) -> None:
        self._write([("UPDATE outbox SET state = 'rejected', last_error = ? WHERE id = ?",
                      (error[:1000], entry_id))])

    def outbox_depth(self) -> dict[str, int]:
        return dict(self._query("SELECT state, count(*) FROM outbox GROUP BY state"))

    # -- leases in hand ----------------------------------------------------------------------
    def hold_lease(self, lease: dict) -> None:
        self._write([("INSERT OR REPLACE INTO leases (lease_id, data, started_at) VALUES (?, ?, ?)",
                      (lease["lease_id"], json.dumps(lease, ensure_ascii=False), time.time()))])

    def drop_lease(self, lease_id: str) -> None:
        self._write([("DELETE FROM leases WHERE lease_id = ?", (lease_id,))])

    def held_leases(self) -> list[dict]:
        return [json.loads(r[0]) for r in self._query("SELECT data FROM leases ORDER BY started_at")]



class TaskScopedValidators:
    """The cache's HTTP validators, kept per task: a source that answered one task's
    conditional GET must still give another task (with its own webhook) its articles."""

    def __init__(self, cache: LocalCache, task_id: str):
        self._cache = cache
        self._prefix = f"task:{task_id} "

    def validators(self, url: str):
        return self._cache.validators(self._prefix + url)

    def set_validators(self, url: str, etag, last_modified) -> None:
        self._cache.set_validators(self._prefix + url, etag, last_modified)

    def forget(self, url: str) -> None:
        """Make the next collection of ``url`` a full GET (its articles are needed again)."""
        self.set_validators(url, None, None)

def _encode(table: str, item: dict) -> str:
    if table == "feeds":
        item = {name: item[name] for name in FEED_FIELDS if name in item}
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def _meta_updates(table: str, etag: str | None, cursor: str | None) -> list[tuple[str, tuple]]:
    updates = []
    for name, value in ((f"{table}.etag", etag), (f"{table}.cursor", cursor)):
        if value is not None:
            updates.append(("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) "
                            "DO UPDATE SET value = excluded.value", (name, value)))
    return updates
