"""`python -m bench.fleet`: thousands of simulated children against one real `werss-parent serve`.

Each simulated child is two asyncio tasks speaking real HTTP/1.1 with signed AK-SK:

- its **claim loop** follows the protocol as `werss-child` does (child/agent.py
  `_claim_loop`, docs/PROTOCOL.md#post-claim) on a kept-alive connection of its own:
  `{"max": 1, "wait": 25}` with a fresh Idempotency-Key; when the last answer carried
  `X-Work-Token` the next claim goes at once with that token and `Prefer: wait=50` (read
  timeout 65 s) and is parked by the parent; otherwise it sleeps the `Retry-After` (at most
  25 s, spread by up to 10 %); never more than one claim a second while empty answers
  come back at once. A lease is completed at once (a new connection) and claimed again.
  Claims are never compressed: they follow the parent's answers in real time.
- its **heartbeat/sync loop** (one connection per request, `Connection: close`: a child
  calls every minute or so, past gunicorn's keep-alive) on the seed's intervals divided by
  ``--compress``: a heartbeat every 60 s; a sync every 300 s (`GET /feeds/changes` and
  `GET /message-tasks/changes` from its cursor with the last ETag, a 304 while nothing
  changed). First moments are spread over one interval; claims start over ``--ramp``.
  Each child starts as one of a fleet that has been running does (after a restart of the
  parent, say): holding the current cursors and ETags, which the simulator reads once
  before the run, so its syncs are 304s while nothing changes. ``--cold`` starts every
  child from cursor 0 instead, as a fleet of new children: each child's first sync, spread
  over the first 300 s, is then a full pull written to the sync log.

The run has three parts: the ramp (children start), an **idle window** (``--idle`` s, no
dispatches: the parent's idle CPU; ``--settle`` s after the ramp, 0 by default, so that the
children's start — first claims, backpressure — can be kept out of it), then an admin
dispatches a one-feed task every ``--dispatch-every`` seconds until the end and the
simulator measures dispatch → a child holds the lease. Reported: requests, errors, p50/p99
per route (a parked claim's latency is its time parked, reported apart) over the run and,
beside it, the p99 of what finished from the idle window on (the fleet once every child
has started; the goals judge the run), dispatch → lease p50/p95, the parent's CPU (master
and workers, % of one core) over the run and over the idle window, this simulator's CPU,
the parent workers' open-file limit and the most claim connections open at once.

    python -m bench.fleet --children 1000                          # SQLite, time ÷1
    python -m bench.fleet --children 10000 --pg                    # PostgreSQL
    python -m bench.fleet --children 1000 --parent-root ../park    # another checkout's parent

``--pg [URL]``: PostgreSQL, a throwaway database created (and dropped) from this admin URL
(default: the ``postgres`` database on 127.0.0.1).
``--json PATH`` writes ``run_fleet()``'s dict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests

from child.client import PARK_WAIT
from shared import paths, signing
from shared.envelope import IDEMPOTENCY_HEADER, REQUEST_ID_HEADER, WORK_TOKEN_HEADER
from shared.paths import CASCADE_PREFIX, LOGIN

from .children import server_cpu_seconds
from .database import BenchDatabase, create_nodes, make_workdir, parent_env, remove_workdir
from .servers import REPO_ROOT, ServerProcess, free_port, subject_server

HEARTBEAT, SYNC = 60.0, 300.0
CLAIM_WAIT = 25  # werss-child's default claim_wait: the longest Retry-After it sleeps
REQUEST_TIMEOUT = 30.0
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
GOALS = {"p99_ms": 100.0, "dispatch_p95_s": 1.0, "idle_cpu_pct": 25.0}
_TOKEN = WORK_TOKEN_HEADER.lower()
# Routes a claim is counted under: sent without a token (the app answers), or parked and
# then released to the app, or answered by the worker itself without the app: "no change"
# after its wait, or "come back later" while the app is backed up (backpressure).
PARKED_APP, PARKED_WORKER = "claim_parked_app", "claim_parked_worker"
DEFERRED = "claim_deferred"
# Each pull is counted under its own name, as bench/goals.py reads them.
_PULLS = {paths.FEED_CHANGES: "feed_changes", paths.MESSAGE_TASK_CHANGES: "task_changes"}


class Stats:
    def __init__(self):
        self.latencies: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.first_error: str | None = None
        self.claimed_at: dict[str, float] = {}
        self.tokens_seen = 0  # claim answers that carried X-Work-Token
        self.reconnects = 0  # kept-alive claim connections the server had closed
        self.open_claim_connections = 0
        self.peak_claim_connections = 0
        self.counting = True
        self.idle_window = (0.0, 0.0)  # monotonic from, to: requests finished then are counted
        self.idle_requests: dict[str, int] = {}
        self.idle_errors: dict[str, int] = {}  # of idle_requests: errors (timeouts among them)
        # Requests that finished from the idle window on, to the end: the fleet after its start.
        self.after_start: dict[str, list[float]] = {}

    def record(self, route: str, seconds: float, ok: bool, detail: str = "") -> None:
        if not self.counting:
            return  # the run is over: requests cut off by the stop are not errors
        self.latencies.setdefault(route, []).append(seconds)
        moment = time.monotonic()
        if self.idle_window[0] <= moment:
            self.after_start.setdefault(route, []).append(seconds)
            if moment < self.idle_window[1]:
                self.idle_requests[route] = self.idle_requests.get(route, 0) + 1
                if not ok:
                    self.idle_errors[route] = self.idle_errors.get(route, 0) + 1
        if not ok:
            self.errors[route] = self.errors.get(route, 0) + 1
            self.first_error = self.first_error or f"{route}: {detail}"[:300]


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))]


class ServerClosedError(ConnectionError):
    """The server closed a kept-alive connection before answering."""


class Connection:
    """One HTTP/1.1 connection, kept alive across requests unless told to close."""

    def __init__(self, host: str, port: int, stats: Stats, claim: bool = False):
        self.host, self.port, self.stats, self.claim = host, port, stats, claim
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if self.claim:
            self.stats.open_claim_connections += 1
            self.stats.peak_claim_connections = max(self.stats.peak_claim_connections,
                                                    self.stats.open_claim_connections)

    def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        self.reader = self.writer = None
        if self.claim:
            self.stats.open_claim_connections -= 1

    async def request(self, method: str, target: str, headers: dict, body: bytes,
                      keep_alive: bool) -> tuple[int, dict, bytes]:
        """Send one request and read its answer; a kept-alive connection the server closed
        meanwhile is opened again and the request sent once more (it never reached the app)."""
        for attempt in (1, 2):
            fresh = self.writer is None or self.reader is None or self.reader.at_eof()
            if fresh:
                if self.writer is not None and self.claim:
                    self.stats.reconnects += 1  # the server closed it while it idled
                self.close()
                await self._open()
            try:
                return await self._exchange(method, target, headers, body, keep_alive)
            except (ServerClosedError, ConnectionResetError, BrokenPipeError):
                self.close()
                if fresh or attempt == 2:
                    raise
                if self.claim:
                    self.stats.reconnects += 1
        raise AssertionError("unreachable")

    async def _exchange(self, method, target, headers, body, keep_alive):
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]
        if not keep_alive:
            lines.append("Connection: close")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise ServerClosedError("closed before answering") from None
            raise
        status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
        response_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        if status in (204, 304) or 100 <= status < 200:
            content = b""
        elif "content-length" in response_headers:
            content = await self.reader.readexactly(int(response_headers["content-length"]))
        elif response_headers.get("transfer-encoding", "").lower() == "chunked":
            content = await self._read_chunked()
        else:
            content = await self.reader.read()
            response_headers["connection"] = "close"
        if not keep_alive or response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, content

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


class Child:
    def __init__(self, creds, host: str, port: int, stats: Stats, compress: float,
                 synced: tuple[dict[str, str], dict[str, str]] | None = None):
        """``synced``: (cursors, ETags) by changes path, as a child that synced before holds."""
        self.creds, self.host, self.port, self.stats = creds, host, port, stats
        self.compress = compress
        self.cursors = {paths.FEED_CHANGES: "0", paths.MESSAGE_TASK_CHANGES: "0"}
        self.etags: dict[str, str] = {}
        if synced is not None:
            self.cursors.update(synced[0])
            self.etags.update(synced[1])
        self.claims = Connection(host, port, stats, claim=True)
        self.token: str | None = None
        self.backoff = 0.0

    async def call(self, route: str, method: str, path: str, query: str = "",
                   body: bytes = b"", extra: dict | None = None, expect=(200,),
                   connection: Connection | None = None, timeout: float = REQUEST_TIMEOUT,
                   classify: Callable[[dict], str] | None = None):
        """``classify(response headers)`` names the route an answer is counted under."""
        full = CASCADE_PREFIX + path
        auth = signing.signed_authorization(self.creds.api_key, self.creds.api_secret, method,
                                            full, query, body)
        headers = {"Authorization": auth, **(extra or {})}
        if body:
            headers["Content-Type"] = "application/json"
        target = full + (f"?{query}" if query else "")
        conn = connection or Connection(self.host, self.port, self.stats)
        started = time.perf_counter()
        try:
            status, response_headers, content = await asyncio.wait_for(
                conn.request(method, target, headers, body, keep_alive=connection is not None),
                timeout)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            conn.close()
            self.stats.record(route, time.perf_counter() - started, False, repr(exc))
            return None, {}, b""
        if classify:
            route = classify(response_headers)
        self.stats.record(route, time.perf_counter() - started, status in expect,
                          f"HTTP {status} {content[:120]!r}")
        return status, response_headers, content

    async def heartbeat(self):
        await self.call("heartbeat", "POST", paths.HEARTBEAT, body=b'{"version":"fleet"}')

    async def sync(self):
        for path in self.cursors:
            extra = {"If-None-Match": self.etags[path]} if path in self.etags else None
            status, headers, content = await self.call(
                _PULLS[path], "GET", path, f"limit=500&since={self.cursors[path]}",
                extra=extra, expect=(200, 304))
            if status == 200:
                self.cursors[path] = json.loads(content)["data"]["cursor"]
                self.etags[path] = headers.get("etag", "")

    async def claim(self) -> float | None:
        """One claim as werss-child sends it; returns the pause before the next (None: at once)."""
        extra = {IDEMPOTENCY_HEADER: uuid.uuid4().hex}
        route, timeout = "claim", CLAIM_WAIT + 15.0
        if self.token:
            extra.update({WORK_TOKEN_HEADER: self.token, "Prefer": f"wait={PARK_WAIT}"})
            route, timeout = PARKED_APP, PARK_WAIT + 15.0
        started = time.monotonic()
        status, headers, content = await self.call(
            route, "POST", paths.CLAIM, body=b'{"max": 1, "wait": %d}' % CLAIM_WAIT,
            extra=extra, expect=(200, 204), connection=self.claims, timeout=timeout,
            classify=_claim_route(route))
        self.token = headers.get(_TOKEN) or None
        if self.token:
            self.stats.tokens_seen += 1
        if status is None or status not in (200, 204):
            # Counted as an error; back off as the child's claim loop does (1, 2, 4 … 60 s,
            # jittered), so a struggling parent is not buried under retries.
            self.backoff = min(60.0, max(1.0, self.backoff * 2))
            return random.uniform(self.backoff / 2, self.backoff)
        self.backoff = 0.0
        leases = json.loads(content)["data"]["leases"] if status == 200 else []
        for lease in leases:
            self.stats.claimed_at.setdefault(lease["allocation_id"], time.monotonic())
            body = json.dumps({"results": [{"mp_id": lease["feeds"][0]["id"],
                                            "success": True}]}).encode()
            await self.call("complete", "POST",
                            paths.LEASE_COMPLETE.format(lease_id=lease["lease_id"]), body=body)
        if leases:
            return None
        took = time.monotonic() - started
        retry_after = _seconds(headers.get("retry-after"))
        if self.token:
            pause = 0.0
        elif retry_after is not None:
            pause = min(retry_after, CLAIM_WAIT) * random.uniform(1.0, 1.1)
        else:
            pause = 0.0
        return max(pause, 1.0 - took)

    async def claim_loop(self, start: float, until: float):
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        try:
            while time.monotonic() < until:
                pause = await self.claim()
                if pause:
                    await asyncio.sleep(pause)
        finally:
            self.claims.close()

    async def beat_and_sync(self, until: float):
        heartbeat, sync = HEARTBEAT / self.compress, SYNC / self.compress
        now = time.monotonic()
        next_beat = now + random.uniform(0, heartbeat)
        next_sync = now + random.uniform(0, sync)
        while True:
            moment = min(next_beat, next_sync)
            if moment >= until:
                return
            await asyncio.sleep(max(0.0, moment - time.monotonic()))
            if moment == next_beat:
                next_beat += heartbeat
                await self.heartbeat()
            else:
                next_sync += sync
                await self.sync()


def _claim_route(sent: str) -> Callable[[dict], str]:
    """Name the route a claim ``sent`` under (``claim`` or ``PARKED_APP``) is counted under.

    Every answer of the app carries ``X-Request-ID``; the worker's own answers do not.
    Of those, "no change" says ``Preference-Applied`` (the wait ran out, or the rest of a
    herd after a change) and "come back later" (backpressure) does not.
    """
    def classify(headers: dict) -> str:
        if REQUEST_ID_HEADER.lower() in headers:
            return sent
        return PARKED_WORKER if "preference-applied" in headers else DEFERRED

    return classify


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _dispatcher(base_url: str, password: str, task_id: str, start: float, until: float,
                every: float, dispatched: dict[str, float], failures: list[str]) -> None:
    session = requests.Session()
    token = session.post(base_url + LOGIN, json={"username": "admin", "password": password},
                         timeout=30).json()["data"]["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    time.sleep(max(0.0, start - time.monotonic()))
    while time.monotonic() < until - every:
        sent = time.monotonic()
        try:
            response = session.post(base_url + CASCADE_PREFIX + "/dispatch",
                                    json={"task_id": task_id}, timeout=30)
        except requests.RequestException as exc:
            failures.append(f"dispatch: {exc!r}"[:300])
            continue
        if response.status_code == 201:
            for allocation in response.json()["data"]["allocations"]:
                dispatched[allocation if isinstance(allocation, str) else allocation["id"]] = sent
        else:
            failures.append(f"dispatch: HTTP {response.status_code} {response.text[:200]}")
        time.sleep(max(0.0, sent + every - time.monotonic()))


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


def _nofile_limit(pid: int) -> int | None:
    """The soft open-file limit of a process (Linux), None if it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _raise_own_nofile(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and soft != resource.RLIM_INFINITY:
        soft = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _parent_server(env: dict, workers: int, threads: int, log_path: Path,
                   parent_root: Path | None) -> ServerProcess:
    if parent_root is None:
        return subject_server(env, workers, threads, log_path)
    # Another checkout's parent with its own venv; -P keeps this checkout (the working
    # directory) off its sys.path, so its own `parent` package is the one imported.
    python = parent_root / ".venv" / "bin" / "python"
    port = free_port()
    argv = [str(python), "-P", "-m", "parent", "serve", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads)]
    return ServerProcess(f"subject ({parent_root} werss-parent serve)", argv, env, port,
                         "/healthz", log_path)


def _migrate(env: dict, parent_root: Path | None) -> None:
    import subprocess

    python = str(parent_root / ".venv" / "bin" / "python") if parent_root else sys.executable
    completed = subprocess.run([python, "-P", "-m", "parent", "db", "upgrade"],
                               cwd=parent_root or REPO_ROOT, env=env, capture_output=True,
                               text=True, timeout=300)
    if completed.returncode != 0:
        raise RuntimeError("db upgrade failed:\n" + (completed.stdout + completed.stderr)[-2000:])


def _synced_state(base_url: str, creds) -> tuple[dict[str, str], dict[str, str]]:
    """The cursors and ETags a child holds once synced: read once, with one child's key."""
    cursors, etags = {}, {}
    for path in (paths.FEED_CHANGES, paths.MESSAGE_TASK_CHANGES):
        cursor, full = "0", CASCADE_PREFIX + path
        while True:
            query = f"limit=500&since={cursor}"
            response = requests.get(f"{base_url}{full}?{query}", timeout=60, headers={
                "Authorization": signing.signed_authorization(
                    creds.api_key, creds.api_secret, "GET", full, query, b"")})
            response.raise_for_status()
            data = response.json()["data"]
            cursor = data["cursor"]
            if not data["has_more"]:
                break
        cursors[path], etags[path] = cursor, response.headers["ETag"]
    return cursors, etags


async def _simulate(fleet, host, port, stats, compress, ramp, until, synced=None):
    children = [Child(creds, host, port, stats, compress, synced) for creds in fleet]
    now = time.monotonic()
    claims = [asyncio.ensure_future(child.claim_loop(now + random.uniform(0, ramp), until))
              for child in children]
    beats = [asyncio.ensure_future(child.beat_and_sync(until)) for child in children]
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    # The run is over: parked claims (which would wait up to 50 s more) are cut off, and
    # what is still in flight is not counted.
    stats.counting = False
    for task in claims:
        task.cancel()
    await asyncio.wait(beats, timeout=10)
    for task in beats:
        task.cancel()
    await asyncio.gather(*claims, *beats, return_exceptions=True)


def _route_figures(stats: Stats) -> dict:
    figures = {}
    for route, values in sorted(stats.latencies.items()):
        after = stats.after_start.get(route, [])
        figures[route] = {"requests": len(values), "errors": stats.errors.get(route, 0),
                          "p50_ms": round(1000 * (_percentile(values, 0.5) or 0), 1),
                          "p99_ms": round(1000 * (_percentile(values, 0.99) or 0), 1),
                          "after_start_requests": len(after),
                          "after_start_p99_ms": _rounded(
                              None if not after else 1000 * (_percentile(after, 0.99) or 0), 1)}
    return figures


def run_fleet(children: int, pg_url: str | None = None, duration: float = 120.0,
              compress: float = 1.0, *, ramp: float | None = None, idle: float | None = None,
              settle: float = 0.0, dispatch_every: float = 3.0, workers: int = 2,
              threads: int = 8, cold: bool = False,
              parent_root: str | Path | None = None, log=print) -> dict:
    """Run ``children`` simulated children for ``duration`` s against a fresh parent.

    ``pg_url``: a PostgreSQL admin URL a throwaway database is created from (None: SQLite);
    ``compress`` divides the heartbeat and sync intervals; ``ramp`` (default: a third of the
    run, at most 60 s) spreads the first claims; ``idle`` (default: a quarter of the run)
    is the window without dispatches, ``settle`` s after the ramp (0: right after it, where
    the children's start still shows); ``cold``: children start from cursor 0 (new
    children) instead of holding the current cursors; ``parent_root``: a checkout with its own
    ``.venv`` whose parent is served instead of this one's. Returns (figures from this run):

    - ``children``, ``backend`` ("sqlite"/"postgresql"), ``duration_s``, ``cold_start``,
      ``compress``,
      ``time_compressed`` (bool), ``workers``, ``threads``, ``parent_root`` (str or None);
    - ``routes``: {route: {requests, errors, p50_ms, p99_ms, after_start_requests,
      after_start_p99_ms (None when none finished from the idle window on)}} for "heartbeat",
      "feed_changes", "task_changes" (the sync's two pulls), "claim" (sent without a
      token), "claim_parked_app" and "claim_parked_worker" (sent with a token, then
      answered by the app or by the worker itself — its answers say Preference-Applied;
      the latency includes the time parked), "claim_deferred" (with or without a token,
      answered "come back later" by the worker: no X-Request-ID, no Preference-Applied),
      "complete";
    - ``requests``, ``errors`` (totals), ``first_error`` (str or None);
    - ``parent_parks`` (bool: some claim answer carried X-Work-Token), ``tokens_seen``,
      ``claim_reconnects`` (kept-alive claim connections the server had closed),
      ``peak_claim_connections``, ``parent_nofile`` (a worker's soft open-file limit);
    - ``dispatches`` (allocations dispatched), ``dispatch_to_lease``: {``count`` (of them
      leased within the run), ``p50_s``, ``p95_s``} from the admin sending the dispatch to
      a child holding the allocation's lease (None without data);
    - ``parent_cpu_pct`` (master and workers, % of one core, whole run), ``parent_cpu_idle_pct``
      (same over the idle window), ``idle_window_s``, ``idle_requests_per_s`` ({route:
      requests per second that finished in the idle window}), ``idle_errors_per_s`` (of
      them, errors: timeouts among them), ``idle_app_claims_per_s`` (claims the app
      answered per second in the idle window, errors not counted), ``simulator_cpu_pct``;
    - ``load_average``: (1, 5, 15 min) at the start and ``load_average_end`` at the end;
    - ``goals``: {name: bool} against issue 14 — ``no_errors``, ``heartbeat_p99_lt_100ms``,
      ``pull_p99_lt_100ms``, ``dispatch_p95_lt_1s``, ``idle_cpu_lt_25pct``.
    """
    ramp = min(60.0, duration / 3) if ramp is None else ramp
    idle = duration / 4 if idle is None else idle
    root = Path(parent_root).resolve() if parent_root else None
    workdir = make_workdir()
    database = BenchDatabase(pg_url, workdir)
    server = None
    load_start = os.getloadavg()
    try:
        url = database.create()
        secret_key = secrets.token_urlsafe(32)
        env = parent_env(url, secret_key, {"PROMETHEUS_MULTIPROC_DIR": str(workdir)})
        _migrate(env, root)
        started = time.perf_counter()
        fleet = create_nodes(url, secret_key, children, prefix="fleet")
        task_id = _seed_task(url, secret_key)
        log(f"fleet: {database.backend}; {children:,} nodes created in "
            f"{time.perf_counter() - started:.0f} s")
        server = _parent_server(env, workers, threads, workdir / "parent.log", root)
        server.start()
        # After the parent started: it keeps the limit it would have had without us.
        _raise_own_nofile(children + 1024)
        split = urlsplit(server.base_url)
        synced = None if cold else _synced_state(server.base_url, fleet[0])
        stats, dispatched, failures = Stats(), {}, []
        begin = time.monotonic()
        idle_from, until = begin + ramp + settle, begin + duration
        idle_to = min(until, idle_from + idle)
        stats.idle_window = (idle_from, idle_to)
        admin = threading.Thread(target=_dispatcher, daemon=True, args=(
            server.base_url, env["WERSS_ADMIN_PASSWORD"], task_id, idle_to, until,
            dispatch_every, dispatched, failures))
        nofile = _nofile_limit(([server.process.pid] + server.worker_pids())[-1])
        cpu_marks: dict[str, float] = {}

        def mark(name: str, at: float) -> None:
            time.sleep(max(0.0, at - time.monotonic()))
            cpu_marks[name] = server_cpu_seconds(server)
            cpu_marks[name + "_at"] = time.monotonic()

        marker = threading.Thread(target=lambda: (mark("idle_from", idle_from),
                                                  mark("idle_to", idle_to)), daemon=True)
        cpu_before, wall = server_cpu_seconds(server), time.monotonic()
        client_before = time.process_time()
        admin.start()
        marker.start()
        asyncio.run(_simulate(fleet, split.hostname, split.port, stats, compress, ramp, until,
                              synced))
        cpu_after, elapsed = server_cpu_seconds(server), time.monotonic() - wall
        client_cpu = 100 * (time.process_time() - client_before) / elapsed
        admin.join(timeout=30)
        marker.join(timeout=5)
        idle_seconds = cpu_marks.get("idle_to_at", 0) - cpu_marks.get("idle_from_at", 0)
        idle_cpu = (100 * (cpu_marks["idle_to"] - cpu_marks["idle_from"]) / idle_seconds
                    if idle_seconds > 0 else None)
        reach = [stats.claimed_at[a] - t for a, t in dispatched.items() if a in stats.claimed_at]
        routes = _route_figures(stats)
        errors = sum(stats.errors.values()) + len(failures)
        result = {
            "children": children, "backend": database.backend, "duration_s": duration,
            "cold_start": cold,
            "compress": compress, "time_compressed": compress != 1, "workers": workers,
            "threads": threads, "parent_root": str(root) if root else None,
            "routes": routes, "requests": sum(len(v) for v in stats.latencies.values()),
            "errors": errors, "first_error": stats.first_error or (failures[0] if failures
                                                                   else None),
            "parent_parks": stats.tokens_seen > 0, "tokens_seen": stats.tokens_seen,
            "claim_reconnects": stats.reconnects,
            "peak_claim_connections": stats.peak_claim_connections, "parent_nofile": nofile,
            "dispatches": len(dispatched),
            "dispatch_to_lease": {"count": len(reach),
                                  "p50_s": _rounded(_percentile(reach, 0.5), 3),
                                  "p95_s": _rounded(_percentile(reach, 0.95), 3)},
            "parent_cpu_pct": round(100 * (cpu_after - cpu_before) / elapsed, 1),
            "parent_cpu_idle_pct": _rounded(idle_cpu, 1), "idle_window_s": round(idle_seconds, 1),
            "idle_settle_s": settle,
            "idle_requests_per_s": {route: round(count / idle_seconds, 1) for route, count
                                    in sorted(stats.idle_requests.items())} if idle_seconds > 0
            else {},
            "idle_errors_per_s": {route: round(count / idle_seconds, 1) for route, count
                                  in sorted(stats.idle_errors.items())} if idle_seconds > 0
            else {},
            "idle_app_claims_per_s": round(sum(
                stats.idle_requests.get(r, 0) - stats.idle_errors.get(r, 0)
                for r in ("claim", PARKED_APP)) / idle_seconds, 1) if idle_seconds > 0 else None,
            "simulator_cpu_pct": round(client_cpu, 1),
            "load_average": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        }
        result["goals"] = _goals(result)
        _print(result, ramp, dispatch_every, log)
        return result
    finally:
        if server:
            server.stop()
        database.drop()
        remove_workdir(workdir)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _goals(result: dict) -> dict:
    def p99(route):
        figures = result["routes"].get(route)
        return figures is not None and figures["p99_ms"] < GOALS["p99_ms"]

    p95, idle = result["dispatch_to_lease"]["p95_s"], result["parent_cpu_idle_pct"]
    return {"no_errors": result["errors"] == 0, "heartbeat_p99_lt_100ms": p99("heartbeat"),
            "pull_p99_lt_100ms": p99("feed_changes") and p99("task_changes"),
            "dispatch_p95_lt_1s": p95 is not None and p95 < GOALS["dispatch_p95_s"],
            "idle_cpu_lt_25pct": idle is not None and idle < GOALS["idle_cpu_pct"]}


def _print(result: dict, ramp: float, dispatch_every: float, log) -> None:
    compress = result["compress"]
    timing = (f"time compressed ÷{compress:g} for heartbeats and syncs (heartbeat "
              f"{HEARTBEAT / compress:g} s, sync {SYNC / compress:g} s)"
              if result["time_compressed"] else
              f"time not compressed (heartbeat {HEARTBEAT:g} s, sync {SYNC:g} s)")
    mode = ("the parent parks claims (X-Work-Token)" if result["parent_parks"]
            else "the parent does not park: claims follow Retry-After")
    log(f"\nfleet: {result['children']:,} children, {result['duration_s']:g} s "
        f"(ramp {ramp:g} s, idle window {result['idle_window_s']:g} s"
        + (f" from {result['idle_settle_s']:g} s after it" if result.get("idle_settle_s") else "")
        + f", then a dispatch every "
        f"{dispatch_every:g} s), {result['workers']} workers × {result['threads']} threads, "
        f"{result['backend']}; {timing}; claims in real time; {mode}; "
        + ("children start from cursor 0 (--cold)" if result.get("cold_start")
           else "children start holding the current cursors"))
    log(f"{'route':22} {'requests':>9} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'p99 ms after the start':>23}")
    for route, figures in result["routes"].items():
        log(f"{route:22} {figures['requests']:>9,} {figures['errors']:>7} "
            f"{figures['p50_ms']:>9.1f} {figures['p99_ms']:>9.1f} "
            f"{_ms(figures.get('after_start_p99_ms')):>23}")
    log("(after the start: requests that finished from the idle window on, once every child "
        "has started; the goals judge the whole run)")
    wake = result["dispatch_to_lease"]
    p50, p95 = wake["p50_s"], wake["p95_s"]
    log(f"dispatch -> a child holds the lease: {wake['count']}/"
        f"{result['dispatches']} claimed; p50 {_show(p50, 's')}, p95 {_show(p95, 's')}")
    log(f"parent CPU: {result['parent_cpu_pct']:.0f}% of one core over the run, "
        f"{_show(result['parent_cpu_idle_pct'], '%')} over the idle window; this simulator: "
        f"{result['simulator_cpu_pct']:.0f}% (near 100%: the client set the latencies)")
    log("requests/s in the idle window: " + (", ".join(
        f"{route} {rate:g}" for route, rate in result["idle_requests_per_s"].items()) or "-")
        + "; of them errors: " + (", ".join(
            f"{route} {rate:g}" for route, rate in result["idle_errors_per_s"].items()) or "none")
        + f"; claims the app answered: {result['idle_app_claims_per_s']}/s")
    log(f"claim connections open at most: {result['peak_claim_connections']:,} (reopened after "
        f"the server closed them: {result['claim_reconnects']:,}); a parent worker's open-file "
        f"limit: {result['parent_nofile']}")
    log("load average at start {} / end {}".format(
        " ".join(f"{x:.2f}" for x in result["load_average"]),
        " ".join(f"{x:.2f}" for x in result["load_average_end"])))
    log("goals (issue 14): " + ", ".join(
        f"{name} {'met' if met else 'NOT met'}" for name, met in result["goals"].items()))
    if result["first_error"]:
        log(f"first error: {result['first_error']}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if unit == "s" else f"{value:.0f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", nargs="?", const=PG_ADMIN_URL, default=None, metavar="URL",
                        help="PostgreSQL: the admin URL a throwaway database is created from "
                             f"[{PG_ADMIN_URL}]")
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--compress", type=float, default=1.0,
                        help="divide the heartbeat and sync intervals by this [%(default)s]")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds [%(default)s]")
    parser.add_argument("--ramp", type=float, default=None,
                        help="seconds over which children start claiming [duration/3, ≤ 60]")
    parser.add_argument("--idle", type=float, default=None,
                        help="seconds without dispatches after the ramp [duration/4]")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="seconds between the ramp and the idle window [%(default)s]: "
                             "the children's start (first claims, backpressure) shows in "
                             "a window right after the ramp")
    parser.add_argument("--cold", action="store_true",
                        help="children start from cursor 0 (new children: each first sync is "
                             "a full pull) instead of holding the current cursors")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=8)
    parser.add_argument("--dispatch-every", type=float, default=3.0)
    parser.add_argument("--parent-root", default=None, metavar="DIR",
                        help="serve the parent of this checkout (with its own .venv)")
    parser.add_argument("--json", default=None, metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    result = run_fleet(args.children, args.pg, args.duration, args.compress, ramp=args.ramp,
                       idle=args.idle, settle=args.settle, cold=args.cold,
                       dispatch_every=args.dispatch_every, workers=args.workers,
                       threads=args.server_threads, parent_root=args.parent_root,
                       log=lambda line: print(line, flush=True))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
