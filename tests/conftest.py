"""Fixtures chain: db_url -> app -> client -> admin -> node -> node_caller.

Every database-backed test runs on SQLite, and also on PostgreSQL when
WERSS_TEST_DATABASE_URL is set (CI sets it; see .ci/run).
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from parent import create_app
from parent.extensions import db
from tests.helpers import (
    ADMIN_PASSWORD, ADMIN_USERNAME, SECRET_KEY, FakeClock, NodeCaller, NodeCredentials,
)

PG_ENV = "WERSS_TEST_DATABASE_URL"


def backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(PG_ENV) else ["sqlite"]


def pytest_generate_tests(metafunc):
    if "db_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("db_backend", ["sqlite"] if only_sqlite else backends(),
                             scope="session")


def base_config(db_url: str, **cascade) -> dict:
    return {"db": db_url, "secret_key": SECRET_KEY,
            "cascade": {"bcrypt_rounds": 4, **cascade}}


def _migrate(db_url: str) -> None:
    from flask_migrate import upgrade

    app = create_app(base_config(db_url))
    with app.app_context():
        upgrade()
        db.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite database, copied for each test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session, migrated, dropped at the end."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.fail(f"{PG_ENV} is not set but a PostgreSQL test was requested")
    base_url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1)
                        if base.startswith("postgresql://") else base)
    name = f"werss_test_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = base_url.set(database=name).render_as_string(hide_password=False)
    _migrate(url)
    yield url
    with admin_engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin_engine.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        tables = [row[0] for row in connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"))]
        connection.execute(text(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


def empty_database_url(request, db_backend, directory) -> str:
    """An empty, migrated database of ``db_backend`` (SQLite files go in ``directory``)."""
    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_database")
        _truncate_postgres(url)
        return url
    path = directory / "parent.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(request, db_backend, tmp_path):
    """An empty, migrated database of the backend under test."""
    return empty_database_url(request, db_backend, tmp_path)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def cascade_settings():
    """Override in a test module to change cascade settings."""
    return {}


@pytest.fixture
def app(db_url, clock, cascade_settings):
    application = create_app(base_config(db_url, **cascade_settings), clock=clock,
                             environ={})
    yield application
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


class AdminClient:
    """The test client with an admin's bearer token on every request."""

    def __init__(self, client, token: str):
        self.client = client
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"}

    def open(self, method, path, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.open("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.open("PUT", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.open("DELETE", path, **kwargs)


def make_admin_user(app, username=ADMIN_USERNAME, password=ADMIN_PASSWORD):
    from parent.services import admins

    with app.app_context():
        admins.create_admin(username, password)
        db.session.commit()


@pytest.fixture
def admin(app, client):
    make_admin_user(app)
    response = client.post("/api/v1/auth/login",
                           json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.get_json()
    return AdminClient(client, response.get_json()["data"]["access_token"])


def create_node_with_credentials(admin_client, name="child-1", **fields) -> NodeCredentials:
    response = admin_client.post("/api/v1/cascade/nodes",
                                 json={"name": name, "node_type": 1, **fields})
    assert response.status_code == 201, response.get_json()
    node_id = response.get_json()["data"]["node_id"]
    response = admin_client.post(f"/api/v1/cascade/nodes/{node_id}/credentials")
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return NodeCredentials(node_id, data["api_key"], data["api_secret"])


@pytest.fixture
def node(admin):
    return create_node_with_credentials(admin)


@pytest.fixture
def node_caller(client, node, clock):
    """Signed requests from `node`, timestamped by the app's clock."""
    return NodeCaller(client, node, clock=clock, mode="signed")


@pytest.fixture
def plain_caller(client, node):
    return NodeCaller(client, node, mode="plain")
