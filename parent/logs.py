"""The parent's logs: text (the default) or JSON lines, at the configured level.

In JSON mode each line carries the request's ``request_id``, the authenticated
``node_id`` and the ``lease_id`` of a lease route as fields, and the access log is one JSON
line per request written here instead of gunicorn's text line.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, has_request_context, request

from shared import jsonlog

from .config import Settings

access_log = logging.getLogger("werss.access")


class RequestFields(logging.Filter):
    """Add the current request's ids to records logged while it is handled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            if getattr(record, "request_id", None) is None:
                record.request_id = g.get("request_id")
            node = g.get("node")
            if node is not None and getattr(record, "node_id", None) is None:
                record.node_id = node.id
            lease_id = (request.view_args or {}).get("lease_id")
            if lease_id is not None and getattr(record, "lease_id", None) is None:
                record.lease_id = lease_id
        return True


def configure_logging(settings: Settings, stream=None) -> logging.Handler:
    """Set up the process's logging (gunicorn workers; not the tests' apps)."""
    handler = jsonlog.configure(settings.log_format, settings.log_level, stream)
    handler.addFilter(RequestFields())
    return handler


def gunicorn_log_config(settings: Settings) -> dict:
    """gunicorn's own lines (start, stop, worker errors) in the same format and level."""
    if settings.log_format != "json":
        return {}
    return {"logconfig_dict": {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "shared.jsonlog.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level},
        "loggers": {"gunicorn.error": {"handlers": ["stderr"], "level": settings.log_level,
                                       "propagate": False}},
    }, "accesslog": None}


def _start_clock() -> None:
    g.log_started = time.perf_counter()


def log_access(method: str, path: str, status: int, remote_addr: str | None,
               started: float | None, **fields) -> None:
    """Write one access line (JSON mode); ``fields``: ids no request context carries."""
    access_log.info(
        "%s %s %s", method, path, status,
        extra={"method": method, "path": path, "status": status, "remote_addr": remote_addr,
               "duration_ms": round((time.perf_counter() - started) * 1000, 1)
               if started is not None else None, **fields})


def _log_access(response: Response) -> Response:
    log_access(request.method, request.path, response.status_code, request.remote_addr,
               g.get("log_started"))
    return response


def init_app(app: Flask) -> None:
    if app.config["WERSS_SETTINGS"].log_format == "json":
        app.before_request(_start_clock)
        app.after_request(_log_access)
