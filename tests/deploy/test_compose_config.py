"""The one compose file, as Debian's docker-compose 1.29 and docker compose v2 read it."""

from __future__ import annotations

import pytest

from tests.deploy.stack import COMPOSE_FILE
from tests.deploy.engine import run

pytestmark = pytest.mark.deploy

REQUIRED = {"WERSS_SECRET_KEY": "k" * 48, "WERSS_ADMIN_PASSWORD": "password-1"}
PROFILES = [
    pytest.param([], {"parent"}, id="parent-alone"),
    pytest.param(["child"], {"parent", "child"}, id="parent-and-child"),
    pytest.param(["postgres"], {"parent", "postgres"}, id="postgres"),
    pytest.param(["postgres", "child"], {"parent", "child", "postgres"}, id="postgres-and-child"),
    pytest.param(["postgres", "scale"], {"parent", "postgres", "parent-b", "proxy"},
                 id="two-parents-behind-a-proxy"),
]


def _config(compose, tmp_path, *args, profiles=(), **env):
    env_file = tmp_path / "empty.env"          # never the user's .env beside the file
    env_file.write_text("")
    profile_args = [arg for name in profiles for arg in ("--profile", name)]
    return run([*compose.command, "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
                *profile_args, "config", *args], env={**compose.env, **env}, check=False)


@pytest.mark.parametrize("flavour", ["v1", "v2"])
@pytest.mark.parametrize("profiles, services", PROFILES)
def test_every_profile_is_accepted(composes, tmp_path, flavour, profiles, services):
    compose = composes[flavour]
    checked = _config(compose, tmp_path, "-q", profiles=profiles, **REQUIRED)
    assert checked.returncode == 0, (compose.version, checked.stdout.decode())
    if flavour == "v1":
        return      # 1.29 lists every service whatever the profiles; the stack test runs it
    listed = _config(compose, tmp_path, "--services", profiles=profiles, **REQUIRED)
    assert set(listed.stdout.decode().split()) == services, listed.stdout.decode()


@pytest.mark.parametrize("flavour", ["v1", "v2"])
@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_a_missing_required_variable_is_named(composes, tmp_path, flavour, missing):
    present = {name: value for name, value in REQUIRED.items() if name != missing}
    checked = _config(composes[flavour], tmp_path, "-q", **present)
    assert checked.returncode != 0
    assert f"{missing} is required" in checked.stdout.decode()
