"""Run the parent under gunicorn from `werss-parent serve` (no separate config file needed)."""

from __future__ import annotations

import logging

from gunicorn.app.base import BaseApplication

ACCESS_LOG_FORMAT = '%(h)s pid=%(p)s "%(r)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'


def _post_worker_init(worker):
    from .services.maintenance import start_background_maintenance

    start_background_maintenance(worker.wsgi)


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

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return create_app()


def gunicorn_options(bind: str, workers: int, threads: int) -> dict:
    """The gunicorn settings `werss-parent serve` runs with (also used by the benchmarks)."""
    return {
        "bind": bind,
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        # Claims long-poll for up to 30 s; leave room above that.
        "timeout": 75,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "post_worker_init": _post_worker_init,
        "child_exit": _child_exit,
    }


def run_gunicorn(bind: str, workers: int, threads: int) -> None:
    ParentApplication(gunicorn_options(bind, workers, threads)).run()
