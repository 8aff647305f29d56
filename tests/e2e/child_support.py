"""Real child processes and the local services they talk to: RSS sources and webhooks."""

from __future__ import annotations

import subprocess
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.e2e import clean_env, stop_process_group
from tests.helpers import NodeCredentials

import shutil
import sys


def rss_document(name: str, count: int = 3) -> bytes:
    now = datetime(2026, 11, 1, tzinfo=timezone.utc)
    items = "".join(
        f"<item><title>{name} post {n}</title><link>http://example.invalid/{name}/{n}</link>"
        f"<guid>{name}-{n}</guid><description>body {n}</description>"
        f"<pubDate>{format_datetime(now - timedelta(hours=n))}</pubDate></item>"
        for n in range(1, count + 1))
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
            f"<title>{name}</title><link>http://example.invalid/{name}</link>"
            f"<description>{name}</description>{items}</channel></rss>").encode()


class LocalServices:
    """One HTTP server on 127.0.0.1: GET /rss/<name>.xml feeds, POST /hook receives pushes."""

    def __init__(self):
        self.hits: dict[str, int] = {}
        self.pushes: list[dict] = []
        self.delays: dict[str, float] = {}  # path -> seconds, for the first request only
        self.lock = threading.Lock()
        services = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                with services.lock:
                    services.hits[self.path] = services.hits.get(self.path, 0) + 1
                    delay = services.delays.pop(self.path, 0)
                if delay:
                    time.sleep(delay)
                name = self.path.rsplit("/", 1)[-1].removesuffix(".xml")
                body = rss_document(name)
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace")
                with services.lock:
                    services.pushes.append({"path": self.path, "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def feed_url(self, name: str) -> str:
        return f"{self.base_url}/rss/{name}.xml"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def werss_child_executable() -> str:
    beside = Path(sys.executable).parent / "werss-child"
    return str(beside) if beside.exists() else shutil.which("werss-child")


class ChildProcess:
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
