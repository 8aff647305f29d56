"""`make compose-test` only: the engine, both Composes and the image, set up once per run.

The compose tests need root, a Docker engine (started here when none runs) and minutes, so
they are collected only when WERSS_COMPOSE_TEST is set, as `make compose-test` does; the
quick checks of the compose file beside them run in every `make test`.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.deploy import engine as deploy
from tests.deploy.stack import build_image, ensure_postgres_image

ENABLED = bool(os.environ.get("WERSS_COMPOSE_TEST"))
collect_ignore_glob = [] if ENABLED else ["test_compose_*.py"]
TIMINGS = deploy.TIMINGS


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine with the image built; a private dockerd is stopped at the end."""
    deploy.install_packages(TIMINGS)
    engine = deploy.Engine(TIMINGS)
    engine.start()
    try:
        deploy.ensure_base_image(engine, TIMINGS)
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def composes(docker_engine) -> dict[str, deploy.Compose]:
    return {"v1": deploy.compose_v1(docker_engine),
            "v2": deploy.compose_v2(docker_engine, TIMINGS)}


@pytest.fixture(scope="session")
def built_image(docker_engine, composes) -> str:
    """Build the image the compose file names, with Debian's docker-compose 1.29."""
    started = time.monotonic()
    image = build_image(composes["v1"])
    TIMINGS.record("image build", started, f"docker-compose build ({image})")
    return image


@pytest.fixture(scope="session")
def postgres_image(docker_engine) -> None:
    started = time.monotonic()
    TIMINGS.record("postgres image", started, ensure_postgres_image(docker_engine))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS.steps:
        terminalreporter.section("compose-test timings")
        for line in TIMINGS.lines():
            terminalreporter.write_line(line)
