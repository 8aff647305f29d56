"""The admin console: static files served at / and /console/, under a strict CSP."""

from pathlib import Path

from flask import Blueprint, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent.parent / "console_static"

# No inline script or style anywhere, no third-party origin; images may be blob: URLs
# (the WeChat QR code is fetched with the Bearer token and shown from a blob).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

bp = Blueprint("console", __name__)


@bp.after_request
def _secure(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    # Assets change with each release and are small: always revalidate.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
@bp.get("/console")
@bp.get("/console/")
def index():
    # Asset URLs in the page are absolute, so one page serves all three paths.
    return send_from_directory(STATIC_DIR, "index.html")


@bp.get("/console/<path:asset>")
def asset(asset: str):
    # send_from_directory refuses paths that leave STATIC_DIR (404 in the envelope).
    return send_from_directory(STATIC_DIR, asset)
