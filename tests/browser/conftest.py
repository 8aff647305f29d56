"""Fixtures for the browser tests: one Chromium for the session, one live parent per module.

Chromium is Debian's (`bash deploy/install-chromium.sh`), driven by Playwright through
executable_path. Without it the tests are skipped with a message saying so, unless
WERSS_REQUIRE_BROWSER is set (CI sets it), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from deploy.local_services import LocalServices
from tests.conftest import _truncate_postgres
from tests.helpers import ADMIN_PASSWORD, SECRET_KEY
from tests.support.http_callers import AdminHttp
from tests.support.processes import start_live_parent

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("WERSS_SCREENSHOT_DIR") or REPO / "artifacts" / "screenshots")
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
FAST_PARENT = {"WERSS_CASCADE_LEASE_TTL": "6", "WERSS_CASCADE_MAINTENANCE_INTERVAL": "1",
               "WERSS_CASCADE_HEARTBEAT_INTERVAL": "2", "WERSS_CASCADE_RETRY_BACKOFF": "1"}


def _unavailable(reason: str):
    if os.environ.get("WERSS_REQUIRE_BROWSER"):
        pytest.fail(f"browser tests required (WERSS_REQUIRE_BROWSER is set) but {reason}")
    pytest.skip(f"console browser tests skipped: {reason}")


def chromium_executable() -> str | None:
    """Debian's Chromium, or WERSS_CHROMIUM when set."""
    named = os.environ.get("WERSS_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser():
    executable = chromium_executable()
    if executable is None:
        _unavailable("Chromium was not found (install it with `bash deploy/install-chromium.sh`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (`make install`)")
    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=executable, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def console_db(request, db_backend, tmp_path_factory):
    """A migrated database shared by one module's tests (the parent keeps running)."""
    if db_backend == "postgresql":
        url = request.getfixturevalue("pg_database")
        _truncate_postgres(url)
        return url
    path = tmp_path_factory.mktemp("console-db") / "parent.db"
    shutil.copy(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, db_backend):
    return tmp_path_factory.mktemp(f"console-{db_backend}")


@pytest.fixture(scope="module")
def parent(console_db, workdir):
    live = start_live_parent(database_url=console_db, secret_key=SECRET_KEY, workdir=workdir,
                             workers=2, extra_env=FAST_PARENT)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def services(db_backend):
    """The RSS sources and webhook receiver, fresh for each backend's run of a module."""
    local = LocalServices()
    yield local
    local.close()


class ConsolePage:
    """A Playwright page on the console that remembers what the browser logged."""

    def __init__(self, context, base_url: str, backend: str):
        self.context = context
        self.page = context.new_page()
        self.page.set_default_timeout(20_000)
        self.base_url = base_url
        self.backend = backend
        self.console_errors: list[str] = []
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.console_errors.append(f"pageerror: {error}"))
        self.failed_responses: list[str] = []
        self.page.on("response", lambda r: r.status >= 400 and self.failed_responses.append(
            f"{r.status} {r.request.method} {r.url}"))
        self.in_flight = 0
        self.page.on("request", lambda _: self._count(1))
        self.page.on("requestfinished", lambda _: self._count(-1))
        self.page.on("requestfailed", lambda _: self._count(-1))

    def _count(self, step: int) -> None:
        self.in_flight += step

    def settle(self, quiet: float = 0.3, timeout: float = 20.0) -> None:
        """Wait until the page has no request in flight (its answers are all in)."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(50)  # lets Playwright deliver the request events
            if self.in_flight > 0:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet:
                return
        raise AssertionError(f"{self.in_flight} requests still in flight after {timeout} s")

    def _on_console(self, message):
        if message.type in ("error", "warning"):
            self.console_errors.append(f"{message.type}: {message.text}")

    def script_errors(self, allowed_statuses: tuple[int, ...] = ()) -> list[str]:
        """Console errors, less the browser's own network line for an expected status."""
        allowed = tuple(f"status of {status} " for status in allowed_statuses)
        errors = [text for text in self.console_errors
                  if not (allowed and "Failed to load resource" in text
                          and any(a in text for a in allowed))]
        if errors:  # name the requests that failed, to tell which one it was
            errors.append("responses >= 400: " + "; ".join(self.failed_responses))
        return errors

    def open(self, path: str = "/"):
        return self.page.goto(self.base_url + path)

    def login(self, password: str = ADMIN_PASSWORD) -> None:
        self.open("/")
        self.page.fill("#login-username", "admin")
        self.page.fill("#login-password", password)
        self.page.click("#login-submit")
        self.page.wait_for_selector("#nav-overview[aria-current=page]")

    def go(self, name: str) -> None:
        self.page.click(f"#nav-{name}")
        self.page.wait_for_selector(f"#nav-{name}[aria-current=page]")
        self.page.wait_for_selector(f".page-{name}")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}-{self.backend}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(browser, parent, db_backend):
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="UTC",
                                  color_scheme="light")
    page = ConsolePage(context, parent.base_url, db_backend)
    yield page
    context.close()


@pytest.fixture
def admin_api(parent):
    admin = AdminHttp.login(parent.base_url)
    yield admin
    admin.close()
