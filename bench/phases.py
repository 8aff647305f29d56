"""The measured phases of a run: one bounded load phase, and the leasing and child sections.

Every subject phase is bracketed by bare-Flask baseline phases with the same client count,
so each ratio compares two things the machine did at nearly the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import report
from .baseline import BASELINE_PATH
from deploy.local_services import LocalServices

from .children import run_child_benchmarks
from .database import BenchDatabase, create_nodes
from .leasing import LeaseLedger, claim_factory, complete_factory, whoami_factory
from .load import run_load
from .probe import probe_work_paths
from .servers import ServerStartError, subject_server

LEASE_CAPACITY = 1000  # "capacity high": node capacity never limits the clients
WARMUP_PER_THREAD = 2


@dataclass
class Scenario:
    key: str
    label: str
    factory: object
    expected_status: int
    count: int
    time_cap: float
    warmup_per_thread: int
    warmup_factory: object = None
    on_response: object = None


def measure(scenario: Scenario, threads: int) -> dict:
    """Run one phase and print a one-line summary.

    :raises ServerStartError: not one request succeeded (the server is gone or refusing).
    """
    print(f"bench: {scenario.label} ...", end=" ", flush=True)
    result = run_load(scenario.key, scenario.factory, scenario.expected_status,
                      count=scenario.count, threads=threads, time_cap=scenario.time_cap,
                      warmup_per_thread=scenario.warmup_per_thread,
                      warmup_factory=scenario.warmup_factory, on_response=scenario.on_response)
    print(f"{result.rps:,.1f} req/s, p50 {1000 * (result.percentile(0.5) or 0):.1f} ms, "
          f"{result.errors} errors", flush=True)
    if result.ok == 0:
        raise ServerStartError(f"{scenario.label}: no successful request "
                               f"({result.first_error or 'no response'})")
    return {"label": scenario.label, **result.to_dict()}


def get_factory(url: str):
    """Requests of one plain GET of ``url``: no credentials, no body."""

    def make(_index: int):
        return "GET", url, {}, None

    return make


def baseline_factory(base_url: str):
    return get_factory(base_url + BASELINE_PATH)


def _baseline(key: str, label: str, base_url: str, count: int, time_cap: float) -> Scenario:
    return Scenario(key, label, baseline_factory(base_url), 200, count=count, time_cap=time_cap,
                    warmup_per_thread=WARMUP_PER_THREAD)


def _feed_ids(store) -> list[str]:
    return store.rss_feed_ids(1000) or ["bench-missing-feed"]


def lease_throughput(args, subject_url: str, baseline_url: str, store, fleet: list,
                     database_url: str, secret_key: str) -> dict:
    """Claims, then completes, from nodes × threads clients; then the double-lease check.

    Afterwards one more claim and complete run in-process to list the SQL each request runs.
    """
    clients = len(fleet) * args.lease_threads
    task_id, run_id = store.create_run("bench leasing")
    seeded = args.claims + args.claims // 10 + clients
    seed_s = store.add_pending(task_id, run_id, _feed_ids(store), seeded)
    print(f"bench: leasing: {seeded:,} pending allocations seeded in {seed_s:.1f} s; "
          f"{len(fleet)} nodes × {args.lease_threads} threads", flush=True)
    ledger = LeaseLedger(args.lease_threads)
    cap = args.lease_time_cap

    def base(index: int) -> Scenario:
        return _baseline(f"lease_baseline_{index}", f"baseline #{index} ({clients} clients)",
                         baseline_url, args.claims, cap)

    runs = {"lease_baseline_0": measure(base(0), clients)}
    runs["claim"] = measure(Scenario(
        "claim", "claim (max 1, wait 0)", claim_factory(subject_url, fleet, ledger), 200,
        count=args.claims, time_cap=cap, warmup_per_thread=WARMUP_PER_THREAD,
        warmup_factory=whoami_factory(subject_url, fleet), on_response=ledger.record), clients)
    runs["lease_baseline_1"] = measure(base(1), clients)
    runs["complete"] = measure(Scenario(
        "complete", "complete (1 result)", complete_factory(subject_url, fleet, ledger), 200,
        count=max(1, len(ledger.granted)), time_cap=cap, warmup_per_thread=WARMUP_PER_THREAD,
        warmup_factory=whoami_factory(subject_url, fleet)), clients)
    runs["lease_baseline_2"] = measure(base(2), clients)

    check = store.check_leases(task_id)
    completed = check["allocation_statuses"].get("completed", 0)
    check.update({
        "claims_ok": runs["claim"]["ok"],
        "leases_granted_to_clients": len(ledger.granted),
        "client_seen_duplicates": ledger.duplicates(),
        "malformed_claim_answers": ledger.malformed,
        "completes_ok": runs["complete"]["ok"],
    })
    check["ok"] = (check["allocations_leased_twice"] == 0 and check["client_seen_duplicates"] == 0
                   and check["leases"] == len(ledger.granted) == runs["claim"]["ok"]
                   and completed == runs["complete"]["ok"])
    # After the check: this claim takes one of the allocations left pending.
    statements = probe_work_paths(database_url, secret_key, fleet[0])
    ratios = {}
    for key, (before, after) in {"claim": ("lease_baseline_0", "lease_baseline_1"),
                                 "complete": ("lease_baseline_1", "lease_baseline_2")}.items():
        reference = report.combine_baselines(runs[before], runs[after])
        ratios[key] = {**report.ratios(runs[key], reference), "baseline": reference,
                       "baseline_runs": [before, after]}
    return {"clients": clients, "nodes": len(fleet), "threads_per_node": args.lease_threads,
            "node_capacity": LEASE_CAPACITY, "seeded": seeded, "seed_seconds": round(seed_s, 2),
            "runs": runs, "ratios": ratios, "check": check, "db_statements": statements}


def claim_queue(args, subject_url: str, baseline_url: str, store, nodes: list,
                backend: str) -> dict:
    """Single-client claim latency with 1k, 10k, 100k pending allocations (one node per size)."""
    task_id, run_id = store.create_run("bench queue")
    feed_ids = _feed_ids(store)
    count, cap = args.queue_claims, args.queue_time_cap
    runs = {"queue_baseline_0": measure(_baseline(
        "queue_baseline_0", "baseline #0 (1 client)", baseline_url, count, cap), 1)}
    rows = []
    stages = [(size, False) for size in args.queue_sizes]
    if backend == "postgresql":
        # Right after a bulk insert the planner's statistics are stale; autovacuum's ANALYZE
        # comes within about a minute. Measure the largest queue both ways.
        stages.append((args.queue_sizes[-1], True))
    for index, ((size, analyzed), node) in enumerate(zip(stages, nodes), 1):
        pending = store.pending()
        seed_s = store.add_pending(task_id, run_id, feed_ids, max(0, size - pending))
        if analyzed:
            store.analyze()
        label = f"{size:,} pending" + (" after ANALYZE" if analyzed else "")
        probe = store.probe_claim(node.node_id)
        key = f"claim_{size}" + ("_analyzed" if analyzed else "")
        ledger = LeaseLedger(1)
        runs[key] = measure(Scenario(
            key, f"claim, {label}", claim_factory(subject_url, [node], ledger), 200, count=count,
            time_cap=cap, warmup_per_thread=WARMUP_PER_THREAD,
            warmup_factory=whoami_factory(subject_url, [node])), 1)
        after_key = f"queue_baseline_{index}"
        runs[after_key] = measure(_baseline(after_key, f"baseline #{index} (1 client)",
                                            baseline_url, count, cap), 1)
        reference = report.combine_baselines(runs[f"queue_baseline_{index - 1}"], runs[after_key])
        rows.append({
            "key": key, "label": label, "pending": size, "analyzed": analyzed,
            "pending_before": max(size, pending), "pending_after": store.pending(),
            "seed_seconds": round(seed_s, 2), "baseline": reference,
            "p50_vs_baseline": report.ratio(runs[key]["p50_ms"], reference["p50_ms"]),
            "probe": probe, "autoanalyzed": store.autoanalyzed(),
        })
    first, last = rows[0], rows[len(args.queue_sizes) - 1]
    growth = {"from": first["pending"], "to": last["pending"],
              "p50_ratio": report.ratio(runs[last["key"]]["p50_ms"], runs[first["key"]]["p50_ms"]),
              "p99_ratio": report.ratio(runs[last["key"]]["p99_ms"], runs[first["key"]]["p99_ms"])}
    if len(rows) > len(args.queue_sizes):
        analyzed_row = rows[-1]
        growth["analyzed_p50_ratio"] = report.ratio(runs[analyzed_row["key"]]["p50_ms"],
                                                    runs[first["key"]]["p50_ms"])
        growth["analyzed_p99_ratio"] = report.ratio(runs[analyzed_row["key"]]["p99_ms"],
                                                    runs[first["key"]]["p99_ms"])
    return {"claims_per_size": count, "rows": rows, "runs": runs, "growth": growth,
            "autovacuum": store.autovacuum()}


def child_section(args, workdir: Path, secret_key: str) -> dict:
    """Start a parent on a fresh database, then measure real children against it.

    :raises BenchSetupError | ServerStartError: the database or parent did not come up.
    :raises ChildBenchError: a child did not start or a run did not finish in time.
    """
    agents_dir = workdir / "agents"
    agents_dir.mkdir()
    database = BenchDatabase(args.pg, agents_dir)
    sources = LocalServices()
    server = None
    try:
        url, env = database.create_migrated(secret_key)
        fleet = create_nodes(url, secret_key, 5, prefix="bench-child")
        server = subject_server(env, args.workers, args.server_threads, agents_dir / "parent.log")
        server.start()
        print(f"bench: children: parent on {server.base_url} ({database.describe()}), "
              f"{args.child_feeds} local RSS feeds on {sources.base_url}", flush=True)
        return run_child_benchmarks(database_url=url, env=env, secret_key=secret_key,
                                    sources=sources, fleet=fleet, workdir=agents_dir,
                                    server=server, feeds=args.child_feeds,
                                    settle=args.idle_settle, window=args.idle_window)
    finally:
        if server:
            server.stop()
        sources.close()
        database.drop()

