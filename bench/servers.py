"""Start the subject (`werss-parent serve`) and baseline gunicorn servers; always stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 45.0
STOP_TIMEOUT = 15.0


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class ServerProcess:
    """One gunicorn master we started, in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict, port: int, ready_path: str,
                 log_path: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until ``ready_path`` answers 200.

        :raises ServerStartError: it exited, or did not answer within STARTUP_TIMEOUT.
        """
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                self.argv, cwd=REPO_ROOT, env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} server exited with status {code} during startup "
                    f"({' '.join(self.argv)}). Last lines of {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            try:
                response = requests.get(self.base_url + self.ready_path, timeout=2)
                if response.status_code == 200:
                    return
                last_problem = f"HTTP {response.status_code}: {response.text[:200]}"
            except requests.RequestException as exc:
                last_problem = type(exc).__name__
            time.sleep(0.2)
        raise ServerStartError(
            f"{self.name} server did not answer 200 on {self.ready_path} within "
            f"{STARTUP_TIMEOUT:.0f} s (last: {last_problem}). Last lines of {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )

    def worker_pids(self) -> list[int]:
        """Return the pids of the master's children (gunicorn workers)."""
        if not self.process:
            return []
        try:
            out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
                                 capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        return [int(pid) for pid in out.split()]

    def stop(self) -> None:
        """Stop the master (graceful, then forced) and anything left in its process group."""
        process = self.process
        if process is None:
            return
        group = process.pid  # start_new_session: the group id is the master's pid
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            pass
        else:  # a worker or the master outlived the graceful stop
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            print(f"warning: {self.name} server (pid {process.pid}) did not exit", file=sys.stderr)
        self.process = None


def subject_server(env: dict, workers: int, threads: int, log_path: Path) -> ServerProcess:
    """The parent as users run it: ``werss-parent serve`` (``python -m parent serve``)."""
    port = free_port()
    argv = [sys.executable, "-m", "parent", "serve", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads)]
    return ServerProcess("subject (werss-parent serve)", argv, env, port, "/healthz", log_path)


def baseline_server(env: dict, workers: int, threads: int, log_path: Path) -> ServerProcess:
    """The bare Flask app under the same gunicorn settings."""
    from .baseline import BASELINE_PATH

    port = free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads)]
    return ServerProcess("baseline (bare Flask)", argv, env, port, BASELINE_PATH, log_path)
