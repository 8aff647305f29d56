"""Quick checks of the deployment files that need no Docker (run in every `make test`)."""

from __future__ import annotations

import signal
import subprocess
import time
import tomllib

import pytest
import yaml

from tests.deploy.stack import COMPOSE_FILE
from tests.deploy.engine import REPO

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.mark.parametrize("path", [".env", "child.env", "config.yaml", "data/child.env"])
def test_files_holding_secrets_are_git_ignored(path):
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path])
    assert ignored.returncode == 0, f"{path} is not git-ignored"


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_services_use_only_syntax_docker_compose_1_29_reads(name):
    service = COMPOSE["services"][name]
    # Compose 2.24+ only: env_file entries with path/required, depends_on ... required.
    assert all(isinstance(entry, str) for entry in service.get("env_file", [])), service
    for condition in (service.get("depends_on") or {}).values():
        assert "required" not in condition, service


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_services_depend_only_on_services_that_are_enabled_with_them(name):
    # Compose v2 refuses `up` when a dependency sits in a profile that is not enabled.
    profiles = set(COMPOSE["services"][name].get("profiles", []))
    for dependency in COMPOSE["services"][name].get("depends_on") or {}:
        needed = set(COMPOSE["services"][dependency].get("profiles", []))
        assert not needed or needed & profiles, (name, dependency)


def _pins(lock: str) -> list[tuple[str, str]]:
    # pip-compile's hashed form: "name[extras]==version \\", then indented --hash and # via
    # lines (the test lock keeps extras: Makefile, lock).
    lines = (REPO / lock).read_text().splitlines()
    pins = [line.split(" ")[0].split("==") for line in lines
            if line and not line[0].isspace() and not line.startswith("#")]
    return [(name.split("[")[0], version) for name, version in pins]


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-test.lock"])
def test_every_pin_installs_on_the_oldest_python_the_project_claims(lock):
    # Debian bookworm's python3 is 3.11.2: a pin needing 3.11.5 breaks `pip install` there
    # (and the image built on it), though pyproject.toml says 3.11 will do.
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    claimed = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    oldest = claimed.removeprefix(">=") + ".0"
    for name, version in _pins(lock):
        assert metadata.version(name) == version, f"{name}: run make install"
        needs = metadata.metadata(name).get("Requires-Python") or ""
        assert SpecifierSet(needs).contains(oldest), f"{name}=={version} needs Python {needs}"


def test_the_child_service_passes_on_every_child_variable():
    from child.config import ENV_NAMES

    environment = COMPOSE["services"]["child"]["environment"]
    missing = sorted(set(ENV_NAMES.values()) - set(environment))
    assert not missing, f"add to the child's environment in docker-compose.yml: {missing}"
    fixed = {"CASCADE_PARENT_URL", "CASCADE_DATA_DIR", "CASCADE_HEALTH_LISTEN"}
    for name in set(ENV_NAMES.values()) - fixed:     # taken from .env, empty = the default
        assert environment[name] == f"${{{name}:-}}", (name, environment[name])


ENTRYPOINT = REPO / "deploy" / "docker-entrypoint.sh"
# A stand-in werss-parent: `db upgrade` fails until the marker file exists; `serve` and any
# other command print what they were called with.
FAKE_PARENT = """#!/bin/sh
if [ "$1 $2" = "db upgrade" ]; then
  echo "upgrade attempt" >> "$WORKDIR/attempts"
  [ -e "$WORKDIR/db-ready" ] || { echo "connection refused" >&2; exit 1; }
  exit 0
fi
echo "werss-parent $*"
"""


@pytest.fixture
def entrypoint_env(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "werss-parent"
    fake.write_text(FAKE_PARENT)
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "WORKDIR": str(tmp_path)}


def _entrypoint(env, *args, timeout=20):
    return subprocess.run([str(ENTRYPOINT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_entrypoint_upgrades_then_serves_with_the_arguments(entrypoint_env, tmp_path):
    (tmp_path / "db-ready").touch()
    done = _entrypoint(entrypoint_env, "--workers", "4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["werss-parent serve --bind 0.0.0.0:8001 --workers 4"]


def test_entrypoint_runs_a_werss_command_as_it_is(entrypoint_env, tmp_path):
    done = _entrypoint(entrypoint_env, "werss-parent", "list-nodes")
    assert done.stdout.splitlines() == ["werss-parent list-nodes"]
    assert not (tmp_path / "attempts").exists()


def test_entrypoint_waits_for_the_database(entrypoint_env, tmp_path):
    process = subprocess.Popen([str(ENTRYPOINT)], env=entrypoint_env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    (tmp_path / "db-ready").touch()
    out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "the database upgrade failed; retrying in 2 s" in err
    assert out.splitlines() == ["werss-parent serve --bind 0.0.0.0:8001"]
    assert len((tmp_path / "attempts").read_text().splitlines()) >= 2


def test_entrypoint_gives_up_after_werss_db_wait(entrypoint_env):
    done = _entrypoint({**entrypoint_env, "WERSS_DB_WAIT": "0"})
    assert done.returncode == 1
    assert "connection refused" in done.stderr
    assert "failed for 0 s (WERSS_DB_WAIT); giving up" in done.stderr


def test_entrypoint_stops_at_once_on_sigterm_while_waiting(entrypoint_env):
    process = subprocess.Popen([str(ENTRYPOINT)], env=entrypoint_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 143
    assert time.monotonic() - started < 5


def _probe_path(service: str) -> str:
    """The URL path a compose service's health check asks for."""
    import re

    test = " ".join(COMPOSE["services"][service]["healthcheck"]["test"])
    return re.search(r"https?://[^/'\"]+(/[^'\"]*)", test).group(1)


def test_the_parent_health_check_asks_a_route_the_parent_serves(tmp_path):
    from parent import create_app
    from tests.conftest import base_config

    app = create_app(base_config(f"sqlite:///{tmp_path}/p.db"), environ={})
    assert _probe_path("parent") in {rule.rule for rule in app.url_map.iter_rules()}


def test_the_child_health_check_asks_a_path_its_listener_answers():
    import socket
    import urllib.error
    import urllib.request
    from types import SimpleNamespace

    from child.health import serve_health

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status = SimpleNamespace(last_contact_at=time.time(), heartbeat_interval=60,
                             leases_held=0, outbox_depth=0, draining=False)
    agent = SimpleNamespace(status=lambda: status, config=None)
    server = serve_health(agent, f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}{_probe_path('child')}"
        with urllib.request.urlopen(url, timeout=5) as answer:  # a 404 raises HTTPError
            assert answer.status == 200
    finally:
        server.shutdown()
