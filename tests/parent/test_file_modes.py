"""parent.db and the child's cache hold webhook tokens and cookies: 0600 in 0700 (issue 8 item 14)."""

from __future__ import annotations

import os
import stat

import pytest

from child.cache import LocalCache
from parent import create_app
from tests.helpers import SECRET_KEY


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    """The usual default umask, under which these files used to be created 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_a_new_parent_database_is_private(tmp_path):
    database = tmp_path / "data" / "parent.db"
    app = create_app({"db": f"sqlite:///{database}", "secret_key": SECRET_KEY}, environ={})
    assert app.test_client().get("/healthz").status_code in (200, 503)

    assert mode(database) == 0o600
    assert mode(database.parent) == 0o700
    for companion in ("parent.db-wal", "parent.db-shm"):
        if (database.parent / companion).exists():
            assert mode(database.parent / companion) == 0o600


def test_an_old_world_readable_parent_database_is_tightened(tmp_path):
    database = tmp_path / "parent.db"
    database.touch(mode=0o644)
    os.chmod(database, 0o644)
    create_app({"db": f"sqlite:///{database}", "secret_key": SECRET_KEY}, environ={})

    assert mode(database) == 0o600


def test_the_child_cache_is_private(tmp_path):
    cache = LocalCache(tmp_path / "child")
    try:
        cache.set_meta("probe", "1")
        assert mode(tmp_path / "child") == 0o700
        for name in os.listdir(tmp_path / "child"):
            assert mode(tmp_path / "child" / name) == 0o600, name
    finally:
        cache.close()
