"""`python -m bench.fleet`: thousands of simulated children against one real `werss-parent serve`.

Each simulated child is an asyncio task that speaks real HTTP/1.1 (one connection per
request, `Connection: close`: a child calls every few seconds to minutes, past gunicorn's
keep-alive) with signed AK-SK, on the seed's intervals divided by ``--compress``:

- a heartbeat every 60 s;
- a sync every 300 s: `GET /feeds/changes` and `GET /message-tasks/changes` from its cursor
  with the last ETag (a 304 while nothing changed);
- a claim (`{"max": 1, "wait": 0}`) every ``--claim-every`` seconds (compressed too), and
  a `complete` for any lease it gets.

Start times are spread over one heartbeat interval. Meanwhile an admin dispatches a
one-feed task every few seconds; the time from each dispatch to the moment a child holds
its lease is the "reaches an idle child" figure. Reported: requests, errors, p50/p99 per
route, dispatch-to-claim p50/p95, and the parent's CPU (all gunicorn processes, % of one
core) over the run. Real time is compressed (``--compress 10``: heartbeats every 6 s), so
N children here load the parent like 10 × N children on the seed's intervals.

    python -m bench.fleet --children 1000                 # SQLite
    python -m bench.fleet --children 10000 --pg           # PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from urllib.parse import urlsplit

import requests

from shared import signing
from shared import paths
from shared.paths import CASCADE_PREFIX, LOGIN

from .children import group_cpu_seconds
from .database import (
    DEFAULT_PG_URL, BenchDatabase, create_nodes, make_workdir, parent_env, remove_workdir,
    run_parent_cli,
)
from .servers import subject_server

HEARTBEAT, SYNC = 60.0, 300.0


class Stats:
    def __init__(self):
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.first_error: str | None = None
        self.claimed_at: dict[str, float] = {}

    def record(self, route: str, seconds: float, ok: bool, detail: str = "") -> None:
        self.latencies.setdefault(route, []).append(seconds)
        if not ok:
            self.errors[route] = self.errors.get(route, 0) + 1
            self.first_error = self.first_error or f"{route}: {detail}"[:300]


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))]


async def http(host: str, port: int, method: str, path: str, query: str = "",
               headers: dict | None = None, body: bytes = b"") -> tuple[int, dict, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        target = path + (f"?{query}" if query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    head, _, content = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), response_headers, content


class Child:
    def __init__(self, creds, host: str, port: int, stats: Stats, compress: float,
                 claim_every: float):
        self.creds, self.host, self.port, self.stats = creds, host, port, stats
        self.compress, self.claim_every = compress, claim_every
        self.cursors = {paths.FEED_CHANGES: "0", paths.MESSAGE_TASK_CHANGES: "0"}
        self.etags: dict[str, str] = {}

    async def call(self, route: str, method: str, path: str, query: str = "",
                   body: bytes = b"", extra: dict | None = None, expect=(200,)):
        full = CASCADE_PREFIX + path
        auth = signing.signed_authorization(self.creds.api_key, self.creds.api_secret, method,
                                            full, query, body)
        headers = {"Authorization": auth, **(extra or {})}
        if body:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        try:
            status, response_headers, content = await http(self.host, self.port, method, full,
                                                           query, headers, body)
        except OSError as exc:
            self.stats.record(route, time.perf_counter() - started, False, repr(exc))
            return None, {}, b""
        self.stats.record(route, time.perf_counter() - started, status in expect,
                          f"HTTP {status} {content[:120]!r}")
        return status, response_headers, content

    async def heartbeat(self):
        await self.call("heartbeat", "POST", paths.HEARTBEAT, body=b'{"version":"fleet"}')

    async def sync(self):
        for path in self.cursors:
            extra = {"If-None-Match": self.etags[path]} if path in self.etags else None
            status, headers, content = await self.call(
                "sync (changes)", "GET", path, f"limit=500&since={self.cursors[path]}",
                extra=extra, expect=(200, 304))
            if status == 200:
                self.cursors[path] = json.loads(content)["data"]["cursor"]
                self.etags[path] = headers.get("etag", "")

    async def claim(self):
        status, _, content = await self.call("claim", "POST", paths.CLAIM,
                                             body=b'{"max": 1, "wait": 0}', expect=(200, 204))
        if status != 200:
            return
        for lease in json.loads(content)["data"]["leases"]:
            self.stats.claimed_at.setdefault(lease["allocation_id"], time.monotonic())
            body = json.dumps({"results": [{"mp_id": lease["feeds"][0]["id"],
                                            "success": True}]}).encode()
            await self.call("complete", "POST",
                            paths.LEASE_COMPLETE.format(lease_id=lease["lease_id"]),
                            body=body)

    async def run(self, until: float):
        heartbeat, sync = HEARTBEAT / self.compress, SYNC / self.compress
        now = time.monotonic()
        next_beat = now + random.uniform(0, heartbeat)
        next_sync = now + random.uniform(0, sync)
        next_claim = now + random.uniform(0, self.claim_every)
        while True:
            moment = min(next_beat, next_sync, next_claim)
            if moment >= until:
                return
            await asyncio.sleep(max(0.0, moment - time.monotonic()))
            if moment == next_beat:
                next_beat += heartbeat
                await self.heartbeat()
            elif moment == next_sync:
                next_sync += sync
                await self.sync()
            else:
                next_claim += self.claim_every
                await self.claim()


def _dispatcher(base_url: str, password: str, task_id: str, until: float, every: float,
                dispatched: dict[str, float]) -> None:
    session = requests.Session()
    token = session.post(base_url + LOGIN, json={"username": "admin", "password": password},
                         timeout=30).json()["data"]["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    time.sleep(every)
    while time.monotonic() < until - every:
        sent = time.monotonic()
        response = session.post(base_url + CASCADE_PREFIX + "/dispatch", json={"task_id": task_id},
                                timeout=30)
        if response.status_code == 201:
            for allocation in response.json()["data"]["allocations"]:
                dispatched[allocation if isinstance(allocation, str) else allocation["id"]] = sent
        time.sleep(every)


def _seed_task(database_url: str, secret_key: str) -> str:
    from parent import create_app
    from parent.extensions import db
    from parent.services import feeds, message_tasks

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    with app.app_context():
        feeds.create_feed({"mp_name": "fleet feed", "source_type": "rss",
                           "source_url": "http://127.0.0.1:9/fleet.xml"})
        task = message_tasks.create_task({"name": "fleet", "message_type": 1,
                                          "web_hook_url": "http://127.0.0.1:9/hook",
                                          "message_template": "x", "cron_exp": "0 0 1 1 *"})
        db.session.commit()
        task_id = task.id
        db.session.remove()
        db.engine.dispose()
    return task_id


async def _run_fleet(fleet, host, port, stats, args, until):
    children = [Child(creds, host, port, stats, args.compress, args.claim_every)
                for creds in fleet]
    await asyncio.gather(*(child.run(until) for child in children))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", nargs="?", const=DEFAULT_PG_URL, default=None, metavar="URL")
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--compress", type=float, default=10.0,
                        help="divide the seed's intervals by this [%(default)s]")
    parser.add_argument("--claim-every", type=float, default=5.0,
                        help="seconds between one child's claims (already compressed) "
                             "[%(default)s]")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds [%(default)s]")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--dispatch-every", type=float, default=3.0)
    args = parser.parse_args(argv)
    workdir = make_workdir()
    database = BenchDatabase(args.pg, workdir)
    server = None
    try:
        url = database.create()
        secret_key = secrets.token_urlsafe(32)
        env = parent_env(url, secret_key, {"PROMETHEUS_MULTIPROC_DIR": str(workdir)})
        run_parent_cli(["db", "upgrade"], env)
        started = time.perf_counter()
        fleet = create_nodes(url, secret_key, args.children, prefix="fleet")
        task_id = _seed_task(url, secret_key)
        print(f"fleet: {database.backend}; {args.children:,} nodes created in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        server = subject_server(env, args.workers, args.server_threads, workdir / "parent.log")
        server.start()
        split = urlsplit(server.base_url)
        stats, dispatched = Stats(), {}
        until = time.monotonic() + args.duration
        import threading

        admin = threading.Thread(target=_dispatcher, daemon=True, args=(
            server.base_url, env["WERSS_ADMIN_PASSWORD"], task_id, until, args.dispatch_every,
            dispatched))
        pids = [server.process.pid, *server.worker_pids()]
        cpu_before, wall = group_cpu_seconds(pids), time.perf_counter()
        client_before = time.process_time()
        admin.start()
        asyncio.run(_run_fleet(fleet, split.hostname, split.port, stats, args, until))
        elapsed = time.perf_counter() - wall
        cpu = 100 * (group_cpu_seconds(pids) - cpu_before) / elapsed
        client_cpu = 100 * (time.process_time() - client_before) / elapsed
        admin.join(timeout=30)
        reach = [stats.claimed_at[a] - t for a, t in dispatched.items() if a in stats.claimed_at]
        print(f"\nfleet: {args.children:,} children, intervals ÷{args.compress:g} "
              f"(heartbeat {HEARTBEAT / args.compress:g} s, sync {SYNC / args.compress:g} s, "
              f"claim every {args.claim_every:g} s), {args.duration:g} s, "
              f"{args.workers} workers, {database.backend}")
        print(f"{'route':16} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8}")
        for route, values in sorted(stats.latencies.items()):
            print(f"{route:16} {len(values):>9,} {stats.errors.get(route, 0):>7} "
                  f"{1000 * _percentile(values, 0.5):>8.1f} {1000 * _percentile(values, 0.99):>8.1f}")
        print(f"dispatch -> a child holds the lease: {len(reach)}/{len(dispatched)} claimed; "
              f"p50 {_percentile(reach, 0.5) or float('nan'):.2f} s, "
              f"p95 {_percentile(reach, 0.95) or float('nan'):.2f} s")
        print(f"parent CPU over the run: {cpu:.0f}% of one core; this simulator's: "
              f"{client_cpu:.0f}% (near 100%: the client, not the parent, set the latencies)")
        if stats.first_error:
            print(f"first error: {stats.first_error}")
        return 1 if stats.errors else 0
    finally:
        if server:
            server.stop()
        database.drop()
        remove_workdir(workdir)


if __name__ == "__main__":
    raise SystemExit(main())
