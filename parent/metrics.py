"""Prometheus metrics: request counters per worker (multiprocess under gunicorn) and
gauges read from the database at scrape time, so every worker reports the same truth.

prometheus_client is imported lazily: under gunicorn, `werss-parent serve` sets
PROMETHEUS_MULTIPROC_DIR first, and the library reads it when first imported.
"""

from __future__ import annotations

import os
import threading
import time

from flask import Flask, g, request
from sqlalchemy import func

_METRICS: dict = {}
_WORKER_CLAIMS: dict = {}  # reason -> labelled counter (count_worker_claim_answer)
_ABANDONED: list = []  # the counter of count_abandoned_request, once built
_ABANDONED_LOCK = threading.Lock()
# Labels take only these values: an invented method or an unknown path must not add a series.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _request_metrics():
    if not _METRICS:
        from prometheus_client import Counter, Histogram

        _METRICS["requests"] = Counter(
            "werss_http_requests", "HTTP requests handled", ["method", "route", "status"],
            registry=None,
        )
        _METRICS["latency"] = Histogram(
            "werss_http_request_duration_seconds", "Time to handle a request", ["route"],
            registry=None,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
    return _METRICS


class _DatabaseCollector:
    """Gauges computed from the database when Prometheus scrapes."""

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from .clock import now
        from .extensions import db
        from .models import Feed, MessageTask, Node

        moment = now()
        from .services.presence import online_condition

        alive = Node.deleted_at.is_(None)
        online = db.session.execute(db.select(func.count()).select_from(Node).where(
            alive, Node.is_active.is_(True), online_condition(moment))).scalar_one()
        active = db.session.execute(db.select(func.count()).select_from(Node).where(
            alive, Node.is_active.is_(True))).scalar_one()
        disabled = db.session.execute(db.select(func.count()).select_from(Node).where(
            alive, Node.is_active.is_(False))).scalar_one()
        nodes = GaugeMetricFamily("werss_nodes", "Nodes by status", labels=["status"])
        nodes.add_metric(["online"], online)
        nodes.add_metric(["offline"], active - online)
        nodes.add_metric(["disabled"], disabled)
        yield nodes
        yield GaugeMetricFamily("werss_feeds", "Feeds configured",
                                value=db.session.execute(db.select(func.count()).select_from(Feed)).scalar_one())
        yield GaugeMetricFamily(
            "werss_message_tasks_enabled", "Enabled message tasks",
            value=db.session.execute(db.select(func.count()).select_from(MessageTask).where(
                MessageTask.status == 1)).scalar_one())
        yield _deliveries_gauge()


def _deliveries_gauge():
    from prometheus_client.core import GaugeMetricFamily

    from .models.delivery import DELIVERY_STATUSES
    from .services.deliveries import counts_by_status

    counts = counts_by_status()
    gauge = GaugeMetricFamily("werss_deliveries", "Deliveries by status (failed: gave up)",
                              labels=["status"])
    for status in DELIVERY_STATUSES:
        gauge.add_metric([status], counts.get(status, 0))
    return gauge


def count_worker_claim_answer(reason: str) -> None:
    """One claim the gunicorn worker answered itself, off the app (parent/gunicorn_worker.py).

    ``reason``: ``no_change`` (a parked claim's wait ended), ``deferred`` (backpressure) or
    ``held`` (a parked claim came due under backpressure and was kept parked, not answered yet).
    """
    if not _WORKER_CLAIMS:
        from prometheus_client import Counter

        counter = Counter("werss_claims_answered_by_worker",
                          "Claims the worker answered without the app", ["reason"],
                          registry=None)  # only under gunicorn: read by the multiprocess collector
        _WORKER_CLAIMS.update({reason: counter.labels(reason)
                               for reason in ("no_change", "deferred", "held")})
    _WORKER_CLAIMS[reason].inc()


def count_abandoned_request() -> None:
    """One request the gunicorn worker dropped unserved: its client had gone while it waited.

    Called from the worker's threads, so the counter is built under a lock, once.
    """
    if not _ABANDONED:
        with _ABANDONED_LOCK:
            if not _ABANDONED:
                from prometheus_client import Counter

                _ABANDONED.append(Counter(
                    "werss_requests_abandoned", "Requests dropped unserved: the client had "
                    "gone while they waited for a thread", registry=None))
    _ABANDONED[0].inc()


def render_metrics() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for metric in _request_metrics().values():
            registry.register(metric)
    registry.register(_DatabaseCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _start_timer():
    g.request_started = time.perf_counter()


# (method, route, status) -> (request counter, latency histogram) of those labels: the
# label sets are few (known methods x routes x statuses), and prometheus_client's labels()
# takes a lock and builds its key on every call.
_LABELLED: dict[tuple[str, str, int], tuple] = {}


def _labelled(method: str, route: str, status: int) -> tuple:
    key = (method, route, status)
    found = _LABELLED.get(key)
    if found is None:
        metrics = _request_metrics()
        found = _LABELLED[key] = (metrics["requests"].labels(method, route, str(status)),
                                  metrics["latency"].labels(route))
    return found


def observe_request(method: str, route: str, status: int, started: float | None) -> None:
    """Count one answered request (``started``: its time.perf_counter() at the start)."""
    method = method if method in _KNOWN_METHODS else "OTHER"
    requests, latency = _labelled(method, route, status if 100 <= status <= 599 else 0)
    requests.inc()
    if started is not None:
        latency.observe(time.perf_counter() - started)


def _observe(response):
    observe_request(request.method, request.url_rule.rule if request.url_rule else "unmatched",
                    response.status_code, g.get("request_started"))
    return response


def init_app(app: Flask) -> None:
    app.before_request(_start_timer)
    app.after_request(_observe)
