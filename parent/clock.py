"""The parent's clock, injectable so tests can move time instead of sleeping."""

from datetime import datetime, timezone
from typing import Callable

from flask import current_app

Clock = Callable[[], datetime]
_EXTENSION_KEY = "werss.clock"


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


def init_app(app, clock: Clock | None = None) -> None:
    app.extensions[_EXTENSION_KEY] = clock or system_clock


def now() -> datetime:
    """Return the current aware UTC time from the app's clock."""
    return current_app.extensions[_EXTENSION_KEY]()
