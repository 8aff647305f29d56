"""An operator runs the cascade from the console: real Chromium, gunicorn parent, child."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
import requests
from croniter import croniter
from sqlalchemy import create_engine, update

from parent.models import AdminToken

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips (or, in CI, fails) and says why
    expect = None
from tests.browser.conftest import DESKTOP, PHONE
from tests.e2e.child_support import start_child, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

TEMPLATE = "{{ feed.mp_name }}:{% for a in articles %} [{{ a.title }}]{% endfor %}"
PAGES = ["overview", "nodes", "feeds", "tasks", "runs", "deliveries", "logs", "articles",
         "account"]


def _bearer_tokens(page) -> list[str]:
    """Collect the Authorization headers the page sends (to check revocation from outside)."""
    seen: list[str] = []

    def remember(request):
        value = request.headers.get("authorization")
        if value and value.startswith("Bearer ") and value not in seen:
            seen.append(value)

    page.on("request", remember)
    return seen


def test_operator_runs_the_cascade_from_the_console(console, parent, services, workdir):
    page = console.page
    tokens = _bearer_tokens(page)

    response = console.open("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.locator("#login-title").inner_text() == "登录管理后台"
    console.login()
    assert page.locator("h1").first.inner_text() == "概览"

    # Create a node: its credentials are shown once, with the seed's config blocks.
    console.go("nodes")
    page.fill("#node-name", "edge-1")
    page.fill("#node-labels", "")
    page.click("#node-create")
    page.wait_for_selector("#cred-api-secret")
    api_key = page.inner_text("#cred-api-key")
    api_secret = page.inner_text("#cred-api-secret")
    assert re.fullmatch(r"CN[A-Za-z0-9]{32}", api_key)
    assert re.fullmatch(r"CS[A-Za-z0-9]{32}", api_secret)
    yaml_block = page.inner_text("#cred-yaml")
    assert f'  parent_api_url: "{parent.base_url}"' in yaml_block
    assert f'  api_key: "{api_key}"' in yaml_block and f'  api_secret: "{api_secret}"' in yaml_block
    assert "  node_type: child" in yaml_block and "  enabled: True" in yaml_block
    env_block = page.inner_text("#cred-env").splitlines()
    assert env_block == [
        "CASCADE_ENABLED=True", "CASCADE_NODE_TYPE=child",
        f"CASCADE_PARENT_URL={parent.base_url}", f"CASCADE_API_KEY={api_key}",
        f"CASCADE_API_SECRET={api_secret}", "CASCADE_SYNC_INTERVAL=300",
        "CASCADE_HEARTBEAT_INTERVAL=60",
    ]
    console.screenshot("credentials-desktop")
    page.click("#cred-close")
    page.wait_for_selector("dialog", state="detached")
    assert api_secret not in page.content()  # once: gone when the dialog closes

    # Start a real child with what the page showed, and watch it come online.
    child = start_child(parent.base_url, _Creds(api_key, api_secret), workdir, "edge-1")
    try:
        page.wait_for_selector('[data-node-row="edge-1"][data-status="online"]', timeout=40_000)
        page.click('button[data-node="edge-1"]')
        assert api_key in page.inner_text("dialog")
        assert api_secret not in page.content()  # the key is shown again, never the secret
        page.keyboard.press("Escape")
        page.wait_for_selector("dialog", state="detached")

        # Add the locally served RSS feed.
        console.go("feeds")
        page.fill("#rss-name", "alpha")
        page.fill("#rss-url", services.feed_url("alpha"))
        page.click("#rss-add")
        page.wait_for_selector('[data-feed-row="alpha"]')

        # A webhook task: the next five runs show while typing the cron expression.
        console.go("tasks")
        page.click("#task-new")
        page.fill("#task-name", "push-alpha")
        page.select_option("#task-type", "1")
        page.fill("#task-url", services.base_url + "/hook")
        page.fill("#task-cron", "0 8 1 1 *")
        schedule = croniter("0 8 1 1 *", datetime.now(timezone.utc))
        expected = [f"{schedule.get_next(datetime):%Y-%m-%d %H:%M:%S}" for _ in range(5)]
        expect(page.locator("#task-next-runs li")).to_have_text(expected)
        page.check('#task-feeds input[data-name="alpha"]')
        page.fill("#task-template", TEMPLATE)
        console.screenshot("task-form-desktop")
        page.click("#task-save")
        page.wait_for_selector('[data-task-row="push-alpha"]')

        # Dispatch it; the runs page updates by itself until the run is complete.
        page.click('[data-dispatch="push-alpha"]')
        page.wait_for_selector("#tasks-message .notice-ok")
        console.go("runs")
        page.wait_for_selector('[data-allocation-status="completed"]', timeout=60_000)
        row = page.locator('[data-allocation-status="completed"]').first.inner_text()
        assert "alpha" in row and "edge-1" in row and "1/3" in row
        console.screenshot("runs-desktop")
        assert [p["body"] for p in services.pushes] == [
            "alpha: [alpha post 1] [alpha post 2] [alpha post 3]"]

        # The articles appear, searchable by title.
        console.go("articles")
        page.wait_for_selector("[data-article]")
        assert sorted(page.locator("[data-article]").evaluate_all(
            "rows => rows.map(r => r.dataset.article)")) == [
            "alpha post 1", "alpha post 2", "alpha post 3"]
        page.fill("#articles-q", "post 2")
        page.click("#articles-search")
        expect(page.locator("[data-article]")).to_have_count(1)
        assert page.locator("[data-article]").get_attribute("data-article") == "alpha post 2"

        # The node's report of that run is in the sync log.
        console.go("logs")
        page.select_option("#logs-operation", "report_result")
        page.click("#logs-apply")
        page.wait_for_selector('[data-operation="report_result"]')
        entry = page.locator('[data-operation="report_result"]').first.inner_text()
        assert "edge-1" in entry and "push" in entry
        assert page.locator('[data-operation="report_result"]').first.get_attribute(
            "data-log-status") == "success"

        # The overview counts it all.
        console.go("overview")
        assert "1 在线" in page.inner_text("#ov-nodes").replace("\n", " ")
        assert "共 3 篇" in page.inner_text("#ov-chart")
        console.screenshot("overview-desktop")

        # Rotate the credentials (after a warning): the running child is refused at once.
        console.go("nodes")
        page.click('button[data-node="edge-1"]')
        page.click("#node-rotate")
        assert "立即失效" in page.inner_text("#confirm-text")
        page.click("#confirm-yes")
        page.wait_for_selector("#cred-api-key")
        assert page.inner_text("#cred-api-key") != api_key
        page.click("#cred-close")
        wait_for(lambda: child.process.poll() is not None, timeout=30,
                 what="the child to stop on rotated credentials")
        assert child.process.returncode == 3, child.log_text()[-2000:]
    finally:
        child.stop()

    # Nothing secret is kept in the browser's storage.
    stored = page.evaluate("JSON.stringify([localStorage, sessionStorage, document.cookie])")
    assert "Bearer" not in stored and not any(t.split()[1] in stored for t in tokens)

    # Log out: back at the login page, and the token no longer works anywhere.
    page.click("#logout")
    page.wait_for_selector("#login-title")
    assert "已退出登录" in page.inner_text("#login-message")
    assert tokens
    revoked = requests.get(parent.base_url + "/api/v1/auth/me",
                           headers={"Authorization": tokens[-1]}, timeout=10)
    assert revoked.status_code == 401 and revoked.json()["error"] == "invalid_token"
    assert console.script_errors() == []


class _Creds:
    def __init__(self, api_key: str, api_secret: str):
        self.node_id = None
        self.api_key = api_key
        self.api_secret = api_secret


def test_wrong_password_shows_the_throttle_message(console):
    page = console.page
    console.open("/")
    page.fill("#login-username", "intruder")
    for attempt in range(6):
        page.fill("#login-password", f"wrong-password-{attempt}")
        page.click("#login-submit")
        page.wait_for_selector("#login-message .notice-error")
        message = page.inner_text("#login-message")
        if "登录失败次数过多" in message:
            break
        assert message == "用户名或密码错误。"
    assert re.search(r"请在 \d+ 秒后重试", message), message
    assert attempt == 5  # five failures are allowed, the sixth is throttled
    console.screenshot("login-throttled-desktop")
    assert console.script_errors(allowed_statuses=(401, 429)) == []


def test_expired_token_returns_to_login_with_a_message(console, console_db):
    page = console.page
    console.login()
    console.go("feeds")  # a page that does not poll: the click below meets the expiry
    engine = create_engine(console_db.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as connection:  # the token's lifetime runs out
        connection.execute(update(AdminToken.__table__)
                           .where(AdminToken.__table__.c.revoked_at.is_(None))
                           .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    engine.dispose()
    page.click("#nav-articles")
    page.wait_for_selector("#login-title")
    assert "登录已过期" in page.inner_text("#login-message")
    assert console.script_errors(allowed_statuses=(401,)) == []


@pytest.mark.parametrize("viewport_name", ["desktop", "phone"])
def test_every_page_renders_without_console_errors(console, viewport_name):
    page = console.page
    page.set_viewport_size(DESKTOP if viewport_name == "desktop" else PHONE)
    for asset in ("/", "/console/", "/console/app.js", "/console/app.css"):
        headers = requests.get(console.base_url + asset, timeout=10).headers
        assert "default-src 'none'" in headers["Content-Security-Policy"], asset
        assert headers["X-Content-Type-Options"] == "nosniff"
    console.login()
    for name in PAGES:
        console.go(name)
        page.wait_for_load_state("networkidle")
        assert page.locator("main h1").inner_text()
        console.screenshot(f"{name}-{viewport_name}")
    if viewport_name == "phone":
        # Tables become one card per row: nothing wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
    # English is one click away, and stays chosen.
    page.click("#lang-toggle")
    page.wait_for_selector("#nav-nodes >> text=Nodes")
    assert page.locator("main h1").inner_text() == "Account"
    page.click("#theme-toggle")
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    console.go("overview")
    console.screenshot(f"overview-{viewport_name}-en-dark")
    page.click("#lang-toggle")
    assert console.script_errors() == []
