"""The child's footprint against a parent with many feeds, and the parent's side of that sync.

A parent of its own (`werss-parent serve` on a fresh database) is seeded with N feeds (the
http section's mix: nine WeChat accounts to one RSS source) and one `werss-child run` is
started with the four required variables, the parent telling it a short sync interval
(`WERSS_CASCADE_SYNC_INTERVAL`, and `CASCADE_SYNC_INTERVAL` to match), so that a second
sync with nothing changed happens inside the run (time is compressed; the default is 300 s). Figures, all from /proc:

- the child's peak RSS (VmHWM) during its first sync, its RSS once synced, and its RSS
  after the second sync (growth = after second - after first);
- what the second sync cost on the wire, from the parent's access log (requests by route
  and status; nothing changed should be one 304 per table);
- the peak RSS of each gunicorn worker after serving the sync, against the same worker
  before it (idle), so "flat in the number of feeds" can be read from two sizes.

Each size is compared with a bare interpreter (`python -c 'import time; time.sleep(60)'`)
started at the same moment, as the children section does.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from .children import (
    SLEEPER_CODE, ChildAgent, ChildBenchError, _clean_env, memory_status, stop_children,
)
from .database import BenchDatabase, create_nodes, seed_feeds
from .servers import subject_server

SECOND_SYNC_INTERVAL = 20  # seconds; the agent's default is 300 (time compressed)
_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')
_TABLE = re.compile(r"/(feeds|message-tasks)(/changes)?(\?|$)")


def _routes_since(log_path: Path, offset: int) -> dict[str, int]:
    """'GET /feeds 304' -> count, for the node routes a sync uses, from gunicorn's access log."""
    counts: dict[str, int] = {}
    with open(log_path, "rb") as log:
        log.seek(offset)
        for line in log.read().decode("utf-8", "replace").splitlines():
            match = _LINE.search(line)
            if not match:
                continue
            table = _TABLE.search(match["path"])
            if not table:
                continue
            key = f"{match['method']} /{table[1]}{table[2] or ''} {match['status']}"
            counts[key] = counts.get(key, 0) + 1
    return counts


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)


def _wait_for_line(agent: ChildAgent, needle: str, count: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if agent.process.poll() is not None:
            raise ChildBenchError(f"{agent.name} exited with {agent.process.returncode}:\n"
                                  f"{agent.log_tail()}")
        text = agent.log_path.read_text(encoding="utf-8", errors="replace")
        if text.count(needle) >= count:
            return
        time.sleep(0.2)
    raise ChildBenchError(f"{agent.name}: no {count}× {needle!r} in time:\n{agent.log_tail()}")


def measure_size(feeds: int, workdir: Path, secret_key: str, pg_url: str | None,
                 workers: int, threads: int) -> dict:
    """One parent with ``feeds`` feeds, one child: the figures listed in the module doc."""
    where = workdir / f"footprint-{feeds}"
    where.mkdir()
    database = BenchDatabase(pg_url, where)
    server = agent = sleeper = None
    try:
        # The parent tells children their sync interval; the short one compresses time.
        url, env = database.create_migrated(
            secret_key, {"WERSS_CASCADE_SYNC_INTERVAL": str(SECOND_SYNC_INTERVAL)})
        creds = create_nodes(url, secret_key, 1, prefix="bench-footprint")[0]
        seed_seconds = seed_feeds(url, secret_key, feeds)
        server = subject_server(env, workers, threads, where / "parent.log")
        server.start()
        worker_pids = server.worker_pids()
        workers_idle = {pid: memory_status(pid) for pid in worker_pids}
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER_CODE], env=_clean_env())
        agent = ChildAgent("footprint-child", server.base_url, creds, where,
                           extra_env={"CASCADE_SYNC_INTERVAL": str(SECOND_SYNC_INTERVAL)})
        connected_s = agent.wait_connected(time.monotonic() + 600)
        first = memory_status(agent.pid)
        time.sleep(2)
        synced = memory_status(agent.pid)
        mark = (where / "parent.log").stat().st_size
        # The agent logs nothing per sync; wait for the second sync's requests instead.
        deadline = time.monotonic() + SECOND_SYNC_INTERVAL * 3 + 30
        second_routes: dict[str, int] = {}
        while time.monotonic() < deadline:
            second_routes = _routes_since(where / "parent.log", mark)
            if sum(count for key, count in second_routes.items() if "/message-tasks" in key):
                break
            time.sleep(0.5)
        else:
            tail = (where / "parent.log").read_text(errors="replace").splitlines()[-8:]
            raise ChildBenchError(f"no second sync seen ({second_routes}); parent log:\n"
                                  + "\n".join(tail) + f"\nchild log:\n{agent.log_tail()}")
        time.sleep(2)
        after_second = memory_status(agent.pid)
        bare = memory_status(sleeper.pid)
        workers_after = {pid: memory_status(pid) for pid in worker_pids
                         if Path(f"/proc/{pid}").exists()}
        return {
            "feeds": feeds,
            "seed_seconds": round(seed_seconds, 1),
            "first_sync_s": round(connected_s, 2),
            "child_peak_mib": _mib(after_second["hwm_kib"]),
            "child_peak_first_sync_mib": _mib(first["hwm_kib"]),
            "child_synced_mib": _mib(synced["rss_kib"]),
            "child_after_second_sync_mib": _mib(after_second["rss_kib"]),
            "second_sync_growth_mib": _mib(after_second["rss_kib"] - synced["rss_kib"]),
            "second_sync_requests": second_routes,
            "bare_mib": _mib(bare["rss_kib"]),
            "parent_workers": [
                {"idle_mib": _mib(workers_idle[pid]["rss_kib"]),
                 "peak_mib": _mib(after["hwm_kib"])} for pid, after in workers_after.items()],
        }
    finally:
        if agent:
            stop_children([agent], 5)
        if sleeper:
            sleeper.kill()
            sleeper.wait()
        if server:
            server.stop()
        database.drop()


def footprint_section(args, workdir: Path, secret_key: str) -> dict:
    """Measure each size in ``args.footprint_feeds``; the largest is the headline."""
    sizes = {}
    for feeds in args.footprint_feeds:
        print(f"bench: footprint: {feeds:,} feeds", flush=True)
        sizes[str(feeds)] = measure_size(feeds, workdir, secret_key, args.pg, args.workers,
                                         args.server_threads)
    return {"sizes": sizes, "second_sync_interval_s": SECOND_SYNC_INTERVAL}


def render(section: dict) -> str:
    lines = ["child footprint (one `werss-child run`, parent with N feeds; "
             f"second sync after {section['second_sync_interval_s']} s, compressed from 300 s)",
             f"{'feeds':>8} {'1st sync s':>10} {'peak MiB':>9} {'synced':>7} {'after 2nd':>9} "
             f"{'growth':>7} {'bare':>5} {'peak/bare':>9}  parent worker peak MiB (idle)  "
             "second sync requests"]
    for size in section["sizes"].values():
        workers = ", ".join(f"{w['peak_mib']} ({w['idle_mib']})" for w in size["parent_workers"])
        requests = ", ".join(f"{k} ×{v}" for k, v in sorted(size["second_sync_requests"].items()))
        lines.append(
            f"{size['feeds']:>8,} {size['first_sync_s']:>10} {size['child_peak_mib']:>9} "
            f"{size['child_synced_mib']:>7} {size['child_after_second_sync_mib']:>9} "
            f"{size['second_sync_growth_mib']:>7} {size['bare_mib']:>5} "
            f"{size['child_peak_mib'] / max(size['bare_mib'], 0.1):>9.1f}  {workers}  {requests}")
    return "\n".join(lines)
