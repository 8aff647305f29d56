"""Fixtures for end-to-end tests: real `werss-parent serve` and `werss-child run` processes,
the local feeds and webhook receiver they talk to, over real HTTP."""

from __future__ import annotations

import pytest

from deploy.local_services import GrowingFeeds, LocalServices
from tests.helpers import SECRET_KEY
from tests.support.http_callers import AdminHttp
from tests.support.processes import LiveParent, start_child, start_live_parent


@pytest.fixture
def live_parent(db_url, tmp_path):
    """Start parents on the test's migrated database; each is stopped at teardown.

    Call it as ``live_parent(workers=2, secret_key=SECRET_KEY)``; it returns a LiveParent
    with ``base_url`` and ``log_path`` once GET /healthz answers.
    """
    started: list[LiveParent] = []

    def start(workers: int = 2, secret_key: str = SECRET_KEY, **kwargs) -> LiveParent:
        parent = start_live_parent(
            database_url=db_url, secret_key=secret_key, workdir=tmp_path, workers=workers,
            name=f"parent-{len(started) + 1}", **kwargs,
        )
        started.append(parent)
        return parent

    yield start
    for parent in started:  # stop them side by side: each takes a moment to drain
        parent.terminate()
    for parent in started:
        parent.stop()


@pytest.fixture
def parent(live_parent) -> LiveParent:
    """One live parent with two workers."""
    return live_parent()


@pytest.fixture
def admin_http(parent):
    """The first admin (created by `serve` from WERSS_ADMIN_PASSWORD), logged in."""
    admin = AdminHttp.login(parent.base_url)
    yield admin
    admin.close()


@pytest.fixture
def children(tmp_path):
    """Start `werss-child run` processes, as ``children(base_url, creds, name=...)``;
    each is stopped at teardown."""
    started = []

    def start(*args, **kwargs):
        child = start_child(*args, workdir=tmp_path, **kwargs)
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()


@pytest.fixture
def services():
    """Local RSS feeds (three posts each) and a webhook receiver that records every push."""
    local = LocalServices()
    yield local
    local.close()


@pytest.fixture
def feeds():
    """Local feeds that gain articles when told (``feeds.grow``), and a webhook receiver."""
    local = GrowingFeeds()
    yield local
    local.close()
