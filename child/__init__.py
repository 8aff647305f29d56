"""The WeRSS Cascade child agent: heartbeats, syncs, claims work, collects, pushes, reports."""

__version__ = "0.1.0"


def sync_now(config_file: str | None = None) -> dict:
    """Run the seed's manual sync once (heartbeat, pull feeds, pull tasks) and return counts."""
    from .agent import Agent
    from .config import load_config

    agent = Agent(load_config(config_file))
    try:
        return agent.sync_once(full=True)
    finally:
        agent.close()
