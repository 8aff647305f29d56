"""Optional health listener for systemd and docker: /healthz and /metrics."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .agent import Agent


def serve_health(agent: Agent, listen: str) -> ThreadingHTTPServer:
    """Start the listener in a daemon thread and return the server (call shutdown() to stop).

    It reads the agent through ``agent.status()`` and ``agent.config`` only.
    """
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the agent's log for the agent
            pass

        def do_GET(self):
            status = agent.status()
            last = status.last_contact_at
            age = None if last is None else time.time() - last
            healthy = age is not None and age <= 3 * status.heartbeat_interval + 30
            held, depth = status.leases_held, status.outbox_depth
            if self.path == "/healthz":
                body = json.dumps({"status": "ok" if healthy else "unhealthy",
                                   "last_contact_age_seconds": age, "outbox_depth": depth,
                                   "leases_held": held, "draining": status.draining})
                self._send(200 if healthy else 503, body.encode(), "application/json")
            elif self.path == "/wechat/qr.png":
                # The QR code of a login in progress, for a person at this host to scan.
                from .wechat.cli import qr_path

                path = qr_path(agent.config)
                body = path.read_bytes() if path.exists() else b""
                self._send(200 if body else 404, body or b'{"error": "no_login_pending"}',
                           "image/png" if body else "application/json")
            elif self.path == "/metrics":
                lines = [
                    "# TYPE werss_child_last_contact_timestamp_seconds gauge",
                    f"werss_child_last_contact_timestamp_seconds {last or 0}",
                    "# TYPE werss_child_outbox_depth gauge",
                    f"werss_child_outbox_depth {depth}",
                    "# TYPE werss_child_leases_held gauge",
                    f"werss_child_leases_held {held}",
                ]
                self._send(200, ("\n".join(lines) + "\n").encode(),
                           "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._send(404, b'{"error": "not_found"}', "application/json")

        def _send(self, status, body, content_type):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="werss-health", daemon=True).start()
    return server
