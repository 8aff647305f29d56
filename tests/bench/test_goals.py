"""bench.goals reads each of issue 14's goals out of a results file, never estimating one."""

import json

from bench import goals


def _run(rps, p50, p99, errors=0):
    return {"label": "x", "rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def _ratios(rps, base_rps, base_p99=10.0):
    return {"rps_ratio": rps / base_rps, "baseline": {"rps": base_rps, "p99_ms": base_p99}}


def _results(backend="sqlite", **overrides):
    runs = {"heartbeat_signed": _run(3_000, 5, 15), "heartbeat_plain": _run(2_000, 8, 30),
            "heartbeat_wrong_secret": _run(1_000, 16, 40), "feeds_304": _run(4_100, 4, 12)}
    ratios = {"heartbeat_signed": _ratios(3_000, 4_000), "heartbeat_plain": _ratios(2_000, 4_000),
              "heartbeat_wrong_secret": _ratios(1_000, 4_000),
              "feeds_304": _ratios(4_100, 5_000)}
    results = {"setup": {"backend": backend, "gunicorn": {"workers": 4}}, "runs": runs,
               "ratios": ratios, "db_statements": [
                   {"request": "heartbeat (plain)", "reads": 1, "writes": 0},
                   {"request": "heartbeat (signed)", "reads": 1, "writes": 2}]}
    results.update(overrides)
    return results


def _by_name(results):
    return {goal.name: measured for goal, measured in goals.evaluate(results)}


def test_each_hot_path_goal_follows_its_figures():
    found = _by_name(_results())
    signed = found["heartbeat signed ≥ 0.6 of bare, p99 < 20 ms"]
    assert signed.met and "3,000 req/s = 0.75 of bare" in signed.figure
    plain = found["heartbeat plain ≥ 0.6 of bare, p99 < 20 ms"]
    assert not plain.met  # 0.5 of bare and a p99 of 30 ms
    assert plain.ratio == 20 / 30  # the worse of the two criteria
    assert found["unchanged pull (304) ≥ 0.8 of bare"].met  # 0.82
    wrong = found["a wrong secret costs no more than a right one"]
    assert not wrong.met and "0.50" in wrong.figure  # half the right secret's ratio
    budget = found["SQL per heartbeat / 304 within the write budget"]
    assert not budget.met and "heartbeat (signed) 1r/2w" in budget.figure


def test_goals_a_run_did_not_measure_are_missing_not_guessed():
    found = _by_name(_results(runs={}, ratios={}))
    assert found["heartbeat signed ≥ 0.6 of bare, p99 < 20 ms"] is None
    assert found["fleet: dispatch → idle child < 1 s (p95)"] is None
    # The claim goal is set for PostgreSQL only: a SQLite run never reports it.
    leasing = {"clients": 50, "runs": {"claim": _run(600, 50, 90)},
               "ratios": {"claim": _ratios(600, 1_000)},
               "check": {"ok": True, "allocations_leased_twice": 0}}
    assert _by_name(_results(leasing=leasing))[
        "50 claimers, 4 workers: ≥ 500 claims/s, 0 double leases"] is None
    on_pg = _by_name(_results("postgresql", leasing=leasing))[
        "50 claimers, 4 workers: ≥ 500 claims/s, 0 double leases"]
    assert on_pg.met and on_pg.ratio == 1.2


def test_the_fleet_goals_read_the_fleet_section():
    fleet = {"children": 10_000, "compress": 1, "errors": 0, "requests": 50_000,
             "routes": {"heartbeat": {"p99_ms": 40.0}, "feed_changes": {"p99_ms": 150.0}},
             "dispatch_to_lease": {"p50_s": 0.3, "p95_s": 0.8, "count": 20},
             "parent_cpu_idle_pct": 30.0, "idle_window_s": 60}
    found = _by_name(_results("postgresql", fleet=fleet))
    assert found["fleet: 0 errors"].met
    assert found["fleet: heartbeat p99 < 100 ms"].met
    assert not found["fleet: pulls p99 < 100 ms"].met
    assert found["fleet: dispatch → idle child < 1 s (p95)"].met
    assert not found["fleet: parent idle CPU < 25 % of one core"].met


def test_a_fleet_p99_is_judged_over_the_run_and_shows_the_p99_after_the_start_beside_it():
    fleet = {"children": 10_000, "compress": 1, "errors": 0, "requests": 50_000,
             "routes": {"heartbeat": {"p99_ms": 420.0, "after_start_p99_ms": 35.0}},
             "dispatch_to_lease": {"p50_s": 0.3, "p95_s": 0.8, "count": 20},
             "parent_cpu_idle_pct": 30.0, "idle_window_s": 60}
    heartbeat = _by_name(_results("postgresql", fleet=fleet))["fleet: heartbeat p99 < 100 ms"]
    assert not heartbeat.met  # the start counts: a restarted parent meets it too
    assert "heartbeat 420 ms (after the start 35 ms)" in heartbeat.figure


def test_the_summary_reads_only_results_written_since_the_run_began(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setattr(goals, "RESULTS_DIR", tmp_path)
    (tmp_path / "20261201T100000Z.json").write_text(json.dumps(_results("postgresql")))
    (tmp_path / "20261201T120000Z.json").write_text(json.dumps(_results("sqlite")))
    assert goals.main(["--since", "20261201T110000Z"]) == 0
    printed = capsys.readouterr().out
    assert "20261201T120000Z.json" in printed
    assert "20261201T100000Z.json" not in printed  # an older PostgreSQL run is not shown
    assert goals.main(["--since", "20261201T130000Z"]) == 2
