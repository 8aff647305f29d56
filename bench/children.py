"""Real `werss-child run` processes: idle footprint, and dispatch-to-results with 1 and 4 children.

A parent of their own (`werss-parent serve` on a fresh database) holds N RSS feeds served
by a local HTTP server in this process, plus a webhook task over them. Idle memory and CPU
come from /proc, measured the same way for a bare `python -c 'import time; time.sleep(60)'`
started at the same moment, so the ratio says what the agent adds to an idle interpreter.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import requests
from sqlalchemy import create_engine, func, select

from deploy.local_services import SAMPLE_ITEMS, LocalServices
from shared.paths import CASCADE_PREFIX, LOGIN

from .servers import REPO_ROOT

READY_TIMEOUT = 60.0
RUN_TIMEOUT = 120.0
GRACEFUL_STOP_TIMEOUT = 40.0  # above the child's default 25 s claim long-poll
POLL_INTERVAL = 0.1
LOG_GRACE = 1.0
SLEEPER_CODE = "import time; time.sleep(60)"
TEMPLATE = "{{ feed.mp_name }}:{% for a in articles %} [{{ a.title }}]{% endfor %}"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_INHERITED_PREFIXES = ("WERSS_", "CASCADE_", "GUNICORN_")


class ChildBenchError(RuntimeError):
    """A child did not start, or a run did not finish in time; the message says which."""


# -- /proc -------------------------------------------------------------------------------------
def memory_status(pid: int) -> dict:
    """VmRSS, VmHWM (KiB) and thread count from /proc/<pid>/status."""
    wanted = {"VmRSS": "rss_kib", "VmHWM": "hwm_kib", "Threads": "threads"}
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in wanted:
                values[wanted[name]] = int(rest.split()[0])
    return values


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (field 3 on: state, ppid, ...)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used (/proc/<pid>/stat utime, stime)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def reaped_children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's children it has waited for (stat cutime, cstime)."""
    fields = _stat_fields(pid)
    return (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS


def server_cpu_seconds(server) -> float:
    """CPU seconds of a gunicorn master and its workers, restarted workers included.

    The workers are listed at each call, and a worker that exited was reaped by the master,
    whose waited-for children's time keeps what it used.
    """
    pid = server.process.pid
    try:
        reaped = reaped_children_cpu_seconds(pid)
    except (FileNotFoundError, ProcessLookupError):
        reaped = 0.0
    return reaped + group_cpu_seconds([pid, *server.worker_pids()])


def group_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


# -- the work parent's data --------------------------------------------------------------------
def seed_work_parent(database_url: str, secret_key: str, sources: LocalServices,
                     feeds: int) -> str:
    """N local RSS feeds and a webhook task over all of them; return the task id."""
    from parent import create_app
    from parent.extensions import db
    from parent.models import Feed
    from parent.models.replication import ENTITY_FEED
    from parent.services import message_tasks, replication

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    moment = datetime.now(timezone.utc)
    rows = [{
        "id": f"RSS_bench_{index:05d}", "faker_id": None, "mp_name": f"feed{index:05d}",
        "source_type": "rss", "source_url": f"{sources.base_url}/rss/feed{index:05d}.xml",
        "mp_cover": "", "mp_intro": "", "status": 1, "sync_time": 0, "update_time": 0,
        "labels": [], "created_at": moment, "updated_at": moment,
    } for index in range(feeds)]
    with app.app_context():
        try:
            db.session.execute(db.insert(Feed), rows)
            replication.record_upserts(ENTITY_FEED, [row["id"] for row in rows])
            task = message_tasks.create_task({
                "name": "bench push", "message_type": 1, "web_hook_url": sources.hook_url(),
                "message_template": TEMPLATE, "cron_exp": "0 0 1 1 *",
                # The sources' articles predate the task: push them on the first run.
                "push_newest": SAMPLE_ITEMS})
            db.session.commit()
            return task.id
        finally:
            db.session.remove()
            db.engine.dispose()


# -- child processes ---------------------------------------------------------------------------
def werss_child_argv() -> list[str]:
    beside = Path(sys.executable).parent / "werss-child"
    if beside.exists():
        return [str(beside), "run"]
    return [sys.executable, "-m", "child", "run"]


def child_defaults() -> dict:
    """The agent settings the bench leaves at their defaults."""
    from child.config import ChildConfig

    defaults = {field.name: field.default for field in fields(ChildConfig)}
    return {name: defaults[name] for name in
            ("claim_wait", "heartbeat_interval", "sync_interval", "capacity")}


def _clean_env(**extra: str) -> dict:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(_INHERITED_PREFIXES)
           and name not in ("DATABASE_URL", "PORT", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(extra)
    return env


class ChildAgent:
    """One `werss-child run` we started, in its own process group, logging to a file."""

    def __init__(self, name: str, base_url: str, creds, workdir: Path,
                 extra_env: dict | None = None):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        data_dir = workdir / f"{name}-data"
        # Only what a user must set: everything else (claim wait 25 s, heartbeat 60 s,
        # sync 300 s, capacity 4) stays at the agent's defaults.
        env = _clean_env(CASCADE_PARENT_URL=base_url, CASCADE_API_KEY=creds.api_key,
                         CASCADE_API_SECRET=creds.api_secret, CASCADE_DATA_DIR=str(data_dir),
                         CASCADE_ALLOW_PRIVATE_ADDRESSES="true",
                         NO_PROXY="127.0.0.1,localhost", PYTHONUNBUFFERED="1",
                         **(extra_env or {}))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                werss_child_argv(), cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.node_id = creds.node_id
        self.started = time.perf_counter()
        self.stop_requested: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text_ = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text_.splitlines()[-lines:]) or "(empty log)"

    def wait_connected(self, deadline: float) -> float:
        """Wait for its start-up sync to finish; return seconds since it was started.

        :raises ChildBenchError: it exited, or did not connect before ``deadline``.
        """
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChildBenchError(f"{self.name} exited with {self.process.returncode}:\n"
                                      f"{self.log_tail()}")
            try:
                if "connected to" in self.log_path.read_text(encoding="utf-8", errors="replace"):
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(POLL_INTERVAL)
        raise ChildBenchError(f"{self.name} did not connect within {READY_TIMEOUT:.0f} s:\n"
                              f"{self.log_tail()}")

    def request_stop(self) -> None:
        """First SIGTERM: the agent's graceful stop (no new work, finish, flush)."""
        if self.process.poll() is None and self.stop_requested is None:
            self.stop_requested = time.perf_counter()
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float) -> float | None:
        """Seconds from the SIGTERM to the exit, or None if it was still running at ``timeout``."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return None if self.stop_requested is None else time.perf_counter() - self.stop_requested

    def kill(self) -> None:
        """Make sure nothing of this child is left: its process group gets SIGKILL."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            print(f"warning: {self.name} (pid {self.pid}) did not exit", file=sys.stderr)


def stop_children(children: list[ChildAgent], grace: float) -> dict:
    """SIGTERM all at once, give them ``grace`` seconds, then a second SIGTERM and SIGKILL."""
    for child in children:
        child.request_stop()
    deadline = time.monotonic() + grace
    times = {}
    for child in children:
        times[child.name] = child.wait_stopped(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.process.poll() is None:
            try:
                child.process.send_signal(signal.SIGTERM)  # the second one: exit now
                child.process.wait(3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        child.kill()
    return times


def _idle_sample(pids: dict[str, int], window: float, parent_pids: list[int]) -> dict:
    """Memory at the start of the window, CPU over it, for each pid and the parent's workers."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    memory = {name: memory_status(pid) for name, pid in pids.items()}
    parent_before = group_cpu_seconds(parent_pids)
    started = time.perf_counter()
    time.sleep(window)
    elapsed = time.perf_counter() - started
    sample = {}
    for name, pid in pids.items():
        used = cpu_seconds(pid) - before[name]
        sample[name] = {**memory[name], "rss_mib": round(memory[name]["rss_kib"] / 1024, 1),
                        "hwm_mib": round(memory[name]["hwm_kib"] / 1024, 1),
                        "cpu_s": round(used, 3), "cpu_pct": round(100 * used / elapsed, 3)}
    parent_used = group_cpu_seconds(parent_pids) - parent_before
    sample["parent_workers_cpu_pct"] = round(100 * parent_used / elapsed, 2)
    sample["window_s"] = round(elapsed, 2)
    return sample


# -- the parent's access log -------------------------------------------------------------------
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) '
                          r'\S+ (?P<ms>\d+)ms')
_ROUTES = (("claim", re.compile(r"/claim$")), ("complete", re.compile(r"/leases/[^/]+/complete$")),
           ("articles", re.compile(r"/articles$")), ("heartbeat", re.compile(r"/heartbeat$")))


class AccessLog:
    """Node requests the work parent logged (gunicorn's access log) since a mark."""

    def __init__(self, path: Path):
        self.path = path

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def summary(self, offset: int) -> dict:
        """Per route: request count, p50 and max milliseconds as the parent logged them."""
        try:
            with open(self.path, "rb") as log:
                log.seek(offset)
                lines = log.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return {}
        times: dict[str, list[int]] = {}
        statuses: dict[str, dict[str, int]] = {}
        for line in lines:
            match = _ACCESS_LINE.search(line)
            if not match:
                continue
            for name, pattern in _ROUTES:
                if pattern.search(match["path"]):
                    times.setdefault(name, []).append(int(match["ms"]))
                    counts = statuses.setdefault(name, {})
                    counts[match["status"]] = counts.get(match["status"], 0) + 1
        return {name: {"requests": len(values), "statuses": statuses[name],
                       "p50_ms": sorted(values)[len(values) // 2], "max_ms": max(values)}
                for name, values in times.items()}


# -- a run from dispatch to every allocation completed -------------------------------------------
class WorkParentClient:
    """The admin side of the work parent: dispatch over HTTP, watch the database directly."""

    def __init__(self, base_url: str, database_url: str, admin_password: str):
        self.base_url = base_url
        response = requests.post(base_url + LOGIN, json={"username": "admin",
                                                          "password": admin_password},
                                 timeout=30)
        if response.status_code != 200:
            raise ChildBenchError(f"admin login answered {response.status_code}: "
                                  f"{response.text[:200]}")
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {response.json()['data']['access_token']}"
        self.engine = create_engine(database_url)

    def dispatch(self, task_id: str) -> tuple[str, int]:
        response = self.session.post(self.base_url + CASCADE_PREFIX + "/dispatch",
                                     json={"task_id": task_id}, timeout=60)
        if response.status_code != 201:
            raise ChildBenchError(f"dispatch answered {response.status_code}: "
                                  f"{response.text[:300]}")
        data = response.json()["data"]
        return data["run_id"], len(data["allocations"])

    def finished(self, run_id: str) -> tuple[int, int]:
        """(completed, dead) allocations of the run."""
        from parent.models import Allocation

        table = Allocation.__table__
        with self.engine.connect() as connection:
            rows = dict(connection.execute(
                select(table.c.status, func.count()).where(
                    table.c.run_id == run_id, table.c.status.in_(("completed", "dead")))
                .group_by(table.c.status)).all())
        return rows.get("completed", 0), rows.get("dead", 0)

    def timeline(self, run_id: str) -> dict:
        """What the parent recorded: lease times relative to the run, leases per node."""
        from parent.models import Allocation, Lease, TaskRun

        runs, allocations, lease_rows = TaskRun.__table__, Allocation.__table__, Lease.__table__
        with self.engine.connect() as connection:
            created = connection.execute(
                select(runs.c.created_at).where(runs.c.id == run_id)).scalar_one()
            leases = connection.execute(
                select(lease_rows.c.created_at, lease_rows.c.node_id, lease_rows.c.allocation_id)
                .join(allocations, allocations.c.id == lease_rows.c.allocation_id)
                .where(allocations.c.run_id == run_id).order_by(lease_rows.c.created_at)).all()
            completed = connection.execute(
                select(func.max(allocations.c.completed_at))
                .where(allocations.c.run_id == run_id)).scalar_one()

        def offset(moment) -> float | None:
            return None if moment is None else round((moment - created).total_seconds(), 3)

        per_node: dict[str, int] = {}
        per_allocation: dict[str, int] = {}
        for _, node_id, allocation_id in leases:
            per_node[node_id] = per_node.get(node_id, 0) + 1
            per_allocation[allocation_id] = per_allocation.get(allocation_id, 0) + 1
        # Leases granted within 50 ms of each other came from one claim.
        batches, previous = 0, None
        for moment, _, _ in leases:
            if previous is None or (moment - previous).total_seconds() > 0.05:
                batches += 1
            previous = moment
        return {
            "first_lease_s": offset(leases[0][0]) if leases else None,
            "last_lease_s": offset(leases[-1][0]) if leases else None,
            "last_completed_s": offset(completed),
            "leases": len(leases),
            "allocations_leased_twice": sum(1 for n in per_allocation.values() if n > 1),
            "leases_per_node": sorted(per_node.values(), reverse=True),
            "claim_batches": batches,
        }

    def close(self) -> None:
        self.session.close()
        self.engine.dispose()


def run_to_results(admin: WorkParentClient, sources: LocalServices, access: AccessLog,
                   task_id: str, children: int) -> dict:
    """POST /dispatch, then wait until every allocation of the run is completed (or dead).

    :raises ChildBenchError: the run did not finish within RUN_TIMEOUT.
    """
    fetches_before, pushes_before = sources.fetches, len(sources.pushes)
    offset = access.mark()
    started = time.perf_counter()
    run_id, count = admin.dispatch(task_id)
    dispatched = time.perf_counter() - started
    deadline = time.monotonic() + RUN_TIMEOUT
    completed = dead = 0
    while time.monotonic() < deadline:
        completed, dead = admin.finished(run_id)
        if completed + dead >= count:
            break
        time.sleep(POLL_INTERVAL)
    elapsed = time.perf_counter() - started
    if completed + dead < count:
        raise ChildBenchError(f"run {run_id} with {children} child(ren): {completed} of {count} "
                              f"allocations completed after {RUN_TIMEOUT:.0f} s")
    time.sleep(LOG_GRACE)  # let writes sent around the last completion reach the log
    fetches, pushes = sources.fetches, len(sources.pushes)
    return {
        "children": children,
        "allocations": count,
        "completed": completed,
        "dead": dead,
        "dispatch_request_s": round(dispatched, 3),
        "seconds": round(elapsed, 3),
        "feed_fetches": fetches - fetches_before,
        "webhook_pushes": pushes - pushes_before,
        **admin.timeline(run_id),
        "parent_requests": access.summary(offset),
    }


def run_child_benchmarks(*, database_url: str, env: dict, secret_key: str, sources: LocalServices,
                         fleet: list, workdir: Path, server, feeds: int, settle: float,
                         window: float) -> dict:
    """Idle footprint of one child, then dispatch-to-results with it alone and with four others.

    ``server`` is the running work parent; ``fleet`` holds five nodes' credentials.
    """
    task_id = seed_work_parent(database_url, secret_key, sources, feeds)
    admin = WorkParentClient(server.base_url, database_url, env["WERSS_ADMIN_PASSWORD"])
    access = AccessLog(server.log_path)
    started: list[ChildAgent] = []
    sleeper = None
    try:
        # Idle: the agent and a bare interpreter, started together, measured together.
        sleeper = subprocess.Popen([sys.executable, "-c", SLEEPER_CODE], cwd=REPO_ROOT,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        single = ChildAgent("child-1", server.base_url, fleet[0], workdir)
        started.append(single)
        connect_s = single.wait_connected(time.monotonic() + READY_TIMEOUT)
        time.sleep(settle)
        offset = access.mark()
        idle = _idle_sample({"child": single.pid, "bare": sleeper.pid}, window,
                            server.worker_pids() + [server.process.pid])
        idle["connect_s"] = round(connect_s, 2)
        idle["parent_requests"] = access.summary(offset)
        sleeper.kill()
        sleeper.wait(5)

        one = run_to_results(admin, sources, access, task_id, 1)
        one["child_rss_after_mib"] = round(memory_status(single.pid)["rss_kib"] / 1024, 1)

        # The single child's graceful stop overlaps the four children's start.
        single.request_stop()
        four = [ChildAgent(f"child-{index + 2}", server.base_url, creds, workdir)
                for index, creds in enumerate(fleet[1:5])]
        started.extend(four)
        deadline = time.monotonic() + READY_TIMEOUT
        for child in four:
            child.wait_connected(deadline)
        stop_s = single.wait_stopped(GRACEFUL_STOP_TIMEOUT)
        single.kill()
        time.sleep(settle)
        offset = access.mark()
        idle4 = _idle_sample({child.name: child.pid for child in four}, window,
                             server.worker_pids() + [server.process.pid])
        idle4["parent_requests"] = access.summary(offset)

        many = run_to_results(admin, sources, access, task_id, 4)
        stop_times = stop_children(four, grace=3.0)
    finally:
        if sleeper and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait(5)
        for child in started:
            if child.process.poll() is None:
                child.kill()
        admin.close()
    return {
        "feeds": feeds,
        "child_defaults": child_defaults(),
        "idle": idle,
        "idle_four": idle4,
        "graceful_stop_s": None if stop_s is None else round(stop_s, 2),
        "four_stopped_within_3s": sum(1 for value in stop_times.values() if value is not None),
        "runs": [one, many],
        "speedup": round(one["seconds"] / many["seconds"], 3) if many["seconds"] else None,
    }
