"""`werss-child wechat login | status`: the QR login on the child's own host."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .api import WechatError

QR_FILE = "wechat-login-qr.png"
QR_ROUTE = "/wechat/qr.png"


def qr_path(config) -> Path:
    return Path(config.data_dir) / QR_FILE


def _serve_qr(listen: str, path: Path) -> ThreadingHTTPServer | None:
    """Serve the QR image at QR_ROUTE on the health address, unless the agent holds it."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = path.read_bytes() if self.path == QR_ROUTE and path.exists() else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/png" if body else "text/plain")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    try:
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError:
        return None  # the running agent's health listener serves the same file
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def login(config, cache, out=sys.stdout, qr_file: str | None = None) -> int:
    from .manager import WechatManager

    manager = WechatManager(config, cache)
    path = Path(qr_file) if qr_file else qr_path(config)
    server = _serve_qr(config.health_listen, path) if config.health_listen else None

    def on_state(state, **_):
        if state == "waiting_scan":
            print(f"scan this QR code with WeChat: {path}", file=out)
            if config.health_listen:
                print(f"  or open http://{config.health_listen}{QR_ROUTE}", file=out)
        elif state == "scanned":
            print("scanned; confirm the login on the phone", file=out)
        out.flush()

    try:
        session = manager.login(on_state, qr_file=str(path))
    except WechatError as exc:
        print(f"werss-child: WeChat login failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if server:
            server.shutdown()
    print(f"logged in as {session.account_name or 'unknown account'}; the session is stored "
          f"encrypted in {config.data_dir}", file=out)
    return 0


def status(config, cache, out=sys.stdout) -> int:
    from .manager import WechatManager

    capability = WechatManager(config, cache).capability()
    account = capability["account"] or {}
    print(f"wechat session: {'valid' if capability['session_valid'] else 'none or expired'}",
          file=out)
    print(f"account: {account.get('name') or '-'}", file=out)
    print(f"expires at: {capability['expires_at'] or '-'}", file=out)
    print(f"base url: {config.wechat_base_url}", file=out)
    return 0 if capability["session_valid"] else 1
