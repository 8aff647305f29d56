"""`werss-parent` as a user runs it: a real process with a real environment."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from parent import create_app
from parent.extensions import db
from tests.helpers import SECRET_KEY, NodeCaller, NodeCredentials, assert_error, free_port
from tests.support.processes import clean_env, werss_parent_executable

CLI_TIMEOUT = 60.0
SECRET_RE = re.compile(r"CS[A-Za-z0-9]{32}")
SCHEMA_TABLES = {"alembic_version", "admins", "nodes", "feeds", "message_tasks", "sync_logs",
                 "task_reports", "used_nonces"}


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run `werss-parent ARGS`; kill its whole process group if it overruns."""
    process = subprocess.Popen(
        [werss_parent_executable(), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"werss-parent {' '.join(args)} still ran after {CLI_TIMEOUT} s:\n"
                    f"{stdout}\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _field(output: str, name: str) -> str:
    values = re.findall(rf"^{name}: (\S+)$", output, flags=re.MULTILINE)
    assert len(values) == 1, output
    return values[0]


@pytest.fixture
def cli(db_url, tmp_path):
    """Run werss-parent against the test database, with no inherited WERSS_* settings."""
    env = clean_env(WERSS_DATABASE_URL=db_url, WERSS_SECRET_KEY=SECRET_KEY,
                    WERSS_CASCADE_BCRYPT_ROUNDS="4")

    def run(*args: str) -> subprocess.CompletedProcess:
        return run_cli(*args, env=env, cwd=tmp_path)

    return run


def _create_node(cli, name: str) -> NodeCredentials:
    result = cli("create-node", "--name", name, "--credentials")
    assert result.returncode == 0, result.stderr
    return NodeCredentials(_field(result.stdout, "node_id"), _field(result.stdout, "api_key"),
                           _field(result.stdout, "api_secret"))


def _heartbeat(client, creds: NodeCredentials, clock, mode: str):
    return NodeCaller(client, creds, clock=clock, mode=mode).post("/heartbeat", json={})


def test_create_node_prints_its_credentials_once(cli, client, clock):
    result = cli("create-node", "--name", "edge-shanghai", "--credentials")

    assert result.returncode == 0, result.stderr
    creds = NodeCredentials(_field(result.stdout, "node_id"), _field(result.stdout, "api_key"),
                            _field(result.stdout, "api_secret"))
    assert re.fullmatch(r"CN[A-Za-z0-9]{32}", creds.api_key)
    assert SECRET_RE.fullmatch(creds.api_secret)
    assert result.stdout.count(creds.api_secret) == 1
    assert creds.api_secret not in result.stderr
    for mode in ("plain", "signed"):
        response = _heartbeat(client, creds, clock, mode)
        assert response.status_code == 200, (mode, response.get_json())


def test_create_node_without_credentials_prints_no_secret(cli):
    result = cli("create-node", "--name", "edge-no-creds")

    assert result.returncode == 0, result.stderr
    assert _field(result.stdout, "node_id")
    assert "api_key" not in result.stdout and not SECRET_RE.search(result.stdout)


def test_list_nodes_shows_every_node_and_never_a_secret(cli):
    with_creds = _create_node(cli, "edge-beijing")
    bare = cli("create-node", "--name", "edge-bare")
    assert bare.returncode == 0, bare.stderr

    result = cli("list-nodes")

    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if with_creds.node_id in line)
    assert "edge-beijing" in row and with_creds.api_key in row and "offline" in row
    assert _field(bare.stdout, "node_id") in result.stdout and "edge-bare" in result.stdout
    assert with_creds.api_secret not in result.stdout + result.stderr
    assert not SECRET_RE.search(result.stdout)


def test_rotate_credentials_prints_a_new_pair_and_the_old_one_stops_working(cli, client, clock):
    old = _create_node(cli, "edge-rotate")
    assert _heartbeat(client, old, clock, "plain").status_code == 200

    result = cli("rotate-credentials", old.node_id)

    assert result.returncode == 0, result.stderr
    new = NodeCredentials(_field(result.stdout, "node_id"), _field(result.stdout, "api_key"),
                          _field(result.stdout, "api_secret"))
    assert new.node_id == old.node_id
    assert (new.api_key, new.api_secret) != (old.api_key, old.api_secret)
    assert SECRET_RE.fullmatch(new.api_secret)
    for mode in ("plain", "signed"):
        assert_error(_heartbeat(client, old, clock, mode), 401, "invalid_credentials")
        response = _heartbeat(client, new, clock, mode)
        assert response.status_code == 200, (mode, response.get_json())


def test_rotate_credentials_of_an_unknown_node_fails_clearly(cli):
    result = cli("rotate-credentials", "00000000-0000-0000-0000-000000000000")

    assert result.returncode != 0
    assert "00000000-0000-0000-0000-000000000000" in result.stderr
    assert not SECRET_RE.search(result.stdout)


def test_create_admin_then_login_works(cli, client):
    result = cli("create-admin", "--username", "ops", "--password", "long enough pw")

    assert result.returncode == 0, result.stderr
    assert "ops" in result.stdout
    response = client.post("/api/v1/auth/login",
                           json={"username": "ops", "password": "long enough pw"})
    assert response.status_code == 200, response.get_json()
    token = response.get_json()["data"]["access_token"]
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.get_json()["data"]["username"] == "ops"
    wrong = client.post("/api/v1/auth/login", json={"username": "ops", "password": "wrong pw!"})
    assert_error(wrong, 401, "invalid_login")


def test_create_admin_again_resets_the_password(cli, client):
    assert cli("create-admin", "--username", "ops", "--password", "first password").returncode == 0

    result = cli("create-admin", "--username", "ops", "--password", "second password")

    assert result.returncode == 0, result.stderr
    assert_error(client.post("/api/v1/auth/login",
                             json={"username": "ops", "password": "first password"}),
                 401, "invalid_login")
    response = client.post("/api/v1/auth/login",
                           json={"username": "ops", "password": "second password"})
    assert response.status_code == 200


def test_create_admin_refuses_a_short_password(cli, client):
    result = cli("create-admin", "--username", "ops", "--password", "short")

    assert result.returncode != 0
    assert "at least" in result.stderr
    response = client.post("/api/v1/auth/login", json={"username": "ops", "password": "short"})
    assert response.status_code == 401


@pytest.mark.parametrize("args", [
    ("serve", "--bind", "127.0.0.1:0"),
    ("db", "upgrade"),
    ("list-nodes",),
    ("create-node", "--name", "edge-1", "--credentials"),
    ("create-admin", "--username", "ops", "--password", "long enough pw"),
    ("rotate-credentials", "00000000-0000-0000-0000-000000000000"),
], ids=lambda args: args[0] if args[0] != "db" else "db-upgrade")
def test_without_a_secret_key_every_command_exits_2_with_one_clear_line(args, tmp_path):
    result = run_cli(*args, env=clean_env(), cwd=tmp_path)

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "secret key" in lines[0].lower() and "WERSS_SECRET_KEY" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "data").exists()


def test_db_upgrade_creates_the_schema_on_a_fresh_sqlite_path(tmp_path):
    path = tmp_path / "fresh" / "parent.db"
    env = clean_env(WERSS_DATABASE_URL=f"sqlite:///{path}", WERSS_SECRET_KEY=SECRET_KEY)

    result = run_cli("db", "upgrade", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert SCHEMA_TABLES <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert run_cli("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
    listed = run_cli("list-nodes", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path):
    env = clean_env(WERSS_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}",
                    WERSS_SECRET_KEY=SECRET_KEY, XDG_RUNTIME_DIR=str(tmp_path),
                    PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    result = run_cli("serve", "--bind", f"127.0.0.1:{free_port()}", "--workers", "1",
                     env=env, cwd=tmp_path)

    assert result.returncode != 0
    assert "werss-parent db upgrade" in result.stderr
    assert "Listening at" not in result.stdout + result.stderr


def test_init_creates_a_private_secret_key_and_shows_the_admin_password_once(tmp_path):
    env = clean_env(WERSS_CASCADE_BCRYPT_ROUNDS="4")

    result = run_cli("init", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret_key = key_file.read_text().strip()
    assert len(secret_key) >= 32
    shown = re.findall(r"password \(shown once\): (\S+)$", result.stdout, flags=re.MULTILINE)
    assert len(shown) == 1, result.stdout
    password = shown[0]
    assert secret_key not in result.stdout + result.stderr

    app = create_app({"db": f"sqlite:///{tmp_path / 'data' / 'parent.db'}",
                      "secret_key": secret_key}, environ={})
    try:
        response = app.test_client().post("/api/v1/auth/login",
                                          json={"username": "admin", "password": password})
        assert response.status_code == 200, response.get_json()
    finally:
        with app.app_context():
            db.engine.dispose()

    again = run_cli("init", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert password not in again.stdout and "shown once" not in again.stdout
    assert key_file.read_text().strip() == secret_key
