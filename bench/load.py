"""A bounded HTTP load generator: N threads, one requests.Session each, fixed count and time cap."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import requests

# (method, url, headers, body) for one request from client thread ``index``; called per
# request so signatures are fresh.
RequestFactory = Callable[[int], tuple[str, str, dict, bytes | None]]
# Told (thread index, status, body) of every measured response, e.g. to keep leases granted.
ResponseHook = Callable[[int, int, bytes], None]

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


@dataclass
class LoadResult:
    """What one measured phase produced (latencies of successful requests only)."""

    name: str
    threads: int
    planned: int
    ok: int = 0
    errors: int = 0
    elapsed: float = 0.0
    capped: bool = False
    latencies: list[float] = field(default_factory=list, repr=False)
    statuses: Counter = field(default_factory=Counter)
    bytes_received: int = 0
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the successful latencies, in seconds."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), int(round(fraction * len(ordered) + 0.5))))
        return ordered[rank - 1]

    def to_dict(self) -> dict:
        p50, p99 = self.percentile(0.50), self.percentile(0.99)
        return {
            "name": self.name,
            "threads": self.threads,
            "planned": self.planned,
            "ok": self.ok,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed, 3),
            "hit_time_cap": self.capped,
            "rps": round(self.rps, 2),
            "p50_ms": None if p50 is None else round(p50 * 1000, 3),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "mean_ms": round(1000 * sum(self.latencies) / len(self.latencies), 3)
            if self.latencies else None,
            "statuses": {str(code): count for code, count in sorted(self.statuses.items())},
            "mean_response_bytes": round(self.bytes_received / self.ok) if self.ok else None,
            "first_error": self.first_error,
        }


def run_load(
    name: str,
    factory: RequestFactory,
    expected_status: int,
    count: int,
    threads: int,
    time_cap: float,
    warmup_per_thread: int,
    warmup_factory: RequestFactory | None = None,
    on_response: ResponseHook | None = None,
) -> LoadResult:
    """Warm every thread's connection up, then send ``count`` requests or stop at ``time_cap``.

    Each thread warms up on its own Session first, so the measured phase starts with open
    keep-alive connections and warm workers. ``warmup_factory`` (default: ``factory``) lets
    an expensive scenario warm its connections up with a cheap request to the same server.
    ``on_response`` sees every measured response (not the warm-up ones).
    """
    threads = max(1, min(threads, count))
    result = LoadResult(name=name, threads=threads, planned=count)
    lock = threading.Lock()
    issued = 0
    start_gate = threading.Barrier(threads + 1)
    deadline = [float("inf")]
    stop_early = threading.Event()

    def take_ticket() -> bool:
        nonlocal issued
        with lock:
            if issued >= count or stop_early.is_set():
                return False
            if time.perf_counter() > deadline[0]:
                result.capped = True
                return False
            issued += 1
            return True

    def send(session: requests.Session, index: int, make: RequestFactory = factory):
        method, url, headers, body = make(index)
        started = time.perf_counter()
        response = session.request(method, url, headers=headers, data=body,
                                   timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                   allow_redirects=False)
        content = response.content
        return response.status_code, content, time.perf_counter() - started

    def worker(index: int):
        local_latencies, local_statuses = [], Counter()
        local_bytes, local_errors, first_error = 0, 0, None
        with requests.Session() as session:
            try:
                for _ in range(warmup_per_thread):
                    send(session, index, warmup_factory or factory)
            except requests.RequestException:
                pass  # the measured phase reports it
            finally:
                start_gate.wait()
            while take_ticket():
                try:
                    status, content, latency = send(session, index)
                except requests.RequestException as exc:
                    local_errors += 1
                    local_statuses["exception"] += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
                    if isinstance(exc, requests.ConnectionError):
                        stop_early.set()  # the server is gone; do not spin
                    continue
                local_statuses[status] += 1
                if on_response is not None:
                    on_response(index, status, content)
                if status == expected_status:
                    local_latencies.append(latency)
                    local_bytes += len(content)
                else:
                    local_errors += 1
                    first_error = first_error or f"HTTP {status}: {content[:300]!r}"
        with lock:
            result.latencies.extend(local_latencies)
            result.statuses.update(local_statuses)
            result.bytes_received += local_bytes
            result.errors += local_errors
            result.first_error = result.first_error or first_error

    workers = [
        threading.Thread(target=worker, args=(i,), name=f"bench-{name}-{i}", daemon=True)
        for i in range(threads)
    ]
    for thread in workers:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    deadline[0] = started + time_cap
    for thread in workers:
        # A request can outlive the cap by at most its read timeout.
        thread.join(time_cap + CONNECT_TIMEOUT + READ_TIMEOUT + 5)
    result.elapsed = time.perf_counter() - started
    result.ok = len(result.latencies)
    return result
