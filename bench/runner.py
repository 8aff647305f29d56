"""`python -m bench`: measure the parent against a bare Flask app under identical gunicorn.

Every subject scenario is bracketed by two baseline runs (B S B S B ...), and its ratios
are taken against the mean of the two baselines around it, so a noisy neighbour that
slows the machine for a while moves both sides of a ratio. Sections, in order: http
(heartbeats, feed pulls), leasing (claims/completes from 50 clients, double-lease check),
queue (claim latency at 1k/10k/100k pending), children (real agents: idle footprint,
dispatch-to-results with 1 and 4 children), pushes (the push-once soak with kill -9s),
channels (4 children pushing to one rate-limited robot: deliveries per minute as a ratio of
its limit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import sys
import time

import requests

from shared import signing
from shared.paths import CASCADE_PREFIX, FEEDS, HEARTBEAT

from . import goals, report
from .baseline import APP_HOOKS, describe_options, gunicorn_options
from .database import (
    DEFAULT_PG_URL, BenchDatabase, BenchSetupError, create_nodes, make_workdir, parent_env,
    remove_workdir, run_parent_cli, seed_feeds,
)
from .children import ChildBenchError
from .footprint import footprint_section, render as render_footprint
from .leasing import WorkStore
from .phases import (
    LEASE_CAPACITY, Scenario, baseline_factory, child_section, claim_queue, get_factory,
    lease_throughput, measure, measure_wrk,
)
from .probe import HEARTBEAT_BODY, probe_hot_paths
from .pushes import push_section
from .servers import ServerStartError, baseline_server, subject_server
from .wrk import WrkError, wrk_path
from .wechat import render_wechat, wechat_section

PG_ENV = "WERSS_BENCH_DATABASE_URL"
EXIT_ERRORS = 1
EXIT_SETUP = 2
SECTIONS = ("http", "leasing", "queue", "children", "slowloris", "pushes", "footprint",
            "wechat", "channels", "fleet")
# Issue 14's fleet sizes: 10,000 children against PostgreSQL, 1,000 against SQLite.
FLEET_CHILDREN = {"postgresql": 10_000, "sqlite": 1_000}


def _serve_defaults() -> dict:
    """`werss-parent serve`'s own --workers/--threads defaults, so both track the CLI."""
    from parent.cli import serve

    return {param.name: param.default for param in serve.params}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = _serve_defaults()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Authenticated heartbeats, 10k-feed pulls, leasing under load and real "
                    "child agents, reported as ratios measured in the same run.",
    )
    parser.add_argument("--pg", nargs="?", const=DEFAULT_PG_URL, default=os.environ.get(PG_ENV),
                        metavar="URL",
                        help=f"run on PostgreSQL (a throwaway werss_bench_* database on that "
                             f"server; default {DEFAULT_PG_URL}; or set {PG_ENV})")
    parser.add_argument("--workers", type=int, default=defaults["workers"],
                        help="gunicorn workers for both servers [%(default)s, as serve]")
    parser.add_argument("--server-threads", type=int, default=defaults["threads"],
                        help="gunicorn threads per worker for both servers [%(default)s, as serve]")
    parser.add_argument("--driver", choices=("wrk", "python"),
                        default="wrk" if wrk_path() else "python",
                        help="load generator of the http section: wrk (C, the default when "
                             "installed) or python (requests threads) [%(default)s]")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk: keep-alive connections [%(default)s]")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="wrk: seconds per measured phase [%(default)s]")
    parser.add_argument("--threads", type=int, default=8,
                        help="concurrent client threads, each a node of its own [%(default)s]")
    parser.add_argument("--requests", type=int, default=3000,
                        help="measured requests per small-response scenario [%(default)s]")
    parser.add_argument("--full-requests", type=int, default=24,
                        help="measured full (200) feed pulls [%(default)s]")
    parser.add_argument("--feeds", type=int, default=10_000, help="feeds to seed [%(default)s]")
    parser.add_argument("--time-cap", type=float, default=15.0,
                        help="wall-clock cap per scenario, seconds [%(default)s]")
    parser.add_argument("--full-time-cap", type=float, default=25.0,
                        help="wall-clock cap for the full-pull scenario, seconds [%(default)s]")
    parser.add_argument("--warmup", type=int, default=200,
                        help="warm-up requests per small-response scenario [%(default)s]")
    leasing = parser.add_argument_group("leasing and children")
    leasing.add_argument("--lease-nodes", type=int, default=10,
                         help="nodes claiming at once, capacity %d each [%%(default)s]"
                              % LEASE_CAPACITY)
    leasing.add_argument("--lease-threads", type=int, default=5,
                         help="client threads per claiming node [%(default)s]")
    leasing.add_argument("--claims", type=int, default=1500,
                         help="measured claims (then as many completes) [%(default)s]")
    leasing.add_argument("--lease-time-cap", type=float, default=20.0,
                         help="wall-clock cap of the claim and complete phases, s [%(default)s]")
    leasing.add_argument("--queue-sizes", default="1000,10000,100000",
                         help="pending allocations to measure single-client claims at "
                              "[%(default)s]")
    leasing.add_argument("--queue-claims", type=int, default=200,
                         help="measured claims per queue size [%(default)s]")
    leasing.add_argument("--queue-time-cap", type=float, default=12.0,
                         help="wall-clock cap per queue size, s [%(default)s]")
    leasing.add_argument("--child-feeds", type=int, default=64,
                         help="local RSS feeds in the dispatch-to-results runs [%(default)s]")
    leasing.add_argument("--idle-settle", type=float, default=5.0,
                         help="seconds a started child idles before it is measured [%(default)s]")
    leasing.add_argument("--idle-window", type=float, default=10.0,
                         help="seconds idle CPU is measured over [%(default)s]")
    leasing.add_argument("--footprint-feeds", default="10000,100000",
                         help="feed counts of the footprint section's parents [%(default)s]")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="which sections to run, comma-separated [%(default)s]")
    parser.add_argument("--wechat-children", type=int, default=3,
                        help="children logged in to the fake WeChat [%(default)s]")
    parser.add_argument("--wechat-rate", type=int, default=20,
                        help="the fake's limit: list calls per minute per login [%(default)s]")
    parser.add_argument("--wechat-window", type=float, default=120.0,
                        help="seconds the WeChat run is measured over, rounded to whole "
                             "minutes [%(default)s]")
    fleet = parser.add_argument_group("fleet (simulated children, bench/fleet.py)")
    fleet.add_argument("--fleet-children", type=int, default=None,
                       help="simulated children [10,000 on PostgreSQL, 1,000 on SQLite]")
    fleet.add_argument("--fleet-duration", type=float, default=240.0,
                       help="seconds the fleet runs [%(default)s]: a 60 s ramp, --fleet-settle, "
                            "the idle window, then dispatches until the end")
    fleet.add_argument("--fleet-settle", type=float, default=60.0,
                       help="seconds between the ramp and the idle window [%(default)s], so "
                            "the idle CPU is an idle fleet's, not its start's")
    fleet.add_argument("--fleet-idle", type=float, default=60.0,
                       help="seconds of the idle window (no dispatches) [%(default)s]")
    fleet.add_argument("--fleet-workers", type=int, default=2,
                       help="the fleet parent's gunicorn workers [%(default)s: one per core "
                            "here, docs/OPERATIONS.md#sizing-for-a-large-fleet]")
    fleet.add_argument("--fleet-threads", type=int, default=4,
                       help="threads per worker of the fleet parent [%(default)s]")
    fleet.add_argument("--fleet-cold", action="store_true",
                       help="children start from cursor 0 (new children) instead of holding "
                            "the current cursors")
    fleet.add_argument("--fleet-compress", type=float, default=1.0,
                       help="divide the seed's heartbeat and sync intervals by this "
                            "[%(default)s: real time]")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: a tenth of the requests and feeds, no 100k queue")
    args = parser.parse_args(argv)
    try:
        args.queue_sizes = sorted({int(size) for size in args.queue_sizes.split(",") if size})
    except ValueError:
        parser.error("--queue-sizes: comma-separated whole numbers")
    try:
        args.footprint_feeds = [int(size) for size in args.footprint_feeds.split(",") if size]
    except ValueError:
        parser.error("--footprint-feeds: comma-separated whole numbers")
    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}")
    if args.quick:
        args.requests = max(50, args.requests // 10)
        args.full_requests = max(4, args.full_requests // 10)
        args.feeds = max(100, args.feeds // 10)
        args.warmup = max(16, args.warmup // 10)
        args.claims = max(100, args.claims // 10)
        args.queue_sizes = [size for size in args.queue_sizes if size < 100_000] or [1000]
        args.queue_claims = max(30, args.queue_claims // 4)
        args.child_feeds = max(8, args.child_feeds // 4)
        args.footprint_feeds = [max(100, size // 10) for size in args.footprint_feeds]
        args.idle_settle, args.idle_window = min(args.idle_settle, 3.0), min(args.idle_window, 5.0)
        args.duration = min(args.duration, 3.0)
        args.fleet_duration = min(args.fleet_duration, 40.0)
        args.fleet_settle, args.fleet_idle = 0.0, 10.0
        args.fleet_children = args.fleet_children or 200
    for name in ("workers", "server_threads", "threads", "requests", "full_requests", "feeds",
                 "fleet_workers", "fleet_threads",
                 "lease_nodes", "lease_threads", "claims", "queue_claims", "child_feeds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.queue_sizes or args.queue_sizes[0] < 1:
        parser.error("--queue-sizes: at least one positive size")
    if min(args.time_cap, args.full_time_cap, args.lease_time_cap, args.queue_time_cap,
           args.idle_window) <= 0 or args.idle_settle < 0:
        parser.error("time caps and windows must be positive")
    fleet_ramp = min(60.0, args.fleet_duration / 3)  # bench/fleet.py's default ramp
    if args.fleet_settle < 0 or args.fleet_idle <= 0 \
            or fleet_ramp + args.fleet_settle + args.fleet_idle >= args.fleet_duration:
        parser.error("--fleet-duration must leave time for dispatches after the ramp "
                     f"({fleet_ramp:.0f} s), --fleet-settle and --fleet-idle")
    return args


def _heartbeat_factory(base_url: str, fleet: list, mode: str):
    path = CASCADE_PREFIX + HEARTBEAT
    url = base_url + path
    plain = [signing.plain_authorization(c.api_key, c.api_secret) for c in fleet]
    # As long as the right one, so a length check cannot answer faster than the compare.
    wrong = [signing.plain_authorization(c.api_key, "x" * len(c.api_secret)) for c in fleet]

    def make(index: int):
        creds = fleet[index % len(fleet)]
        if mode == "signed":  # a fresh timestamp and nonce on every request, as a child does
            auth = signing.signed_authorization(creds.api_key, creds.api_secret, "POST", path,
                                                "", HEARTBEAT_BODY)
        else:
            auth = (wrong if mode == "wrong" else plain)[index % len(fleet)]
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        return "POST", url, headers, HEARTBEAT_BODY

    return make


def _feeds_factory(base_url: str, fleet: list, etag: str | None):
    path = CASCADE_PREFIX + FEEDS
    url = base_url + path

    def make(index: int):
        creds = fleet[index % len(fleet)]
        headers = {"Authorization": signing.signed_authorization(
            creds.api_key, creds.api_secret, "GET", path)}
        if etag:
            headers["If-None-Match"] = etag
        return "GET", url, headers, None

    return make


def check_feeds(base_url: str, creds, expected: int) -> tuple[str, int]:
    """Pull once, check every seeded feed is there and the ETag gives 304; return (etag, bytes).

    :raises BenchSetupError: the subject does not answer as the contract says.
    """
    path = CASCADE_PREFIX + FEEDS

    def auth():
        return signing.signed_authorization(creds.api_key, creds.api_secret, "GET", path)

    response = requests.get(base_url + path, headers={"Authorization": auth()}, timeout=60)
    if response.status_code != 200:
        raise BenchSetupError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    count = len(response.json().get("data") or [])
    etag = response.headers.get("ETag")
    if count != expected or not etag:
        raise BenchSetupError(f"GET {path} returned {count} feeds (expected {expected}) "
                              f"and ETag {etag!r}")
    again = requests.get(base_url + path, headers={"Authorization": auth(),
                                                   "If-None-Match": etag}, timeout=60)
    if again.status_code != 304:
        raise BenchSetupError(f"GET {path} with If-None-Match answered {again.status_code}")
    return etag, len(response.content)


def _loadavg() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def design_warnings(probes: list[dict], backend: str) -> list[str]:
    """Compare the SQL each hot request ran with what the design allows (bench/goals.py)."""
    warnings = []
    for probe in probes:
        name = probe["request"]
        budget = goals.sql_budget(backend).get(name)
        if budget:
            reads, writes, text = budget
            if probe["reads"] > reads or probe["writes"] > writes:
                warnings.append(f"{name} ran {probe['reads']} reads / {probe['writes']} writes; "
                                f"the design allows {text}")
        if "304" in name and probe["reads_feed_rows"]:
            warnings.append(f"{name} read feed rows; a 304 must not")
    return warnings


def _scenarios(args, subject_url: str, fleet: list, etag: str) -> list[Scenario]:
    warmup = max(1, args.warmup // args.threads)
    small = dict(count=args.requests, time_cap=args.time_cap, warmup_per_thread=warmup)
    return [
        # How far the app's own hooks (request id, metrics, unit of work, the envelope) put
        # it below the bare app before any node work: the ceiling for every node route.
        Scenario("app_floor", "app floor (/livez)", get_factory(subject_url + "/livez"),
                 200, **small),
        Scenario("heartbeat_signed", "heartbeat signed",
                 _heartbeat_factory(subject_url, fleet, "signed"), 200, **small),
        Scenario("heartbeat_plain", "heartbeat plain",
                 _heartbeat_factory(subject_url, fleet, "plain"), 200, **small),
        # The same node, the right key and a wrong secret: refused (401) at no more cost.
        Scenario("heartbeat_wrong_secret", "heartbeat wrong secret",
                 _heartbeat_factory(subject_url, fleet, "wrong"), 401, **small),
        Scenario("feeds_304", "feeds pull 304", _feeds_factory(subject_url, fleet, etag), 304,
                 **small),
        # Warm the connections up with 304s: the workers already served a full pull.
        Scenario("feeds_200", f"feeds pull 200 ({args.feeds:,})",
                 _feeds_factory(subject_url, fleet, None), 200, count=args.full_requests,
                 time_cap=args.full_time_cap, warmup_per_thread=warmup,
                 warmup_factory=_feeds_factory(subject_url, fleet, etag)),
    ]


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    workdir = make_workdir()
    database = BenchDatabase(args.pg, workdir)
    servers = []
    secret_key = secrets.token_urlsafe(32)
    load_before = _loadavg()
    sections = args.sections
    runs, brackets, probes, full_bytes, worker_counts = {}, {}, [], 0, {}
    leasing = queue = children = slow_clients = pushes = footprint = wechat = channels = None
    fleet_section = None
    warnings: list[str] = []
    try:
        url = database.create()
        print(f"bench: {database.backend} database {database.describe()}", flush=True)
        metrics_dir = workdir / "prometheus"
        metrics_dir.mkdir()
        env = parent_env(url, secret_key, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
        run_parent_cli(["db", "upgrade"], env)
        fleet = create_nodes(url, secret_key, args.threads)
        seed_seconds = seed_feeds(url, secret_key, args.feeds)
        print(f"bench: migrated; {len(fleet)} nodes; {args.feeds:,} feeds seeded in "
              f"{seed_seconds:.1f} s", flush=True)
        if "http" in sections:
            probes = probe_hot_paths(url, secret_key, fleet[0])

        if {"http", "leasing", "queue"} & set(sections):
            subject = subject_server(env, args.workers, args.server_threads,
                                     workdir / "subject.log")
            baseline = baseline_server(env, args.workers, args.server_threads,
                                       workdir / "baseline.log")
            for server in (subject, baseline):
                servers.append(server)
                server.start()
            print(f"bench: subject on {subject.base_url}, baseline on {baseline.base_url}",
                  flush=True)

        if "http" in sections:
            etag, full_bytes = check_feeds(subject.base_url, fleet[0], args.feeds)

            def baseline_scenario(index: int) -> Scenario:
                return Scenario(f"baseline_{index}", f"baseline #{index}",
                                baseline_factory(baseline.base_url), 200, count=args.requests,
                                time_cap=args.time_cap,
                                warmup_per_thread=max(1, args.warmup // args.threads))

            def http_measure(scenario: Scenario) -> dict:
                if args.driver == "python":
                    return measure(scenario, args.threads)
                return measure_wrk(scenario, args.connections, args.duration)

            runs = {"baseline_0": http_measure(baseline_scenario(0))}
            for index, scenario in enumerate(_scenarios(args, subject.base_url, fleet, etag), 1):
                runs[scenario.key] = http_measure(scenario)
                runs[f"baseline_{index}"] = http_measure(baseline_scenario(index))
                brackets[scenario.key] = (f"baseline_{index - 1}", f"baseline_{index}")

        if {"leasing", "queue"} & set(sections):
            store = WorkStore(url, secret_key)
            try:
                if "leasing" in sections:
                    lease_fleet = create_nodes(url, secret_key, args.lease_nodes,
                                               prefix="bench-claimer", capacity=LEASE_CAPACITY)
                    leasing = lease_throughput(args, subject.base_url, baseline.base_url,
                                               store, lease_fleet, url, secret_key)
                if "queue" in sections:
                    queue_nodes = create_nodes(url, secret_key, len(args.queue_sizes) + 1,
                                               prefix="bench-queue", capacity=LEASE_CAPACITY)
                    queue = claim_queue(args, subject.base_url, baseline.base_url, store,
                                        queue_nodes, database.backend)
            finally:
                store.close()
        worker_counts = {server.name: len(server.worker_pids()) for server in servers}
        for server in servers:  # the children's idle figures need a quiet machine
            server.stop()

        if "slowloris" in sections:
            from .slowloris import slowloris_section

            slow_clients = slowloris_section(env, fleet[0], args.workers, args.server_threads,
                                             workdir, window=8.0 if args.quick else 20.0)
            print(f"bench: slowloris: {json.dumps(slow_clients['under_attack'])}", flush=True)
            if not slow_clients["goal_met"]:
                warnings.append("slowloris: a heartbeat took 1 s or more under 100 slow clients")

        from .channels import channel_section

        # Sections that start children: one failing is reported and the others still run.
        child_sections = {"children": child_section, "pushes": push_section,
                          "footprint": footprint_section, "wechat": wechat_section,
                          "channels": channel_section}
        outcomes: dict[str, dict | None] = {}
        for name, section in child_sections.items():
            if name not in sections:
                continue
            try:
                outcomes[name] = section(args, workdir, secret_key)
            except ChildBenchError as exc:
                print(f"\nbench: {name}: {exc}", file=sys.stderr)
                outcomes[name] = {"error": str(exc), **({"ok": False} if name == "pushes" else {})}
                if name != "pushes":  # a failed push run is reported by its own "ok"
                    warnings.append(f"{name}: {exc}".splitlines()[0])
        children, pushes, footprint, wechat, channels = (
            outcomes.get(name) for name in ("children", "pushes", "footprint", "wechat", "channels"))
        if "fleet" in sections:
            from .fleet import run_fleet

            fleet_section = run_fleet(
                args.fleet_children or FLEET_CHILDREN[database.backend], args.pg,
                duration=args.fleet_duration, compress=args.fleet_compress,
                settle=args.fleet_settle, idle=args.fleet_idle, cold=args.fleet_cold,
                workers=args.fleet_workers, threads=args.fleet_threads,
                log=lambda line: print(f"bench: {line}", flush=True))
    except (BenchSetupError, ServerStartError, WrkError) as exc:
        print(f"\nbench: {exc}", file=sys.stderr)
        return EXIT_SETUP
    except (KeyboardInterrupt, SystemExit):
        print("\nbench: interrupted; stopping the servers and removing the database",
              file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()
        database.drop()
        remove_workdir(workdir)

    ratios = {}
    warnings = design_warnings(probes, database.backend) + warnings
    for key, (before, after) in brackets.items():
        reference = report.combine_baselines(runs[before], runs[after])
        ratios[key] = {**report.ratios(runs[key], reference), "baseline": reference,
                       "baseline_runs": [before, after]}
        if report.drifted(reference):
            warnings.append(f"{runs[key]['label']}: the baselines around it differ by "
                            f"{abs(reference['drift_rps'] - 1):.0%}; the machine was noisy, "
                            "rerun before trusting this ratio")
    all_runs = list(runs.values()) + [run_data for section in (leasing, queue) if section
                                      for run_data in section["runs"].values()]
    for run_data in all_runs:
        if run_data["errors"]:
            warnings.append(f"{run_data['label']}: {run_data['errors']} unexpected responses "
                            f"({run_data['statuses']}); first: {run_data['first_error']}")
        if run_data["hit_time_cap"]:
            warnings.append(f"{run_data['label']}: stopped by the time cap after "
                            f"{run_data['ok']} requests")
    warnings += report.work_warnings(leasing, queue, children)
    options = gunicorn_options("127.0.0.1:0", args.workers, args.server_threads)
    results = {
        "setup": {
            "backend": database.backend,
            "database": database.describe(),
            "sections": sections,
            "feeds": args.feeds,
            "nodes": len(fleet),
            "client_threads": args.threads,
            "http_driver": args.driver,
            "wrk_connections": args.connections if args.driver == "wrk" else None,
            "wrk_duration_s": args.duration if args.driver == "wrk" else None,
            "requests": args.requests,
            "full_requests": args.full_requests,
            "time_cap_s": args.time_cap,
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            "seed_seconds": round(seed_seconds, 2),
            "gunicorn": {
                "workers": args.workers,
                "threads": args.server_threads,
                "worker_class": options.get("worker_class"),
                "options": describe_options({k: v for k, v in options.items() if k != "bind"}),
                "baseline_omits_app_hooks": list(APP_HOOKS),
                "worker_processes_seen": worker_counts,
            },
        },
        "runs": runs,
        "ratios": ratios,
        "feeds_304_vs_200": (report.speedup(runs["feeds_304"], runs["feeds_200"], full_bytes)
                             if "feeds_200" in runs else None),
        "db_statements": probes,
        "leasing": leasing,
        "claim_queue": queue,
        "children": children,
        "slow_clients": slow_clients,
        "pushes": pushes,
        "footprint": footprint,
        "wechat": wechat,
        "channels": channels,
        "fleet": fleet_section,
        "warnings": warnings,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    report.write_results(results)
    print(report.render_table(results))
    print("\n".join(goals.render([results])))
    if footprint and "error" not in footprint:
        print("\n" + render_footprint(footprint))
    if wechat:
        print("\n".join(render_wechat(wechat)))
    if channels:
        from .channels import render as render_channels

        print(render_channels(channels))
    print(f"bench: finished in {results['duration_s']:.0f} s")
    failed = any(run_data["errors"] for run_data in all_runs)
    failed = failed or bool(channels and not channels.get("ok"))
    failed = failed or bool(leasing and not leasing["check"]["ok"])
    failed = failed or bool(children and "error" in children)
    failed = failed or bool(pushes and not pushes["ok"])
    failed = failed or bool(footprint and "error" in footprint)
    failed = failed or bool(wechat and "error" in wechat)
    failed = failed or bool(fleet_section and fleet_section.get("errors"))
    return EXIT_ERRORS if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _terminate(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through run()'s finally: servers stop

    signal.signal(signal.SIGTERM, _terminate)
    return run(args)
