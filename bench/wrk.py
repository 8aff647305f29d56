"""Drive an HTTP scenario with `wrk` (a C load generator), so the client is not the ceiling.

With Python `requests` threads in the bench process, a bare Flask endpoint reached only
~450 req/s on this machine: the client, not the server, set the limit. `wrk` sends from
C with a fixed number of keep-alive connections for a fixed duration. Signed requests
need a fresh nonce each, and wrk's Lua has no HMAC, so every request of a scenario is built
beforehand by the scenario's own factory (the same one the Python driver calls) and wrk
replays them in order (`bench/wrk.lua`), one file per wrk thread; a scenario that sends
more requests than were built would replay nonces, which shows up as errors, never as
speed. Unsigned scenarios (plain AK-SK, the bare endpoint) repeat one request.

Connections are kept alive, as wrk does by default.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

LUA = Path(__file__).with_name("wrk.lua")
SIGNED_PER_SECOND = 6000  # requests built per second of duration and connection budget


class WrkError(RuntimeError):
    """wrk is missing or failed; the message says how."""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _header_line(headers: dict) -> str:
    for name, value in headers.items():
        if "\t" in value or "\n" in value:
            raise WrkError(f"header {name} cannot be replayed by wrk.lua")
    return "\t".join(f"{name}: {value}" for name, value in headers.items())


def run_wrk(scenario, *, connections: int, duration: float, wrk_threads: int = 2,
            varies: bool = True, on_answer=None) -> dict:
    """Run one scenario under wrk; return the same fields as the Python driver's results.

    ``varies``: the factory gives a different request each time (signed); else one is built.
    ``on_answer``: called with the body (bytes) of every answer that had the expected
    status, after the run. Requests still in flight when wrk stops are never read: the
    server may have acted on them, and no answer reports it.
    """
    binary = wrk_path()
    if not binary:
        raise WrkError("wrk is not installed (Debian: apt-get install wrk; `make bench` "
                       "installs it) - or run with --driver python")
    count = max(1000, int(SIGNED_PER_SECOND * duration)) if varies else wrk_threads
    workdir = Path(tempfile.mkdtemp(prefix="werss-wrk-"))
    try:
        method, url, _headers, body = scenario.factory(0)
        files = [open(workdir / f"req-{tid}.txt", "w", encoding="utf-8")
                 for tid in range(wrk_threads)]
        try:
            for index in range(count):
                _m, _u, headers, _b = scenario.factory(index)
                files[index % wrk_threads].write(_header_line(headers) + "\n")
        finally:
            for handle in files:
                handle.close()
        (workdir / "body").write_bytes(body or b"")
        command = [binary, "-t", str(wrk_threads), "-c", str(connections),
                   "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", str(LUA), url, "--",
                   str(workdir / "req-"), str(scenario.expected_status), method,
                   str(workdir / "body")]
        if on_answer is not None:
            command.append(str(workdir / "answers-"))
        completed = subprocess.run(command, capture_output=True, text=True,
                                   timeout=duration + 60)
        if on_answer is not None and completed.returncode == 0:
            for tid in range(wrk_threads):
                answers = workdir / f"answers-{tid}.txt"
                if answers.exists():
                    for line in answers.read_bytes().splitlines():
                        on_answer(line)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    line = next((line for line in completed.stdout.splitlines() if line.startswith("WRKJSON ")),
                None)
    if completed.returncode != 0 or line is None:
        raise WrkError(f"wrk failed ({completed.returncode}): "
                       f"{(completed.stderr or completed.stdout).strip()[-500:]}")
    data = json.loads(line.removeprefix("WRKJSON "))
    elapsed = data["duration_us"] / 1e6
    ok = data["ok"]
    errors = data["bad"] + data["socket_errors"]
    return {
        "label": scenario.label,
        "name": scenario.key,
        "driver": "wrk",
        "threads": connections,
        "planned": None,
        "ok": ok,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "hit_time_cap": False,
        "rps": round(ok / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(data["p50_us"] / 1000, 3),
        "p99_ms": round(data["p99_us"] / 1000, 3),
        "mean_ms": round(data["mean_us"] / 1000, 3),
        "statuses": {str(scenario.expected_status): ok,
                     **({"other": data["bad"]} if data["bad"] else {}),
                     **({"socket_errors": data["socket_errors"]}
                        if data["socket_errors"] else {})},
        "mean_response_bytes": round(data["bytes"] / data["requests"]) if data["requests"] else None,
        "first_error": (f"HTTP {data['first_bad']}" if data["first_bad"] else
                        ("socket errors" if data["socket_errors"] else None)),
        "requests_built": count,
        "host": urlsplit(url).netloc,
    }
