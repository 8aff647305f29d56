"""Fixtures of the child's in-process tests: an agent talking to the real parent app."""

from __future__ import annotations

import pytest

from child.agent import Agent
from child.client import ParentClient
from child.config import load_config
from tests.support.in_process_parent import InProcessParent, parent_session


@pytest.fixture
def parent(app):
    return InProcessParent(app)


@pytest.fixture
def make_agent(parent, node, clock, tmp_path):
    made = []

    def make(creds=node, **kwargs):
        config = load_config(environ={
            "CASCADE_PARENT_URL": "http://parent.invalid", "CASCADE_API_KEY": creds.api_key,
            "CASCADE_API_SECRET": creds.api_secret, "CASCADE_DATA_DIR": str(tmp_path / "child"),
            "CASCADE_CAPACITY": "1"})
        client = ParentClient(config, session=parent_session(parent), clock=clock.timestamp,
                              sleep=lambda seconds: None)
        agent = Agent(config, client=client, clock=clock.timestamp,
                      sleep=lambda seconds: None, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()
