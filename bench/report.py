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


def render_table(results: dict) -> str:
    """The human summary printed at the end of a run."""
    meta = results["setup"]
    gunicorn = meta["gunicorn"]
    lines = [
        "",
        f"WeRSS Cascade bench — {meta['backend']}, {meta['feeds']:,} feeds, "
        f"{meta['nodes']} nodes; gunicorn {gunicorn['worker_class']} {gunicorn['workers']} "
        f"workers × {gunicorn['threads']} threads for subject and baseline; "
        f"client {meta['client_threads']} threads; {meta['cpu_count']} CPUs",
        "",
        f"{'scenario':26} {'ok':>5} {'err':>4} {'req/s':>8} {'p50 ms':>9} {'p99 ms':>9}"
        f" {'base req/s':>10} {'base p50':>8}  {'rps ratio':>9} {'p50 ratio':>9} {'p99 ratio':>9}",
        "-" * WIDTH,
    ]
    for key, r in results["ratios"].items():
        run = results["runs"][key]
        base = r["baseline"]
        flag = " !" if run["errors"] or run["hit_time_cap"] or drifted(base) else ""
        lines.append(
            f"{run['label']:26} {run['ok']:>5} {run['errors']:>4} {_fmt(run['rps']):>8} "
            f"{_fmt(run['p50_ms'], 2):>9} {_fmt(run['p99_ms'], 2):>9} "
            f"{_fmt(base['rps']):>10} {_fmt(base['p50_ms'], 2):>8}  "
            f"{_fmt_ratio(r['rps_ratio']):>9} {_fmt_ratio(r['p50_ratio']):>9} "
            f"{_fmt_ratio(r['p99_ratio']):>9}{flag}"
        )
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
