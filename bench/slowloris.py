"""Slow clients against `werss-parent serve`: heartbeats while 100 connections trickle.

Each slow connection sends the start of a request and then one header byte every
``trickle_every`` seconds, as a slowloris attack (or a very bad network) does. Meanwhile
one node heartbeats (signed, a fresh connection each time) and /healthz is polled. The
goal (issue 8 item 5): every heartbeat answered in under 1 s.

Run alone: ``python -m bench.slowloris [--slow 100] [--window 20]`` (SQLite), or as the
``slowloris`` section of ``python -m bench``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import statistics
import sys
import threading
import time

import requests

from shared import signing
from shared.paths import CASCADE_PREFIX, HEARTBEAT

from .database import (
    BenchDatabase, create_nodes, make_workdir, remove_workdir,
)
from .servers import subject_server

GOAL_SECONDS = 1.0
REQUEST_TIMEOUT = 10.0
HEARTBEAT_BODY = b'{"version": "bench"}'


class SlowClients:
    """Hold ``count`` connections that never finish their request."""

    def __init__(self, host: str, port: int, count: int, trickle_every: float):
        self.host, self.port, self.count = host, port, count
        self.trickle_every = trickle_every
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self) -> SlowClients:
        for index in range(self.count):
            sock = socket.create_connection((self.host, self.port), timeout=5)
            sock.sendall(f"POST {CASCADE_PREFIX}{HEARTBEAT} HTTP/1.1\r\nHost: bench\r\n"
                         f"X-Slow-{index}: ".encode())
            self.sockets.append(sock)
        self.thread.start()
        return self

    def _trickle(self) -> None:
        while not self.stop.wait(self.trickle_every):
            for sock in list(self.sockets):
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.sockets.remove(sock)

    def alive(self) -> int:
        return len(self.sockets)

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


def _heartbeat(base_url: str, creds) -> tuple[float, int | None]:
    path = CASCADE_PREFIX + HEARTBEAT
    auth = signing.signed_authorization(creds.api_key, creds.api_secret, "POST", path, "",
                                        HEARTBEAT_BODY)
    started = time.perf_counter()
    try:
        response = requests.post(base_url + path, data=HEARTBEAT_BODY, timeout=REQUEST_TIMEOUT,
                                 headers={"Authorization": auth, "Connection": "close",
                                          "Content-Type": "application/json"})
        status = response.status_code
    except requests.RequestException:
        status = None
    return time.perf_counter() - started, status


def _summary(samples: list[tuple[float, int | None]]) -> dict:
    latencies = sorted(seconds for seconds, _ in samples)
    answered = [seconds for seconds, status in samples if status == 200]
    return {
        "requests": len(samples),
        "answered_200": len(answered),
        "under_1s": sum(1 for seconds, status in samples
                        if status == 200 and seconds < GOAL_SECONDS),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
    }


def measure_slow_clients(base_url: str, creds, slow: int, window: float,
                         trickle_every: float = 2.0, interval: float = 0.25) -> dict:
    """Heartbeat for ``window`` seconds while ``slow`` connections trickle; summarise."""
    host, port = base_url.split("//", 1)[1].split(":")
    quiet = [_heartbeat(base_url, creds) for _ in range(10)]
    samples = []
    with SlowClients(host, int(port), slow, trickle_every) as clients:
        time.sleep(min(3.0, window / 4))  # let them settle on the server
        deadline = time.monotonic() + window
        while time.monotonic() < deadline:
            samples.append(_heartbeat(base_url, creds))
            time.sleep(interval)
        still_open = clients.alive()
    result = {"slow_connections": slow, "still_open_at_end": still_open,
              "window_s": window, "quiet": _summary(quiet), "under_attack": _summary(samples)}
    attacked = result["under_attack"]
    result["goal_met"] = bool(attacked["requests"]) and attacked["under_1s"] == attacked["requests"]
    return result


def slowloris_section(env: dict, creds, workers: int, threads: int, workdir, slow: int = 100,
                      window: float = 20.0) -> dict:
    """Start a subject server of its own and measure it (for bench.runner)."""
    server = subject_server(env, workers, threads, workdir / "slowloris.log")
    server.start()
    try:
        return measure_slow_clients(server.base_url, creds, slow, window)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slowloris", description=__doc__)
    parser.add_argument("--slow", type=int, default=100, help="slow connections [%(default)s]")
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds of heartbeats under attack [%(default)s]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    workdir = make_workdir()
    database = BenchDatabase(None, workdir)
    secret_key = secrets.token_urlsafe(32)
    try:
        url, env = database.create_migrated(secret_key)
        creds = create_nodes(url, secret_key, 1)[0]
        result = slowloris_section(env, creds, args.workers, args.threads, workdir,
                                   args.slow, args.window)
    finally:
        database.drop()
        remove_workdir(workdir)
    print(json.dumps(result, indent=2))
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
