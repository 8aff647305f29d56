"""The baseline: a bare Flask app with one JSON endpoint, served by the parent's gunicorn settings.

Run as ``python -m bench.baseline --bind HOST:PORT --workers N --threads T``. The gunicorn
options come from ``parent.gunicorn_app.run_gunicorn`` itself (same worker class, threads,
timeouts, keep-alive and access log), so the only difference from the subject is the app.
"""

from __future__ import annotations

import argparse

from flask import Flask, jsonify

BASELINE_PATH = "/bench/ping"
# Hooks that belong to the parent app (maintenance thread, Prometheus multiprocess files),
# not to the server; the bare app has neither.
APP_HOOKS = ("post_worker_init", "child_exit")


def create_baseline_app() -> Flask:
    """Build the bare app: one route returning a small dict."""
    app = Flask("werss_bench_baseline")

    @app.get(BASELINE_PATH)
    def ping():
        return jsonify({"code": 0, "message": "success", "data": {"status": "ok"}})

    return app


def gunicorn_options(bind: str, workers: int, threads: int) -> dict:
    """Return the options `werss-parent serve` runs gunicorn with."""
    from parent.gunicorn_app import gunicorn_options as parent_options

    return parent_options(bind, workers, threads)


def describe_options(options: dict) -> dict:
    """Make gunicorn options JSON-friendly (hooks by name)."""
    return {key: (getattr(value, "__qualname__", repr(value)) if callable(value) else value)
            for key, value in sorted(options.items())}


def serve(bind: str, workers: int, threads: int) -> None:
    """Serve the baseline app with the parent's own gunicorn settings, minus its app hooks."""
    from parent import gunicorn_app

    class BaselineApplication(gunicorn_app.ParentApplication):
        def load_config(self):
            for key, value in self.options.items():
                if key not in APP_HOOKS:
                    self.cfg.set(key, value)
            self.disable_control_socket()

        def load(self):
            return create_baseline_app()

    BaselineApplication(gunicorn_options(bind, workers, threads)).run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    serve(args.bind, args.workers, args.threads)


if __name__ == "__main__":
    main()
