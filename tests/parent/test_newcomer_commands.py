"""The commands README.md and `make up` print work as printed, from the repository root."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import free_port
from tests.parent.test_cli import run_cli
from tests.support.processes import clean_env


def test_create_admin_as_printed_works_after_init_without_setting_a_key(tmp_path):
    env = clean_env(WERSS_DATABASE_URL=f"sqlite:///{tmp_path}/data/parent.db",
                    WERSS_CASCADE_BCRYPT_ROUNDS="4")
    (tmp_path / "data").mkdir()
    assert run_cli("init", env=env, cwd=tmp_path).returncode == 0

    # What README and make up print: no WERSS_SECRET_KEY_FILE in sight.
    result = run_cli("create-admin", "--username", "admin", "--password", "a-long-password-1",
                     env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "password reset for 'admin'" in result.stdout


def test_an_unreachable_database_is_one_line_naming_it_without_its_password(tmp_path):
    port = free_port()
    env = clean_env(WERSS_DATABASE_URL=f"postgresql://werss:hunter2-secret@127.0.0.1:{port}/db",
                    WERSS_SECRET_KEY="k" * 32)
    for args in (("db", "upgrade"), ("list-nodes",)):
        result = run_cli(*args, env=env, cwd=tmp_path)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"127.0.0.1:{port}/db" in lines[0] and "***" in lines[0]
        assert "hunter2" not in result.stderr + result.stdout
        assert "refused" in lines[0].lower() or "failed" in lines[0].lower()


def test_serve_on_a_taken_port_stops_at_once_with_the_reason(tmp_path, db_url):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    env = clean_env(WERSS_DATABASE_URL=db_url, WERSS_SECRET_KEY="k" * 32)
    try:
        started = time.monotonic()
        result = run_cli("serve", "--bind", f"127.0.0.1:{port}", env=env, cwd=tmp_path)
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("command", [["werss-parent"], [sys.executable, "-m", "parent"],
                                     ["werss-child"], [sys.executable, "-m", "child"]])
def test_both_clis_have_version(command):
    from pathlib import Path

    if not command[0].startswith("/"):
        command = [str(Path(sys.executable).parent / command[0])]
    result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60,
                            env=clean_env())
    assert result.returncode == 0
    assert result.stdout.strip() in ("werss-parent 0.1.0", "werss-child 0.1.0")


def test_child_help_describes_every_command_and_option():
    main = subprocess.run([sys.executable, "-m", "child", "--help"], capture_output=True,
                          text=True, timeout=60, env=clean_env())
    assert "CONFIG_SUB" not in main.stdout and "--log-level LEVEL" in main.stdout
    assert "DEBUG, INFO" in main.stdout and "Exit codes" in main.stdout
    for name in ("run", "sync", "check", "status"):
        sub = subprocess.run([sys.executable, "-m", "child", name, "--help"],
                             capture_output=True, text=True, timeout=60, env=clean_env())
        assert sub.returncode == 0 and "CONFIG_SUB" not in sub.stdout
        assert "--config FILE" in sub.stdout
        described = sub.stdout.split("options:")[0]
        assert len(described.splitlines()) > 3, sub.stdout


def test_make_up_on_a_taken_port_stops_with_the_reason_and_never_says_it_is_up(tmp_path):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    # A copy of the layout make up runs in: deploy/make-up.sh and .venv at the root.
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "make-up.sh").write_bytes((repo / "deploy" / "make-up.sh").read_bytes())
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "data").mkdir()
    env = clean_env(WERSS_CASCADE_BCRYPT_ROUNDS="4", WERSS_ADMIN_PASSWORD="a-long-password-1")
    assert run_cli("init", env=env, cwd=tmp_path).returncode == 0
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = subprocess.run(["bash", "deploy/make-up.sh"], cwd=tmp_path,
                                env={**env, "PORT": str(port)}, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
    finally:
        holder.close()
    assert result.returncode != 0
    assert "Address already in use" in result.stderr
    assert "is up" not in result.stdout
