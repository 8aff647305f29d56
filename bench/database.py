"""The benchmark's own database: a temp SQLite file or a throwaway PostgreSQL database.

It is migrated with ``werss-parent db upgrade``, then given nodes with credentials and
feeds in bulk through the parent's own services and models in an app context.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .servers import REPO_ROOT

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CLI_TIMEOUT = 120


class BenchSetupError(RuntimeError):
    """Preparing the database or the node failed; the message says what to do."""


@dataclass
class NodeCredentials:
    node_id: str
    api_key: str
    api_secret: str


def _loopback_only(url) -> None:
    host = url.host or "localhost"
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("/"):
        raise BenchSetupError(f"refusing to benchmark against {host!r}: use a loopback server")


class BenchDatabase:
    """Create, describe and drop the database one benchmark run uses."""

    def __init__(self, pg_url: str | None, workdir: Path):
        from parent.config import normalize_database_url

        self.workdir = workdir
        self.backend = "postgresql" if pg_url else "sqlite"
        self._pg_admin_url = normalize_database_url(pg_url) if pg_url else None
        self._pg_name: str | None = None
        self.url: str | None = None

    def create(self) -> str:
        """Create the empty database and return its SQLAlchemy URL."""
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'parent.db'}"
            return self.url
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        admin_url = make_url(self._pg_admin_url)
        _loopback_only(admin_url)
        name = f"werss_bench_{secrets.token_hex(5)}"
        engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
        except SQLAlchemyError as exc:
            raise BenchSetupError(
                f"cannot create database {name} on {admin_url.render_as_string()}: "
                f"{str(exc.orig or exc).strip()[:300]}. Is PostgreSQL running, and may this "
                "user CREATE DATABASE?"
            ) from None
        finally:
            engine.dispose()
        self._pg_name = name
        self.url = admin_url.set(database=name).render_as_string(hide_password=False)
        return self.url

    def create_migrated(self, secret_key: str, settings: dict | None = None) -> tuple[str, dict]:
        """Create the database and migrate it: (its URL, the parent's environment).

        The parent keeps its Prometheus files in ``<workdir>/prometheus``; ``settings``
        are more WERSS_* variables for it.

        :raises BenchSetupError: the database could not be created or migrated.
        """
        url = self.create()
        metrics_dir = self.workdir / "prometheus"
        metrics_dir.mkdir()
        env = parent_env(url, secret_key,
                         {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **(settings or {})})
        run_parent_cli(["db", "upgrade"], env)
        return url, env

    def describe(self) -> str:
        """The URL without a password, for reports."""
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True) if self.url else "-"

    def drop(self) -> None:
        """Drop the PostgreSQL database (SQLite lives in the work directory)."""
        if not self._pg_name:
            return
        from sqlalchemy import create_engine, text

        engine = create_engine(self._pg_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))
        except Exception as exc:  # noqa: BLE001 - report, never mask the run's own error
            print(f"warning: could not drop database {self._pg_name}: {exc}", file=sys.stderr)
        finally:
            engine.dispose()
        self._pg_name = None


def parent_env(database_url: str, secret_key: str, extra: dict | None = None) -> dict:
    """The environment the parent CLI and server run with (no user config leaks in)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("WERSS_") and key not in ("DATABASE_URL", "PORT")}
    env.update({
        "WERSS_DATABASE_URL": database_url,
        "WERSS_SECRET_KEY": secret_key,
        # A known first-admin password stops `serve` from printing a generated one.
        "WERSS_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


def run_parent_cli(args: list[str], env: dict) -> str:
    """Run ``werss-parent <args>`` and return its stdout.

    :raises BenchSetupError: it failed; the message carries its output.
    """
    argv = [sys.executable, "-m", "parent", *args]
    try:
        completed = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                   timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchSetupError(
            f"`werss-parent {' '.join(args)}` took over {CLI_TIMEOUT} s") from None
    if completed.returncode != 0:
        output = (completed.stdout + completed.stderr).strip()[-2000:]
        raise BenchSetupError(
            f"`werss-parent {' '.join(args)}` failed with status {completed.returncode}:\n{output}")
    return completed.stdout


def create_nodes(database_url: str, secret_key: str, count: int, prefix: str = "bench-node",
                 capacity: int | None = None) -> list[NodeCredentials]:
    """Register ``count`` child nodes with credentials, as `create-node --credentials` does.

    ``capacity`` replaces the default lease capacity (what an admin's PUT would set).
    """
    from parent import create_app
    from parent.extensions import db
    from parent.services import nodes

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    created = []
    with app.app_context():
        for index in range(count):
            node = nodes.create_node({"name": f"{prefix}-{index + 1}", "node_type": 1,
                                      "description": "make bench"})
            if capacity is not None:
                node.capacity = capacity
            _, api_key, api_secret = nodes.issue_credentials(node.id)
            created.append(NodeCredentials(node.id, api_key, api_secret))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return created


def _feed_rows(count: int, moment: datetime) -> list[dict]:
    rows = []
    for index in range(count):
        if index % 10 == 9:  # one in ten is an RSS source, as in a mixed deployment
            url = f"https://blog-{index}.example.org/feed.xml"
            rows.append({
                "id": f"RSS_bench_{index:08d}", "faker_id": None,
                "mp_name": f"Bench blog {index}", "source_type": "rss", "source_url": url,
            })
        else:
            biz = str(3_000_000_000 + index)
            rows.append({
                "id": f"MP_WXS_{biz}",
                "faker_id": base64.b64encode(biz.encode()).decode().rstrip("="),
                "mp_name": f"Bench account {index}", "source_type": "wechat", "source_url": None,
            })
    for row in rows:
        row.update({
            "mp_cover": f"https://mmbiz.qpic.cn/mmbiz_png/bench{row['id'][-8:]}/0?wx_fmt=png",
            "mp_intro": "A benchmark account that publishes a few articles a day about things.",
            "status": 1, "sync_time": 0, "update_time": 0, "labels": [],
            "created_at": moment, "updated_at": moment,
        })
    return rows


def seed_feeds(database_url: str, secret_key: str, count: int) -> float:
    """Bulk-insert ``count`` feeds (unique ids) plus their change-log entries; return seconds."""
    from parent import create_app
    from parent.extensions import db
    from parent.models import Feed
    from parent.models.replication import ENTITY_FEED
    from parent.services import replication

    started = time.perf_counter()
    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    with app.app_context():
        rows = _feed_rows(count, datetime.now(timezone.utc))
        for chunk in range(0, len(rows), 2000):
            db.session.execute(db.insert(Feed), rows[chunk:chunk + 2000])
        # The change log is what ETags and incremental pulls are computed from.
        replication.record_upserts(ENTITY_FEED, [row["id"] for row in rows])
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return time.perf_counter() - started


@contextlib.contextmanager
def migrated_database(pg_url: str | None) -> Iterator[tuple[BenchDatabase, str, str]]:
    """A throwaway migrated database for an in-process tool: (it, its URL, a new secret key).

    SQLite in a temp directory, or a new database on ``pg_url``'s PostgreSQL; dropped, and
    the directory removed, after the block.
    """
    workdir = make_workdir()
    database = BenchDatabase(pg_url, workdir)
    try:
        url = database.create()
        secret_key = secrets.token_urlsafe(32)
        run_parent_cli(["db", "upgrade"], parent_env(url, secret_key))
        yield database, url, secret_key
    finally:
        database.drop()
        remove_workdir(workdir)


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="werss-bench-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
