"""Real `werss-parent serve` and `werss-child run` processes for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.helpers import ADMIN_PASSWORD, NodeCredentials, free_port

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

_INHERITED_PREFIXES = ("WERSS_", "CASCADE_", "GUNICORN_")
_INHERITED_NAMES = {"DATABASE_URL", "PORT", "PROMETHEUS_MULTIPROC_DIR"}


def werss_parent_executable() -> str:
    """Return the `werss-parent` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "werss-parent"
    if beside.exists():
        return str(beside)
    found = shutil.which("werss-parent")
    if not found:
        raise RuntimeError("werss-parent is not installed in this environment")
    return found


def clean_env(**extra: str) -> dict[str, str]:
    """Return this process's environment without any WeRSS/gunicorn setting, plus ``extra``."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES) and name not in _INHERITED_NAMES
    }
    env.update(extra)
    return env


def stop_process_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT,
                       signalled: bool = False) -> None:
    """SIGTERM a process started with start_new_session=True; SIGKILL its group if it lingers."""
    if process.poll() is None and not signalled:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    try:
        # The group id is the leader's pid: this reaches only what the test started.
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()


class ParentExitedError(RuntimeError):
    """`werss-parent serve` stopped before it answered /healthz."""


class LiveParent:
    """A running `werss-parent serve` under gunicorn, reachable over HTTP."""

    def __init__(self, process: subprocess.Popen, base_url: str, log_path: Path):
        self.process = process
        self.base_url = base_url
        self.log_path = log_path
        self._signalled = False

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def listening(self) -> bool:
        """Tell whether this process (not another one on a reused port) holds the socket."""
        return f"Listening at: {self.base_url} ({self.process.pid})" in self.log_text()

    def wait_until_healthy(self, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ParentExitedError(
                    f"werss-parent serve exited with {self.process.returncode}:\n{self.log_text()}")
            if self.listening():
                try:
                    response = requests.get(self.url("/healthz"), timeout=2,
                                            headers={"Connection": "close"})
                    if response.status_code == 200:
                        return
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(
            f"werss-parent serve did not answer /healthz within {timeout} s:\n{self.log_text()}")

    def log_tail(self, size: int = 3000) -> str:
        """The end of the server log, for assertion messages."""
        return self.log_text()[-size:]

    def terminate(self) -> None:
        """Ask gunicorn for a graceful stop (SIGTERM) without waiting for it."""
        if self.process.poll() is None and not self._signalled:
            self.process.send_signal(signal.SIGTERM)
            self._signalled = True

    def stop(self) -> None:
        """Stop gracefully, then kill whatever is left of the process group."""
        self.terminate()
        stop_process_group(self.process, signalled=True)


def start_live_parent(
    *, database_url: str, secret_key: str, workdir: Path, workers: int = 2,
    name: str = "parent", extra_env: dict[str, str] | None = None, attempts: int = 3,
    port: int | None = None,
) -> LiveParent:
    """Start `werss-parent serve` on ``port`` (default: a free one) and wait for /healthz."""
    metrics_dir = workdir / f"{name}-metrics"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    # gunicorn's control socket defaults to one path per user; give each parent its own.
    runtime_dir = workdir / f"{name}-run"
    runtime_dir.mkdir(mode=0o700, exist_ok=True)
    env = clean_env(
        WERSS_DATABASE_URL=database_url,
        WERSS_SECRET_KEY=secret_key,
        WERSS_CASCADE_BCRYPT_ROUNDS="4",
        WERSS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        XDG_RUNTIME_DIR=str(runtime_dir),
        PYTHONUNBUFFERED="1",
        **(extra_env or {}),
    )
    fixed_port = port
    for attempt in range(1, attempts + 1):
        port = fixed_port or free_port()
        log_path = workdir / f"{name}.log"
        command = [werss_parent_executable(), "serve", "--bind", f"127.0.0.1:{port}",
                   "--workers", str(workers)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        parent = LiveParent(process, f"http://127.0.0.1:{port}", log_path)
        try:
            parent.wait_until_healthy()
            return parent
        except ParentExitedError:
            parent.stop()
            # Another process took the free port before gunicorn bound it: try another.
            if ("Connection in use" not in parent.log_text() or attempt == attempts
                    or fixed_port):
                raise
        except BaseException:
            parent.stop()
            raise
    raise AssertionError("unreachable")


def werss_child_executable() -> str:
    """Return the `werss-child` console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "werss-child"
    return str(beside) if beside.exists() else shutil.which("werss-child")


class ChildProcess:
    """A running `werss-child run` in its own process group, logging to a file."""

    def __init__(self, process: subprocess.Popen, log_path: Path, data_dir: Path):
        self.process = process
        self.log_path = log_path
        self.data_dir = data_dir

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        stop_process_group(self.process)


def start_child(base_url: str, creds: NodeCredentials, workdir: Path, name: str,
                **env: str) -> ChildProcess:
    """Start `werss-child run` for ``creds`` with fast cadences and its own data directory."""
    data_dir = workdir / f"{name}-data"
    log_path = workdir / f"{name}.log"
    environment = clean_env(**{
        "CASCADE_PARENT_URL": base_url, "CASCADE_API_KEY": creds.api_key,
        "CASCADE_API_SECRET": creds.api_secret, "CASCADE_DATA_DIR": str(data_dir),
        "CASCADE_HEARTBEAT_INTERVAL": "2", "CASCADE_SYNC_INTERVAL": "5",
        "CASCADE_CLAIM_WAIT": "1", "PYTHONUNBUFFERED": "1",
        "CASCADE_ALLOW_PRIVATE_ADDRESSES": "true",  # the fake sources listen on 127.0.0.1
        **env})
    with open(log_path, "ab") as log:
        process = subprocess.Popen([werss_child_executable(), "run"], env=environment,
                                   cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    return ChildProcess(process, log_path, data_dir)


def wait_for(condition, timeout: float = 60.0, interval: float = 0.3, what: str = "condition"):
    """Poll ``condition`` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
