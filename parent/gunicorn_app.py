"""Run the parent under gunicorn from `werss-parent serve` (no separate config file needed)."""

from __future__ import annotations

import errno
import os
import socket

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

ACCESS_LOG_FORMAT = '%(h)s pid=%(p)s "%(r)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'


class AccessLogger(Logger):
    """gunicorn's logger, building only the atoms that ACCESS_LOG_FORMAT names.

    gunicorn builds every atom for every request (a strftime, and one entry per request
    header, response header and WSGI environ key, about 60) for a line that uses seven:
    4.6 % of a worker's Python time under an idle fleet (bench/README.md). The line is the
    same; another format gets gunicorn's own atoms.
    """

    def atoms(self, resp, req, environ, request_time):
        if self.cfg.access_log_format != ACCESS_LOG_FORMAT:
            return super().atoms(resp, req, environ, request_time)
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "p": f"<{os.getpid()}>",
            "r": f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + int(request_time.microseconds / 1000),
        }
        for name, value in resp.headers:
            if name.lower() == "x-request-id":
                atoms["{x-request-id}o"] = value
        return atoms


def _post_worker_init(worker):
    from .services.maintenance import start_background_maintenance

    start_background_maintenance(worker.wsgi)


def _worker_exit(server, worker):
    """Write what the worker kept in memory (signs of life, unchanged pulls) as it stops."""
    app = getattr(worker.app, "callable", None)  # the Flask app (worker.wsgi is wrapped)
    if not hasattr(app, "app_context"):  # it never loaded the app
        return
    from .extensions import db
    from .services.presence import flush_presence

    with app.app_context():
        try:
            flush_presence()
            db.session.commit()
        except Exception:  # noqa: BLE001 - a stopping worker must still stop
            db.session.rollback()
            server.log.exception("writing kept signs of life on exit failed")
        finally:
            db.session.remove()


def _child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class ParentApplication(BaseApplication):
    def __init__(self, options: dict):
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.disable_control_socket()

    def disable_control_socket(self):
        if "control_socket_disable" in self.cfg.settings:
            # One shared ~/.gunicorn socket would make parents on one host collide.
            self.cfg.set("control_socket_disable", True)

    def load(self):
        from . import create_app
        from .logs import configure_logging

        app = create_app()
        configure_logging(app.config["WERSS_SETTINGS"])
        return app


def gunicorn_options(bind: str, workers: int, threads: int, log_config: dict | None = None) -> dict:
    """The gunicorn settings `werss-parent serve` runs with (also used by the benchmarks).

    ``log_config``: parent.logs.gunicorn_log_config's options (JSON lines), if any.
    """
    return {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        # gthread whose event loop reads each request first: slow clients hold no thread.
        "worker_class": "parent.gunicorn_worker.BufferingThreadWorker",
        # The longest request (a WeChat account search) waits 10 s; leave ample room.
        "timeout": 75,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "logger_class": AccessLogger,
        "post_worker_init": _post_worker_init,
        "worker_exit": _worker_exit,
        "child_exit": _child_exit,
        **(log_config or {}),
    }


class BindError(Exception):
    """The address `serve` was asked to listen on cannot be used."""


def check_bind(bind: str) -> None:
    """Fail at once, with the reason, when the address is taken or invalid.

    gunicorn would retry for five seconds and then exit, while a probe of the port
    reached whatever else holds it.
    """
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if bind.startswith(("unix:", "fd://")):
        return
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, int(port)))
    except ValueError:
        raise BindError(f"--bind {bind!r}: expected HOST:PORT") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = (" (another process is listening there: stop it, or set PORT / --bind)"
                if exc.errno == errno.EADDRINUSE else "")
        raise BindError(f"cannot listen on {bind}: {reason}{hint}") from None


def run_gunicorn(bind: str, workers: int, threads: int, log_config: dict | None = None) -> None:
    ParentApplication(gunicorn_options(bind, workers, threads, log_config)).run()
