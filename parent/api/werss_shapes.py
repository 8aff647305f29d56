"""Task fields as a WeRSS parent serves them, on the WeRSS prefix only.

WeRSS keeps a message task's ``headers``, ``cookies`` and ``mps_id`` in text columns
and ``json.loads`` them when it runs the task, so a WeRSS parent serves them as JSON
strings; it cannot store an object or a list there. Under ``/api/v1/wx/cascade`` (what
WeRSS nodes call) this parent does the same; under ``/api/v1/cascade`` the native
contract keeps its types (an object and a list). See docs/COMPAT.md.
"""

from __future__ import annotations

import json

from flask import request

from shared.paths import WX_CASCADE_PREFIX

TEXT_FIELDS = ("headers", "cookies", "mps_id")


def on_werss_prefix() -> bool:
    return request.path.startswith(WX_CASCADE_PREFIX + "/")


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def task(item: dict) -> dict:
    """One task (or task package) with the text fields as WeRSS stores them."""
    if not on_werss_prefix():
        return item
    return {key: _as_text(value) if key in TEXT_FIELDS else value for key, value in item.items()}


def tasks(items: list[dict]) -> list[dict]:
    return [task(item) for item in items] if on_werss_prefix() else items


def leases(items: list[dict]) -> list[dict]:
    if not on_werss_prefix():
        return items
    return [{**lease, "task": task(lease["task"])} for lease in items]


def etag(value: str) -> str:
    """A distinct ETag for the WeRSS representation of the same list."""
    if not on_werss_prefix() or not value:
        return value
    return value[:-1] + '-werss"' if value.endswith('"') else value + "-werss"


def their_etag(if_none_match: str | None) -> str | None:
    """Map an If-None-Match of the WeRSS representation back onto ours."""
    if not if_none_match or not on_werss_prefix():
        return if_none_match
    return if_none_match.replace('-werss"', '"')


def reads_local_times() -> bool:
    """Requests whose zone-less times are a WeRSS node's local time."""
    return on_werss_prefix() or (request.blueprint or "").split("_wx")[0] == "compat"


def init_app(app) -> None:
    """Read zone-less times of WeRSS requests in cascade.werss_timezone (UTC elsewhere)."""
    from datetime import timezone
    from zoneinfo import ZoneInfo

    from flask import g

    from shared.timeutil import naive_time_zone

    zone = ZoneInfo(app.config["WERSS_SETTINGS"].cascade.werss_timezone)

    @app.before_request
    def _werss_local_times():
        if reads_local_times():
            g.naive_time_zone_token = naive_time_zone.set(zone)

    @app.teardown_request
    def _reset_local_times(_exc=None):
        token = g.pop("naive_time_zone_token", None)
        if token is not None:
            try:
                naive_time_zone.reset(token)
            except ValueError:  # set in another context: put the default back
                naive_time_zone.set(timezone.utc)
