"""End-to-end helpers: a real `werss-parent serve` process and HTTP callers for it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from shared import signing
from shared.paths import CASCADE_PREFIX, LOGIN
from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME, NodeCredentials, free_port

STARTUP_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
HTTP_TIMEOUT = 30.0

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


class AdminHttp:
    """An admin talking to a live parent with a Bearer token."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # No kept-alive connections: gunicorn lingers on them when it stops.
        self.session.headers["Connection"] = "close"

    @classmethod
    def login(cls, base_url: str, username: str = ADMIN_USERNAME,
              password: str = ADMIN_PASSWORD) -> AdminHttp:
        response = requests.post(base_url + LOGIN,
                                 json={"username": username, "password": password},
                                 headers={"Connection": "close"}, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"]["token_type"] == "bearer"
        return cls(base_url, body["data"]["access_token"])

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.request("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.request("DELETE", path, **kwargs)

    def create_node_with_credentials(self, name: str = "child-e2e",
                                     prefix: str = CASCADE_PREFIX) -> NodeCredentials:
        response = self.post(f"{prefix}/nodes", json={"name": name, "node_type": 1})
        assert response.status_code == 201, response.text
        node_id = response.json()["data"]["node_id"]
        response = self.post(f"{prefix}/nodes/{node_id}/credentials")
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return NodeCredentials(node_id, data["api_key"], data["api_secret"])

    def close(self) -> None:
        self.session.close()


class NodeHttp:
    """A child node calling a live parent with plain or signed AK-SK, as `requests` sends it."""

    def __init__(self, base_url: str, creds: NodeCredentials, mode: str = "signed",
                 prefix: str = CASCADE_PREFIX):
        self.base_url = base_url
        self.creds = creds
        self.mode = mode
        self.prefix = prefix

    def prepare(self, method: str, route: str, *, json=None, params=None, headers=None,
                timestamp: int | None = None) -> requests.PreparedRequest:
        """Build the exact request to send, signed over the path and query it will carry."""
        prepared = requests.Request(
            method, self.base_url + self.prefix + route, json=json, params=params,
            headers={"Connection": "close", **(headers or {})},
        ).prepare()
        prepared.headers["Authorization"] = self.authorization(prepared, timestamp)
        return prepared

    def authorization(self, prepared: requests.PreparedRequest,
                      timestamp: int | None = None) -> str:
        if self.mode == "plain":
            return signing.plain_authorization(self.creds.api_key, self.creds.api_secret)
        path, _, query = prepared.path_url.partition("?")
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        return signing.signed_authorization(
            self.creds.api_key, self.creds.api_secret, prepared.method, path, query, body,
            timestamp=timestamp,
        )

    @staticmethod
    def send(prepared: requests.PreparedRequest) -> requests.Response:
        """Send on a new connection of its own."""
        with requests.Session() as session:
            return session.send(prepared, timeout=HTTP_TIMEOUT)

    def request(self, method: str, route: str, **kwargs) -> requests.Response:
        return self.send(self.prepare(method, route, **kwargs))

    def get(self, route, **kwargs):
        return self.request("GET", route, **kwargs)

    def post(self, route, **kwargs):
        return self.request("POST", route, **kwargs)
