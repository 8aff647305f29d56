"""Quick checks of the deployment files that need no Docker (run in every `make test`)."""

from __future__ import annotations

import subprocess

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
