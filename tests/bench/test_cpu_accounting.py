"""The fleet's parent CPU figure counts a worker that exited (gunicorn restarts workers)."""

import os
import subprocess
import sys
import types

from bench.children import server_cpu_seconds


def test_a_reaped_workers_cpu_stays_in_the_servers_total():
    # This test process plays the master: its child burns CPU, exits and is waited for.
    master = types.SimpleNamespace(process=types.SimpleNamespace(pid=os.getpid()),
                                   worker_pids=lambda: [])
    before = server_cpu_seconds(master)
    subprocess.run([sys.executable, "-c",
                    "import time\nend = time.process_time() + 0.5\n"
                    "while time.process_time() < end: pass"], check=True)
    spent = server_cpu_seconds(master) - before
    assert spent >= 0.4, f"the exited child's {spent:.2f} s of CPU were not counted"
