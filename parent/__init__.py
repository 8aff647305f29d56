"""The WeRSS Cascade parent: a Flask app that owns the database and hands out work."""

from __future__ import annotations

import time
from pathlib import Path

from flask import Flask
from flask.sessions import SessionInterface
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from .config import ConfigError, Settings, load_settings

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")

__all__ = ["ConfigError", "create_app", "MIGRATIONS_DIR"]


def create_app(config: dict | None = None, *, clock=None, environ=None) -> Flask:
    """Build the parent app from config.yaml, the environment and ``config`` overrides.

    :raises ConfigError: the configuration is invalid or has no secret key.
    """
    from . import api, clock as clock_module, crypto, errors, logs, metrics, node_lane, unit_of_work
    from .extensions import db, migrate

    settings = load_settings(config, environ)
    if not settings.secret_key:
        raise ConfigError(
            "no secret key: set WERSS_SECRET_KEY, or secret_key / secret_key_file in the "
            "WERSS_CONFIG file (make up generates data/secret_key)"
        )
    app = Flask(__name__, static_folder=None)
    # Nothing keeps state in Flask's cookie session (admins send a Bearer token, nodes
    # sign), so no request pays for opening one: its serializer and cookie parse.
    app.session_interface = NoCookieSession()
    # '//' would otherwise be answered with werkzeug's own HTML redirect, not the envelope.
    app.url_map.merge_slashes = False
    database_url = _absolute_sqlite_url(settings.database_url)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        MAX_CONTENT_LENGTH=settings.cascade.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.cascade.max_body_bytes,
        WERSS_SETTINGS=settings,
    )
    # In front of the app, behind ProxyFix: steady heartbeats skip Flask's request cycle.
    node_lane.install(app)
    if settings.cascade.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind N reverse proxies, take the client address from X-Forwarded-For so the
        # login throttle counts real clients, not the proxy.
        n = settings.cascade.trusted_proxies
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]  # Flask's documented wrapping
            app.wsgi_app, x_for=n, x_proto=n, x_host=n)
    # Flask's DefaultJSONProvider; app.json is typed as the JSONProvider interface.
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.json.sort_keys = False  # type: ignore[attr-defined]
    _prepare_sqlite_directory(database_url)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR)
    with app.app_context():
        _tune_engine(db.engine)
    clock_module.init_app(app, clock)
    crypto.init_app(app, settings.secret_key)
    errors.init_app(app)
    metrics.init_app(app)
    logs.init_app(app)
    api.init_app(app)
    unit_of_work.init_app(app)
    return app


class NoCookieSession(SessionInterface):
    """Give every request Flask's null session: writing to it raises, reading finds nothing."""

    def open_session(self, app, request):
        return None  # Flask then makes the null session

    def save_session(self, app, session, response):
        return None


SQLITE_BUSY_SECONDS = 30  # a writer waits this long for SQLite's lock, then 503


# A pooled PostgreSQL connection idle this long is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 10.0
# ... and none is kept longer than this (server or proxy limits on a session's age).
POOL_RECYCLE_SECONDS = 1800


def _engine_options(settings: Settings) -> dict:
    if settings.database_url.startswith("sqlite"):
        return {"connect_args": {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}}
    # No pool_pre_ping: it costs a round trip on every checkout, i.e. every request. The
    # idle ping of _guard_idle_connections covers what a ping finds (a restart, an idle
    # timeout) for connections that sat unused; a connection lost while in use fails its
    # request with a 503 and Retry-After, and SQLAlchemy then replaces the whole pool.
    options: dict = {"pool_size": 5, "max_overflow": 10, "pool_recycle": POOL_RECYCLE_SECONDS}
    if make_url(settings.database_url).get_driver_name() == "psycopg":
        # The driver begins nothing: a transaction opens at a request's first write
        # (parent/write_queue.py), so a request that only reads costs no BEGIN and COMMIT.
        options["isolation_level"] = "AUTOCOMMIT"
    return options


def _absolute_sqlite_url(database_url: str) -> str:
    """Resolve a relative SQLite path against the working directory, as documented.

    Flask-SQLAlchemy would otherwise put it under the app's instance folder.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return database_url
    if url.database.startswith("file:"):
        return database_url
    return url.set(database=str(Path(url.database).resolve())).render_as_string(
        hide_password=False)


def _prepare_sqlite_directory(database_url: str) -> None:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:"):
        from .files import prepare_private_sqlite_file

        prepare_private_sqlite_file(url.database)


def _guard_idle_connections(engine) -> None:
    """Ping a pooled connection before reuse only when it sat idle for a while.

    A busy pool hands connections out again within milliseconds, so it pings nothing; one
    that waited longer than PING_AFTER_IDLE_SECONDS (the server may have restarted or timed
    it out since) is pinged, and a dead one is replaced before the request sees it.
    """

    @event.listens_for(engine.pool, "checkin")
    def _note_idle(_dbapi_connection, record):
        record.info["werss_idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy):
        since = record.info.pop("werss_idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # noqa: BLE001 - any failure: the pool retries with a new one
            raise DisconnectionError(f"idle connection is gone: {exc}") from exc


def _tune_engine(engine) -> None:
    from . import write_queue

    if engine.dialect.name != "sqlite":
        _guard_idle_connections(engine)
        if engine.dialect.driver == "psycopg":
            write_queue.install(engine, None, timeout=SQLITE_BUSY_SECONDS, begin="BEGIN",
                                in_transaction=write_queue.psycopg_in_transaction)
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Off with pysqlite's own (deferred) BEGIN: the write queue below begins each write
        # transaction itself, and reads before it run on their own, taking no lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    database = engine.url.database or ""
    on_file = bool(database) and database != ":memory:" and not database.startswith("file:")
    # A write transaction takes the write lock up front (BEGIN IMMEDIATE): a deferred one
    # that reads, then writes, fails at once with SQLITE_BUSY under WAL instead of waiting
    # its turn. It begins just before the request's first write, not with its first read.
    write_queue.install(engine, database if on_file else None, timeout=SQLITE_BUSY_SECONDS,
                        begin=write_queue.BEGIN_WRITE)
