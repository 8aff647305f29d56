"""Ratios, the printed table and the JSON results file."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Ratios are only as good as their reference: flag brackets whose baselines moved this much.
DRIFT_WARNING = 0.25
WIDTH = 112


def ratio(numerator, denominator) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def combine_baselines(before: dict, after: dict) -> dict:
    """The reference for one scenario: the mean of the baseline runs on either side of it."""
    def mean(key):
        values = [run[key] for run in (before, after) if run.get(key) is not None]
        return round(sum(values) / len(values), 3) if values else None

    return {"rps": mean("rps"), "p50_ms": mean("p50_ms"), "p99_ms": mean("p99_ms"),
            "drift_rps": ratio(after.get("rps"), before.get("rps"))}


def drifted(reference: dict) -> bool:
    drift = reference.get("drift_rps")
    return drift is not None and abs(drift - 1) > DRIFT_WARNING


def ratios(subject: dict, reference: dict) -> dict:
    """rps ratio < 1 means fewer requests/s than the bare app; latency ratios > 1 are slower."""
    return {
        "rps_ratio": ratio(subject.get("rps"), reference["rps"]),
        "p50_ratio": ratio(subject.get("p50_ms"), reference["p50_ms"]),
        "p99_ratio": ratio(subject.get("p99_ms"), reference["p99_ms"]),
    }


def speedup(not_modified: dict, full: dict, full_bytes: int) -> dict:
    """How much cheaper a 304 is than a full pull (> 1: the 304 is faster)."""
    return {
        "rps_speedup": ratio(not_modified["rps"], full["rps"]),
        "p50_speedup": ratio(full["p50_ms"], not_modified["p50_ms"]),
        "p99_speedup": ratio(full["p99_ms"], not_modified["p99_ms"]),
        "full_response_kib": round(full_bytes / 1024, 1),
    }


def _fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _fmt_ratio(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value >= 0.01 else f"{value:.1e}"


def _ratio_row(label: str, run: dict, r: dict) -> str:
    base = r["baseline"]
    flag = " !" if run["errors"] or run["hit_time_cap"] or drifted(base) else ""
    return (
        f"{label:26} {run['ok']:>5} {run['errors']:>4} {_fmt(run['rps']):>8} "
        f"{_fmt(run['p50_ms'], 2):>9} {_fmt(run['p99_ms'], 2):>9} "
        f"{_fmt(base['rps']):>10} {_fmt(base['p50_ms'], 2):>8}  "
        f"{_fmt_ratio(r['rps_ratio']):>9} {_fmt_ratio(r['p50_ratio']):>9} "
        f"{_fmt_ratio(r['p99_ratio']):>9}{flag}"
    )


_RATIO_HEADER = (f"{'scenario':26} {'ok':>5} {'err':>4} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9}"
                 f" {'base req/s':>10} {'base p50':>8}  {'rps ratio':>9} {'p50 ratio':>9}"
                 f" {'p99 ratio':>9}")


def render_http(results: dict) -> list[str]:
    """Section 0: heartbeats and feed pulls against the bare app (8 clients)."""
    meta = results["setup"]
    gunicorn = meta["gunicorn"]
    lines = [
        "",
        f"WeRSS Cascade bench — {meta['backend']}, {meta['feeds']:,} feeds, "
        f"{meta['nodes']} nodes; gunicorn {gunicorn['worker_class']} {gunicorn['workers']} "
        f"workers × {gunicorn['threads']} threads for subject and baseline; " +
        (f"client wrk, {meta['wrk_connections']} connections × {meta['wrk_duration_s']:g} s "
         f"per phase" if meta.get("http_driver") == "wrk" else
         f"client {meta['client_threads']} Python threads") + f"; {meta['cpu_count']} CPUs",
    ]
    if not results["ratios"]:
        return lines
    lines += ["", _RATIO_HEADER, "-" * WIDTH]
    for key, r in results["ratios"].items():
        lines.append(_ratio_row(results["runs"][key]["label"], results["runs"][key], r))
    baselines = [run for key, run in results["runs"].items() if key.startswith("baseline_")]
    speed = results["feeds_304_vs_200"]
    lines += [
        "-" * WIDTH,
        "base = mean of the bare-Flask runs just before and after each scenario; their req/s: "
        + ", ".join(_fmt(run["rps"], 0) for run in baselines),
        "rps ratio = scenario req/s ÷ base req/s (1.0 = as fast as the bare app); "
        "latency ratios = scenario ÷ base (> 1 = slower); ! = see the warnings below",
        f"feeds 304 vs 200: {_fmt(speed['rps_speedup'])}× the req/s, "
        f"p50 {_fmt(speed['p50_speedup'])}× lower, p99 {_fmt(speed['p99_speedup'])}× lower; "
        f"a full response is {_fmt(speed['full_response_kib'], 0)} KiB",
        "",
        "SQL per request (one request of each, in-process, steady state):",
    ]
    for probe in results["db_statements"]:
        lines.append(
            f"  {probe['request']:24} HTTP {probe['status']} {probe['in_process_ms']:>8.1f} ms  "
            f"{probe['reads']} reads, {probe['writes']} writes: {', '.join(probe['statements'])}"
        )
    return lines


def render_leasing(section: dict) -> list[str]:
    """Section 1: claims/s and completes/s from many clients, and the double-lease check."""
    check = section["check"]
    statuses = ", ".join(f"{count:,} {status}" for status, count in
                         sorted(check["allocation_statuses"].items()))
    lines = [
        "",
        f"Leasing throughput — {section['clients']} clients ({section['nodes']} nodes × "
        f"{section['threads_per_node']} threads, node capacity {section['node_capacity']}), "
        f"{section['seeded']:,} pending allocations; each claim asks for 1 lease (wait 0)",
        "",
        _RATIO_HEADER,
        "-" * WIDTH,
    ]
    for key, r in section["ratios"].items():
        lines.append(_ratio_row(section["runs"][key]["label"], section["runs"][key], r))
    lines += [
        "-" * WIDTH,
        f"base = the bare app with the same {section['clients']} clients, just before and after",
        f"double-lease check ({'OK' if check['ok'] else 'FAILED'}): the database holds "
        f"{check['leases']:,} leases for the {check['leases_granted_to_clients']:,} the clients "
        f"were told of"
        + (f" ({check['leases_granted_unread']} in flight when wrk stopped, never read; at most "
           f"{check['leases_granted_unread_allowed']} allowed)"
           if check.get("leases_granted_unread_allowed") else "")
        + f"; {check['allocations_leased_twice']} allocations leased more than once; "
        f"{check['client_seen_duplicates']} duplicates seen by clients; allocations now "
        f"{statuses}; {check['completes_ok']:,} completes answered 200",
        "",
        "SQL per request (one of each, in-process, signed, with an Idempotency-Key):",
    ]
    for probe in section.get("db_statements", []):
        lines.append(
            f"  {probe['request']:16} HTTP {probe['status']} {probe['in_process_ms']:>6.1f} ms  "
            f"{probe['reads']} reads, {probe['writes']} writes: {', '.join(probe['statements'])}")
    return lines


def render_queue(section: dict) -> list[str]:
    """Section 2: single-client claim latency as the pending queue grows."""
    runs = section["runs"]
    lines = [
        "",
        f"Claim cost vs pending queue — 1 client, {section['claims_per_size']} claims per size "
        "(max 1, wait 0), one node per size",
        "",
        f"{'pending':30} {'ok':>5} {'err':>4} {'p50 ms':>9} {'p99 ms':>9} {'base p50':>9} "
        f"{'p50 vs base':>11} {'in-proc ms':>10} {'seed s':>7} {'after':>9}",
        "-" * WIDTH,
    ]
    for row in section["rows"]:
        run = runs[row["key"]]
        flag = " !" if run["errors"] or run["hit_time_cap"] else ""
        lines.append(
            f"{row['label']:30} {run['ok']:>5} {run['errors']:>4} {_fmt(run['p50_ms'], 2):>9} "
            f"{_fmt(run['p99_ms'], 2):>9} {_fmt(row['baseline']['p50_ms'], 2):>9} "
            f"{_fmt_ratio(row['p50_vs_baseline']):>11} "
            f"{_fmt(row['probe']['in_process_ms'], 1):>10} {_fmt(row['seed_seconds'], 1):>7} "
            f"{row['pending_after']:>9,}{flag}")
    growth = section["growth"]
    lines += [
        "-" * WIDTH,
        f"claim {growth['to']:,} vs {growth['from']:,} pending: p50 ×"
        f"{_fmt_ratio(growth['p50_ratio'])}, p99 ×{_fmt_ratio(growth['p99_ratio'])} "
        "(1.0 = flat)",
    ]
    if "analyzed_p50_ratio" in growth:
        analyzed = [row["autoanalyzed"] for row in section["rows"] if row["autoanalyzed"]]
        lines.append(f"  after ANALYZE: p50 ×{_fmt_ratio(growth['analyzed_p50_ratio'])}, "
                     f"p99 ×{_fmt_ratio(growth['analyzed_p99_ratio'])}; this server's "
                     f"autovacuum is {section.get('autovacuum')}, last autoanalyze of "
                     f"allocations: {analyzed[-1] if analyzed else 'none during the run'}")
    rows = section["rows"]
    lines.append(f"SQL of leasing.claim_once (in-process, 1 lease): "
                 f"{', '.join(rows[0]['probe']['statements'])}")
    for row in rows:
        if row["pending"] == growth["to"] or row is rows[0]:
            plan = "; ".join(line.strip() for line in row["probe"]["plan"]
                             if "Filter" not in line and "Cond" not in line)
            lines.append(f"  plan at {row['label']}: {plan}")
    return lines


def _mib(sample: dict) -> str:
    return f"{sample['rss_mib']:.1f}"


def render_children(section: dict) -> list[str]:
    """Sections 3 and 4: the idle agent, and dispatch-to-results with 1 and 4 children."""
    if "error" in section:
        return ["", f"Child agents — not measured: {section['error'].splitlines()[0]}"]
    idle, four = section["idle"], section["idle_four"]
    child, bare = idle["child"], idle["bare"]
    defaults = ", ".join(f"{key} {value}" for key, value in section["child_defaults"].items())
    lines = [
        "",
        f"Child agent idle — `werss-child run` with its defaults ({defaults}), connected "
        f"in {idle['connect_s']:.1f} s, then idle {idle['window_s']:.0f} s",
        "",
        f"{'process':34} {'VmRSS MiB':>9} {'VmHWM MiB':>9} {'threads':>7} {'CPU s':>6} "
        f"{'CPU %':>6}",
        "-" * 78,
    ]
    for label, sample in (("werss-child run", child),
                          ("python -c 'time.sleep(60)'", bare)):
        lines.append(f"{label:34} {_mib(sample):>9} {sample['hwm_mib']:>9.1f} "
                     f"{sample['threads']:>7} {sample['cpu_s']:>6.2f} {sample['cpu_pct']:>6.2f}")
    others = [value for key, value in four.items() if key.startswith("child-")]
    lines += [
        "-" * 78,
        f"child vs bare interpreter: RSS ×{_fmt_ratio(ratio(child['rss_kib'], bare['rss_kib']))}"
        f" (+{(child['rss_kib'] - bare['rss_kib']) / 1024:.1f} MiB); CPU resolution "
        f"{100 * 0.01 / idle['window_s']:.2f}% (1 tick over the window)",
        f"4 other idle children: RSS {', '.join(_mib(s) for s in others)} MiB; parent workers' "
        f"CPU while idle: {idle['parent_workers_cpu_pct']:.1f}% with 1 child, "
        f"{four['parent_workers_cpu_pct']:.1f}% with 4",
    ]
    runs = section["runs"]
    lines += [
        "",
        f"Dispatch to results — POST /dispatch of a task over {section['feeds']} local RSS feeds "
        "(1 feed per allocation, webhook push) until every allocation is completed",
        "",
        f"{'children':>8} {'seconds':>8} {'1st lease':>9} {'last lease':>10} {'claims':>6} "
        f"{'leases/node':>14} {'fetches':>7} {'pushes':>6} {'completes':>9} {'uploads':>7}",
        "-" * 92,
    ]
    for run in runs:
        requests_ = run.get("parent_requests", {})
        lines.append(
            f"{run['children']:>8} {run['seconds']:>8.2f} {_fmt(run['first_lease_s'], 2):>9} "
            f"{_fmt(run['last_lease_s'], 2):>10} {run['claim_batches']:>6} "
            f"{'/'.join(str(n) for n in run['leases_per_node']):>14} {run['feed_fetches']:>7} "
            f"{run['webhook_pushes']:>6} "
            f"{requests_.get('complete', {}).get('requests', 0):>9} "
            f"{requests_.get('articles', {}).get('requests', 0):>7}")
    lines += [
        "-" * 92,
        f"4 children vs 1: ×{_fmt(section['speedup'], 2)} faster; lease times are from the "
        "parent's clock, relative to the run; claims = groups of leases granted together; "
        "completes / uploads = requests the parent logged for the run",
        "graceful stop of the single child (first SIGTERM): "
        + (f"{section['graceful_stop_s']:.1f} s" if section["graceful_stop_s"] is not None
           else "not within 40 s"),
    ]
    return lines


def work_warnings(leasing: dict | None, queue: dict | None, children: dict | None) -> list[str]:
    """What the leasing and child sections found that a reader must not miss."""
    warnings = []
    if leasing:
        check = leasing["check"]
        if not check["ok"]:
            warnings.append(f"double-lease check FAILED: {check}")
        for key, r in leasing["ratios"].items():
            if drifted(r["baseline"]):
                warnings.append(f"leasing {key}: the baselines around it differ by "
                                f"{abs(r['baseline']['drift_rps'] - 1):.0%}; rerun")
    if children and "runs" in children:
        for run in children["runs"]:
            if run["allocations_leased_twice"] or run["dead"]:
                warnings.append(f"{run['children']} child(ren): {run['allocations_leased_twice']} "
                                f"allocations leased twice, {run['dead']} dead")
            if run["feed_fetches"] != run["allocations"]:
                warnings.append(f"{run['children']} child(ren): {run['feed_fetches']} feed fetches "
                                f"for {run['allocations']} one-feed allocations")
    return warnings


def render_slow_clients(section: dict) -> list[str]:
    """The slowloris section: heartbeats while slow connections trickle."""
    attacked, quiet = section["under_attack"], section["quiet"]
    return [
        "",
        f"slow clients: {section['slow_connections']} half-sent connections for "
        f"{section['window_s']:g} s; {section['still_open_at_end']} still open at the end",
        f"  heartbeats under attack: {attacked['answered_200']}/{attacked['requests']} answered, "
        f"{attacked['under_1s']} under 1 s; p50 {attacked['p50_s']} s, p95 {attacked['p95_s']} s, "
        f"max {attacked['max_s']} s (quiet: p50 {quiet['p50_s']} s)",
        f"  goal (every heartbeat under 1 s): {'met' if section['goal_met'] else 'NOT met'}",
    ]


def render_table(results: dict) -> str:
    """The human summary printed at the end of a run: one table per section."""
    lines = render_http(results)
    if results.get("leasing"):
        lines += render_leasing(results["leasing"])
    if results.get("claim_queue"):
        lines += render_queue(results["claim_queue"])
    if results.get("children"):
        lines += render_children(results["children"])
    if results.get("slow_clients"):
        lines += render_slow_clients(results["slow_clients"])
    lines.append("")
    for warning in results["warnings"]:
        lines.append(f"WARNING: {warning}")
    lines.append(f"\nresults: {results['results_file']}")
    return "\n".join(lines)


def write_results(results: dict) -> Path:
    """Write bench/results/<UTC timestamp>.json and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{stamp}.json"
    suffix = 1
    while path.exists():
        suffix += 1
        path = RESULTS_DIR / f"{stamp}-{suffix}.json"
    results["results_file"] = str(path)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
