"""Parked claims against `werss-parent serve`: what holding them costs, how fast work reaches them.

One worker (so every parked claim is in one event loop) holds ``--claims`` parked claims of
one node (each its own kept-alive connection: a first claim, then the parked one with its
token, signed, ``Prefer: wait=50``). Measured: the
worker's RSS and CPU while they wait; signed heartbeats meanwhile, beside the bare Flask
baseline's ping under the same gunicorn settings in the same run; then ``--dispatches``
times, one one-feed allocation dispatched by an admin: the time until a parked claim holds
its lease, and how many claims the app served for it (the access log) while every parked
claim was answered. A parent with parking off (``cascade.max_parked_claims: 0``) answers
the same claims at once with Retry-After: its dispatch figure is the wait a paced child
sees, which is not measured here (it is up to ``claim_max_wait``, 30 s). Last, ``--idle``
seconds of the parked claims acting as idle children (each answer is followed at once by
a claim with its token): the claims the app served, beside the paced rate (claims ÷ 30 s).

Run alone: ``python -m bench.parking [--claims 1000] [--dispatches 5] [--pg URL]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import resource
import secrets
import selectors
import socket
import statistics
import sys
import threading
import time

import requests

from shared import signing
from shared.paths import CASCADE_PREFIX, CLAIM, HEARTBEAT, LOGIN

from .baseline import BASELINE_PATH
from .database import BenchDatabase, create_nodes, make_workdir, remove_workdir
from .servers import baseline_server, subject_server

CLAIM_PATH = CASCADE_PREFIX + CLAIM
CLAIM_BODY = b'{"max": 1}'
_APP_CLAIM = re.compile(r'"POST /api/v1/cascade/claim HTTP/1\.[01]" \d{3}')


def _claim_bytes(creds, host: str, token: str | None, wait: int | None) -> bytes:
    auth = signing.signed_authorization(creds.api_key, creds.api_secret, "POST", CLAIM_PATH,
                                        "", CLAIM_BODY)
    lines = [f"POST {CLAIM_PATH} HTTP/1.1", f"Host: {host}", f"Authorization: {auth}",
             "Content-Type: application/json", f"Content-Length: {len(CLAIM_BODY)}"]
    if token:
        lines.append(f"X-Work-Token: {token}")
    if wait:
        lines.append(f"Prefer: wait={wait}")
    return "\r\n".join(lines).encode() + b"\r\n\r\n" + CLAIM_BODY


def _read_answer(sock: socket.socket) -> tuple[int, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def _claim_once(base: tuple[str, int], creds, token=None, wait=None) -> tuple[int, dict]:
    with socket.create_connection(base, timeout=70) as sock:
        sock.sendall(_claim_bytes(creds, f"{base[0]}:{base[1]}", token, wait))
        status, headers, _ = _read_answer(sock)
    return status, headers


def _proc(pid: int) -> tuple[float, float]:
    """(VmRSS MiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return rss / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _latencies(url: str, make_request, count: int = 30) -> dict:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        response = make_request(url)
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text[:200]
    samples.sort()
    return {"p50_ms": round(1000 * statistics.median(samples), 1),
            "p95_ms": round(1000 * samples[int(0.95 * (len(samples) - 1))], 1)}


def _heartbeat(creds):
    def send(url):
        body = b'{"version": "bench"}'
        path = CASCADE_PREFIX + HEARTBEAT
        auth = signing.signed_authorization(creds.api_key, creds.api_secret, "POST", path, "", body)
        return requests.post(url + path, data=body, timeout=10, headers={
            "Authorization": auth, "Content-Type": "application/json", "Connection": "close"})
    return send


def _admin(base_url: str, password: str) -> requests.Session:
    response = requests.post(base_url + LOGIN, json={"username": "admin", "password": password},
                             timeout=10)
    response.raise_for_status()
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {response.json()['data']['access_token']}",
                            "Connection": "close"})
    return session


class IdleChildren(threading.Thread):
    """The parked claims' children: each answer is followed at once by a claim with its token."""

    def __init__(self, creds, host: str):
        super().__init__(daemon=True)
        self.creds, self.host = creds, host
        self.answers: list[tuple[float, int]] = []  # (monotonic, status), in arrival order
        self.sockets: list[socket.socket] = []
        self._new: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()

    def add(self, sock: socket.socket) -> None:
        self.sockets.append(sock)
        self._new.put(sock)

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)
        for sock in self.sockets:
            sock.close()

    def run(self) -> None:
        with selectors.DefaultSelector() as selector:
            while not self._stopping.is_set():
                while not self._new.empty():
                    selector.register(self._new.get(), selectors.EVENT_READ)
                for key, _ in selector.select(timeout=0.2):
                    status, headers, _ = _read_answer(key.fileobj)
                    self.answers.append((time.monotonic(), status))
                    key.fileobj.sendall(_claim_bytes(self.creds, self.host,
                                                     headers.get("x-work-token"), 50))


def _app_claims(server) -> int:
    return len(_APP_CLAIM.findall(server.log_path.read_text()))


def measure(server, baseline, creds, password: str, claims: int, dispatches: int,
            load: str, idle_seconds: float) -> dict:
    host, port = "127.0.0.1", server.port
    worker = server.worker_pids()[0]
    admin = _admin(server.base_url, password)
    admin.post(server.base_url + "/api/v1/feeds/import", timeout=30, json={"feeds": [
        {"mp_name": "bench", "source_type": "rss", "source_url": "http://127.0.0.1:9/b.xml"}]})
    task = admin.post(server.base_url + "/api/v1/message-tasks", timeout=10,
                      json={"name": "bench", "cron_exp": "0 0 1 1 *"}).json()["data"]["id"]
    status, headers = _claim_once((host, port), creds)
    result: dict = {"claims": claims, "load_average": load, "first_claim": status,
                    "parks": headers.get("x-work-token") is not None}
    result["heartbeat_before_parking"] = _latencies(server.base_url, _heartbeat(creds))
    rss_before, _ = _proc(worker)
    children = IdleChildren(creds, f"{host}:{port}")
    children.start()
    try:
        setup_started = time.monotonic()
        for _ in range(claims):  # as a child does: a first claim, then park with its token
            sock = socket.create_connection((host, port), timeout=70)
            sock.sendall(_claim_bytes(creds, f"{host}:{port}", None, None))
            _, first, _ = _read_answer(sock)
            sock.sendall(_claim_bytes(creds, f"{host}:{port}", first.get("x-work-token"), 50))
            children.add(sock)
        result["setup_s"] = round(time.monotonic() - setup_started, 1)
        time.sleep(3)
        rss_after, cpu_start = _proc(worker)
        time.sleep(10)
        _, cpu_end = _proc(worker)
        result["worker_rss_mib"] = {
            "before": round(rss_before, 1), "parked": round(rss_after, 1),
            "per_claim_kib": round(1024 * (rss_after - rss_before) / max(1, claims), 2)}
        result["worker_cpu_percent_10s"] = round(10 * (cpu_end - cpu_start), 2)
        result["heartbeat_while_parked"] = _latencies(server.base_url, _heartbeat(creds))
        result["baseline_ping"] = _latencies(
            baseline.base_url, lambda url: requests.get(url + BASELINE_PATH, timeout=10,
                                                        headers={"Connection": "close"}))
        rounds = []
        for _ in range(dispatches):
            app_before, seen = _app_claims(server), len(children.answers)
            started = time.monotonic()
            admin.post(server.base_url + "/api/v1/cascade/dispatch", json={"task_id": task},
                       timeout=10).raise_for_status()
            deadline = started + 30
            leased = None
            while leased is None and time.monotonic() < deadline:
                leased = next((at for at, code in children.answers[seen:] if code == 200), None)
                time.sleep(0.01)
            time.sleep(2)
            rounds.append({
                "dispatch_to_lease_s": round(leased - started, 3) if leased else None,
                "app_claims_in_2s": _app_claims(server) - app_before,
                "answers_in_2s": len(children.answers) - seen})
        result["dispatches"] = rounds
        app_before, seen = _app_claims(server), len(children.answers)
        time.sleep(idle_seconds)
        app = _app_claims(server) - app_before
        result["idle"] = {"seconds": idle_seconds, "answers": len(children.answers) - seen,
                          "app_claims": app, "app_claims_per_s": round(app / idle_seconds, 2),
                          "paced_app_claims_per_s": round(claims / 30, 1)}
    finally:
        children.stop()
    latencies = sorted(r["dispatch_to_lease_s"] for r in rounds if r["dispatch_to_lease_s"])
    result["dispatch_to_lease_p50_s"] = round(statistics.median(latencies), 3) if latencies else None
    result["dispatch_to_lease_max_s"] = latencies[-1] if latencies else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parking", description=__doc__)
    parser.add_argument("--claims", type=int, default=1000, help="parked claims [%(default)s]")
    parser.add_argument("--dispatches", type=int, default=5)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--idle", type=float, default=70.0,
                        help="seconds of idle children re-parking [%(default)s]")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL server URL (a throwaway db)")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.claims + 512)), hard))
    workdir = make_workdir()
    database = BenchDatabase(args.pg, workdir)
    secret_key = secrets.token_urlsafe(32)
    servers = []
    try:
        url, env = database.create_migrated(secret_key)
        creds = create_nodes(url, secret_key, 1, capacity=1000)[0]
        server = subject_server(env, 1, args.threads, workdir / "parking.log")
        baseline = baseline_server(env, 1, args.threads, workdir / "baseline.log")
        servers = [server, baseline]
        for started in servers:
            started.start()
        with open("/proc/loadavg") as loadavg:
            load = " ".join(loadavg.read().split()[:3])
        result = measure(server, baseline, creds, env["WERSS_ADMIN_PASSWORD"], args.claims,
                         args.dispatches, load, args.idle)
        result["database"] = database.describe()
    finally:
        for started in servers:
            started.stop()
        database.drop()
        remove_workdir(workdir)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
