"""Big admin writes against node heartbeats on SQLite (issue 8 item 7).

``importers`` admins loop 5,000-feed imports while ``nodes`` nodes heartbeat (signed,
every second each) for ``window`` seconds; the heartbeats' statuses and latencies are
summarised. Before chunked imports: 9 of 224 heartbeats got 503 after 30 s; figures since
(the write queue, parent/write_queue.py) are in docs/OPERATIONS.md, "Admin writes and SQLite".

Run: ``python -m bench.admin_writes [--importers 4] [--nodes 30] [--window 60]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
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

BODY = b'{"version": "bench"}'
ROWS = 5000


def _importer(base_url: str, token: str, number: int, stop: threading.Event,
              done: list) -> None:
    round_ = 0
    while not stop.is_set():
        rows = [{"source_type": "rss", "mp_name": f"i{number}-{round_}-{i}",
                 "source_url": f"https://bench.example/{number}/{round_}/{i}.xml"}
                for i in range(ROWS)]
        try:
            response = requests.post(f"{base_url}/api/v1/feeds/import", json=rows, timeout=300,
                                     headers={"Authorization": f"Bearer {token}"})
            done.append(response.status_code)
        except requests.RequestException:
            done.append(None)
        round_ += 1


def _heartbeats(base_url: str, creds, stop: threading.Event, samples: list) -> None:
    path = CASCADE_PREFIX + HEARTBEAT
    while not stop.is_set():
        auth = signing.signed_authorization(creds.api_key, creds.api_secret, "POST", path, "",
                                            BODY)
        started = time.perf_counter()
        try:
            status = requests.post(base_url + path, data=BODY, timeout=60, headers={
                "Authorization": auth, "Content-Type": "application/json",
                "Connection": "close"}).status_code
        except requests.RequestException:
            status = None
        elapsed = time.perf_counter() - started
        samples.append((elapsed, status))
        stop.wait(max(0.0, 1.0 - elapsed))


def measure(importers: int, nodes: int, window: float) -> dict:
    workdir = make_workdir()
    database = BenchDatabase(None, workdir)
    secret_key = secrets.token_urlsafe(32)
    try:
        url, env = database.create_migrated(secret_key)
        fleet = create_nodes(url, secret_key, nodes)
        server = subject_server(env, 2, 8, workdir / "admin-writes.log")
        server.start()
        try:
            token = requests.post(f"{server.base_url}/api/v1/auth/login", timeout=30, json={
                "username": "admin", "password": env["WERSS_ADMIN_PASSWORD"]}
            ).json()["data"]["access_token"]
            stop, samples, imports = threading.Event(), [], []
            threads = [threading.Thread(target=_importer, args=(server.base_url, token, n, stop,
                                                                imports)) for n in range(importers)]
            threads += [threading.Thread(target=_heartbeats, args=(server.base_url, c, stop,
                                                                   samples)) for c in fleet]
            for thread in threads:
                thread.start()
            time.sleep(window)
            stop.set()
            for thread in threads:
                thread.join(300)
        finally:
            server.stop()
    finally:
        database.drop()
        remove_workdir(workdir)
    latencies = sorted(seconds for seconds, _ in samples)
    return {
        "importers": importers, "nodes": nodes, "window_s": window,
        "imports_done": len(imports), "imports_ok": imports.count(200),
        "heartbeats": len(samples),
        "heartbeats_ok": sum(1 for _, status in samples if status == 200),
        "heartbeats_503": sum(1 for _, status in samples if status == 503),
        "heartbeats_failed": sum(1 for _, status in samples if status is None),
        "over_5s": sum(1 for seconds in latencies if seconds > 5),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(latencies[int(0.95 * (len(latencies) - 1))], 3) if latencies else None,
        "max_s": round(latencies[-1], 3) if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.admin_writes", description=__doc__)
    parser.add_argument("--importers", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = measure(args.importers, args.nodes, args.window)
    print(json.dumps(result, indent=2))
    return 0 if result["heartbeats_503"] == 0 and result["heartbeats_failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
