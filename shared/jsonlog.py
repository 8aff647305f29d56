"""Log lines as JSON objects, one a line, for the parent and the child alike.

Standard library only. Each line has ``time``, ``level``, ``logger`` and ``message``, then
the fields in scope: ``request_id``, ``node_id`` and ``lease_id`` when known (the parent adds
its request's through a filter; the child binds its node and the lease a thread works on
with ``log_fields``), then fields a call passed as ``extra``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from functools import wraps
from typing import Any, TypeVar

T = TypeVar("T")

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields a record may carry (``extra=``) that belong on the line.
FIELDS = ("request_id", "node_id", "lease_id", "method", "path", "status", "duration_ms",
          "remote_addr")

_scope: ContextVar[dict[str, Any] | None] = ContextVar("werss_log_fields", default=None)
_process_fields: dict[str, Any] = {}


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Put these fields on every line logged in this block (this thread or task only)."""
    token = _scope.set({**(_scope.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _scope.reset(token)


def with_fields(function: Callable[..., T], **fields: Any) -> Callable[..., T]:
    """``function``, run inside ``log_fields(**fields)`` (for work handed to a thread pool)."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with log_fields(**fields):
            return function(*args, **kwargs)

    return wrapper


def set_process_fields(**fields: Any) -> None:
    """Put these fields on every line this process logs from now on (e.g. its node id)."""
    _process_fields.update({k: v for k, v in fields.items() if v is not None})


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_process_fields)
        entry.update(_scope.get() or {})
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(log_format: str, level: str | int, stream=None) -> logging.Handler:
    """Send the root logger's records to stderr (or ``stream``) in this format and level."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
