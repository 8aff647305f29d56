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
from tests.browser.conftest import DESKTOP, PHONE, ConsolePage
from tests.helpers import ADMIN_PASSWORD, SECRET_KEY
from tests.support.processes import start_child, start_live_parent, wait_for

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
        if page.locator("#task-push-newest").count():
            page.fill("#task-push-newest", "10")  # the feed's articles predate the task
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
        # As in WeRSS, the template loop's iterations are joined with a newline.
        assert [p["body"] for p in services.pushes] == [
            "alpha: [alpha post 1]\n [alpha post 2]\n [alpha post 3]"]

        # On a parent that keeps deliveries, the push is one, sent.
        if admin_features(parent)["deliveries"]:
            console.go("deliveries")
            page.wait_for_selector('[data-delivery-status="sent"]')
            row = page.locator('[data-delivery-status="sent"]').first.inner_text()
            assert "push-alpha" in row and "alpha" in row

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
        console.screenshot("overview-after-run-desktop")

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


def admin_features(parent) -> dict:
    from tests.support.http_callers import AdminHttp

    admin = AdminHttp.login(parent.base_url)
    try:
        return admin.get("/api/v1/console/features").json()["data"]
    finally:
        admin.close()


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
    console.settle()  # every request sent so far is answered with the token still valid
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


def test_an_idle_console_returns_to_login_when_the_token_expires(browser, console_db, workdir,
                                                                   db_backend):
    short = start_live_parent(database_url=console_db, secret_key=SECRET_KEY, workdir=workdir,
                              workers=1, name="short-ttl",
                              extra_env={"WERSS_CASCADE_ADMIN_TOKEN_TTL": "4"})
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="UTC")
    try:
        console = ConsolePage(context, short.base_url, db_backend)
        page = console.page
        tokens = _bearer_tokens(page)
        console.login()
        console.go("feeds")  # a page that does not poll; nobody touches it from here on
        page.wait_for_selector("#login-title", timeout=15_000)
        assert "登录已过期" in page.inner_text("#login-message")
        refused = requests.get(short.base_url + "/api/v1/auth/me",
                               headers={"Authorization": tokens[-1]}, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token"
        assert console.script_errors() == []
    finally:
        context.close()
        short.stop()


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


# --- pages for routes other work adds (CONTRACT.md §10) --------------------------------------
# This parent does not serve them yet; the browser answers them here exactly as the contract
# shapes them, so these pages are exercised before the routes land. Everything else in the
# test is the real parent.

def _png() -> bytes:
    """A valid 1x1 PNG, as GET .../wechat/qr.png answers."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b""))


def _ok(route, data, status=200):
    import json

    route.fulfill(status=status, content_type="application/json",
                  body=json.dumps({"code": 0, "message": "success", "data": data}))


class _Upcoming:
    """The contract's answers for the routes this parent lacks, with the calls received."""

    def __init__(self, page):
        self.calls: list[tuple[str, str, str]] = []
        self.wechat_states = ["none"]
        page.route(re.compile(r".*/api/v1/console/features$"), self.features)
        page.route(re.compile(r".*/api/v1/deliveries(\?.*)?$"), self.deliveries)
        page.route(re.compile(r".*/api/v1/deliveries/[^/]+/retry$"), self.record)
        page.route(re.compile(r".*/api/v1/feeds/search$"), self.search)
        page.route(re.compile(r".*/api/v1/message-tasks/preview$"), self.preview)
        page.route(re.compile(r".*/api/v1/message-tasks/[^/]+/test$"), self.record)
        page.route(re.compile(r".*/api/v1/cascade/nodes/[^/]+/wechat(/login)?$"), self.wechat)
        page.route(re.compile(r".*/api/v1/cascade/nodes/[^/]+/wechat/qr\.png$"), self.qr)

    def _note(self, route):
        request = route.request
        self.calls.append((request.method, request.url.split("/api/v1", 1)[1],
                           request.post_data or ""))

    def features(self, route):
        _ok(route, {name: True for name in (
            "wechat_login", "wechat_status", "wechat_qr", "feed_search", "deliveries",
            "delivery_retry", "task_test", "task_preview", "openapi", "task_channel",
            "task_sign_secret")})

    def record(self, route):
        self._note(route)
        _ok(route, {"queued": True})

    def deliveries(self, route):
        self._note(route)
        _ok(route, {"items": [{
            "id": "dlv-1", "task_id": "task-x", "feed_id": "feed-x", "status": "failed",
            "attempts": 3, "last_error": "HTTP 500 from the robot",
            "created_at": "2026-12-01T08:00:00Z", "updated_at": "2026-12-01T08:05:00Z",
        }], "total": 1, "page": 1, "page_size": 50})

    def search(self, route):
        self._note(route)
        _ok(route, [{"faker_id": "MzA1MjM1ODk2MA==", "mp_name": "人民日报",
                     "mp_intro": "参与、沟通、记录时代。", "mp_cover": ""}])

    def preview(self, route):
        self._note(route)
        _ok(route, {"rendered": "预览：" + __import__("json").loads(
            route.request.post_data)["message_template"]})

    def wechat(self, route):
        self._note(route)
        if route.request.method == "POST":
            # The node uploads the QR a moment after the request (qr_ready), then it is scanned.
            self.wechat_states = [("waiting_scan", False), ("waiting_scan", True),
                                  ("scanned", True), ("valid", False)]
            _ok(route, {"state": "waiting_scan", "qr_ready": False}, status=202)
            return
        state, ready = (self.wechat_states.pop(0) if len(self.wechat_states) > 1
                        else self.wechat_states[0]) if self.wechat_states != ["none"] else ("none", False)
        _ok(route, {"state": state, "qr_ready": ready,
                    "account": {"name": "测试公众号", "avatar": ""} if state == "valid" else None,
                    "expires_at": "2026-12-03T08:00:00Z" if state == "valid" else None,
                    "qr_expires_at": "2026-12-01T09:05:00Z" if ready else None, "error": None})

    def qr(self, route):
        self._note(route)
        route.fulfill(status=200, content_type="image/png", body=_png(),
                      headers={"Cache-Control": "no-store"})


def test_pages_for_upcoming_routes_follow_the_contract(console, admin_api):
    page = console.page
    upcoming = _Upcoming(page)
    node_id = admin_api.post("/api/v1/cascade/nodes", json={"name": "wechat-1"}).json()["data"]["id"]
    task = admin_api.post("/api/v1/message-tasks", json={
        "name": "upcoming", "message_type": 1, "web_hook_url": "http://127.0.0.1:1/hook",
        "cron_exp": "0 0 1 1 *"}).json()["data"]
    console.login()
    assert page.inner_text("#ov-deliveries").split()[-1] == "失败的推送"

    # Deliveries: the failed one, retried.
    console.go("deliveries")
    page.wait_for_selector("#deliveries-list td")
    assert "HTTP 500 from the robot" in page.inner_text("#deliveries-list")
    page.click("#deliveries-list button")
    page.wait_for_selector("#deliveries-message .notice-ok")
    assert ("POST", "/deliveries/dlv-1/retry", "{}") in upcoming.calls

    # Account search, and adding what it found: a real WeChat feed on the parent.
    console.go("feeds")
    page.fill("#search-query", "人民")
    page.click("#search-submit")
    page.click("#search-results button")
    page.wait_for_selector('[data-feed-row="人民日报"]')
    feeds = admin_api.get("/api/v1/feeds", params={"q": "人民日报"}).json()["data"]["items"]
    assert [(f["faker_id"], f["source_type"]) for f in feeds] == [("MzA1MjM1ODk2MA==", "wechat")]
    assert ("POST", "/feeds/search", '{"query":"人民"}') in upcoming.calls

    # The template preview renders what the parent answers; test push calls its route.
    console.go("tasks")
    page.click("#task-new")
    assert page.is_enabled("#task-channel") and page.is_enabled("#task-sign-secret")
    page.fill("#task-template", "{{ feed.mp_name }}")
    expect(page.locator("#task-preview")).to_have_text("预览：{{ feed.mp_name }}")
    page.click("#task-form button[type=button]")  # cancel
    page.click('[data-task-row="upcoming"] button:has-text("测试推送")')
    page.wait_for_selector("#tasks-message .notice-ok")
    assert ("POST", f"/message-tasks/{task['id']}/test", "{}") in upcoming.calls

    # WeChat login: the QR code shows while a scan is pending, then the session is valid.
    console.go("nodes")
    page.click('button[data-node="wechat-1"]')
    expect(page.locator("#wechat-state")).to_contain_text("未登录")
    page.click("#wechat-login")
    page.wait_for_selector("#node-wechat .qr img")
    assert page.get_attribute("#node-wechat .qr img", "src").startswith("blob:")
    console.screenshot("wechat-qr-desktop")
    expect(page.locator("#wechat-state")).to_contain_text("测试公众号", timeout=15_000)
    assert page.locator("#node-wechat .qr img").count() == 0
    qr_calls = [call for call in upcoming.calls if call[1].endswith("/wechat/qr.png")]
    assert qr_calls == [("GET", f"/cascade/nodes/{node_id}/wechat/qr.png", "")]  # once ready
    assert console.script_errors() == []


def test_a_parent_without_those_routes_says_so(console, admin_api):
    features = admin_api.get("/api/v1/console/features").json()["data"]
    missing = [name for name in ("deliveries", "feed_search", "task_preview", "task_channel")
               if not features[name]]
    if not missing:
        pytest.skip("this parent serves every optional route the console knows")
    page = console.page
    console.login()
    if not features["deliveries"]:
        console.go("deliveries")
        assert "此父节点尚未提供该功能" in page.inner_text("main")
    if not features["feed_search"]:
        console.go("feeds")
        assert "POST /api/v1/feeds/search" in page.inner_text("main")
    console.go("tasks")
    page.click("#task-new")
    assert page.is_enabled("#task-channel") is features["task_channel"]
    if not features["task_preview"]:
        assert "message-tasks/preview" in page.inner_text("#task-preview")
    assert console.script_errors() == []


def _tab_to(page, selector: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_the_console_works_from_the_keyboard(console):
    page = console.page
    console.open("/")
    page.wait_for_selector("#login-password:focus")  # the username is filled in already
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_selector("#nav-overview[aria-current=page]")
    page.evaluate("document.activeElement.blur()")
    _tab_to(page, "#skip-link")
    page.keyboard.press("Enter")  # skips to the page's content, staying on the page
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.evaluate("location.hash") == "#/overview"
    page.evaluate("document.activeElement.blur()")
    _tab_to(page, "#nav-nodes")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nav-nodes[aria-current=page]")
    _tab_to(page, "#node-name")
    page.keyboard.type("keyboard-node")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open] #cred-api-key")
    assert page.evaluate("document.activeElement.closest('dialog') !== null")
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog", state="detached")
    page.wait_for_selector('[data-node-row="keyboard-node"]')
    assert console.script_errors() == []


OPML = """<?xml version="1.0"?><opml version="2.0"><head><title>t</title></head><body>
<outline text="folder"><outline text="Beta" title="Beta" type="rss" xmlUrl="{url}"/></outline>
</body></opml>"""


def test_managing_feeds_tasks_nodes_and_the_password(console, admin_api, services, tmp_path):
    page = console.page
    console.login()

    # Import: pasted JSON with the per-row report, then an OPML file.
    console.go("feeds")
    page.fill("#import-text", '[{"mp_name": "Gamma", "source_type": "rss", "source_url": "%s"},'
              ' {"mp_name": "Gamma again", "source_type": "rss", "source_url": "%s"},'
              ' {"mp_name": "no url", "source_type": "rss"}]'
              % (services.feed_url("gamma"), services.feed_url("gamma")))
    page.click("#import-submit")
    page.wait_for_selector("#import-report .notice")
    report = page.inner_text("#import-report")
    assert "新建 1，跳过 1，拒绝 1（共 3 行）" in report
    assert "source_url" in report and "Required for an rss feed." in report
    opml = tmp_path / "feeds.opml"
    opml.write_text(OPML.format(url=services.feed_url("beta")), encoding="utf-8")
    page.set_input_files("#import-file", str(opml))
    page.click("#import-submit")
    expect(page.locator("#import-report .notice")).to_contain_text("新建 1，跳过 0，拒绝 0")
    page.wait_for_selector('[data-feed-row="Beta"]')
    links = page.locator('[data-feed-row="Beta"] .links a')
    assert [links.nth(i).get_attribute("href") for i in range(3)] == [
        f"/feed/{beta}.{kind}" for beta in [_feed_id(admin_api, "Beta")]
        for kind in ("rss", "atom", "json")]
    page.fill("#feeds-q", "Gam")
    page.click("#feeds-search")
    expect(page.locator("[data-feed-row]")).to_have_count(1)
    assert page.get_attribute("[data-feed-row]", "data-feed-row") == "Gamma"
    page.fill("#feeds-q", "")
    page.click("#feeds-search")
    page.click('[data-feed-row="Beta"] button:has-text("暂停")')
    expect(page.locator('[data-feed-row="Beta"] .badge-paused')).to_have_count(1)
    assert _feed(admin_api, "Beta")["status"] == 0

    # Edit a task: its cron, feeds and state reach the parent.
    created = admin_api.post("/api/v1/message-tasks", json={
        "name": "to-edit", "message_type": 1, "web_hook_url": services.base_url + "/hook",
        "cron_exp": "0 0 1 1 *"}).json()["data"]
    console.go("tasks")
    due = datetime.fromisoformat(created["next_run_at"].replace("Z", "+00:00"))
    assert page.inner_text('[data-task-row="to-edit"] time') == f"{due:%Y-%m-%d %H:%M:%S}"
    page.click('[data-task-row="to-edit"] button:has-text("编辑")')
    page.fill("#task-cron", "61 * * * *")
    expect(page.locator("#task-next-runs .notice-error")).to_contain_text("not a valid cron")
    page.fill("#task-cron", "15 9 * * 1")
    page.check('#task-feeds input[data-name="Gamma"]')
    page.fill("#task-headers", '{"X-Team": "news"}')
    page.uncheck("#task-enabled")
    page.click("#task-save")
    page.wait_for_selector("#tasks-message .notice-ok")
    task = next(t for t in admin_api.get("/api/v1/message-tasks").json()["data"]["items"]
                if t["name"] == "to-edit")
    assert (task["cron_exp"], task["status"], task["headers"]) == ("15 9 * * 1", 0, {"X-Team": "news"})
    assert [m["mp_name"] for m in task["mps_id"]] == ["Gamma"]

    # A node: edit, test the connection, disable, enable, delete.
    node_id = admin_api.post("/api/v1/cascade/nodes", json={"name": "managed"}).json()["data"]["id"]
    console.go("nodes")
    page.click('button[data-node="managed"]')
    if admin_api.get("/api/v1/console/features").json()["data"]["wechat_status"]:
        # The parent's own WeChat route: a child that never logged in.
        expect(page.locator("#wechat-state")).to_contain_text("未登录")
    page.fill("#edit-node-labels", "cn-east, rss")
    page.fill("#edit-node-capacity", "7")
    page.fill("#edit-node-api-url", console.base_url)
    page.select_option("#edit-node-sources", "rss")
    page.click("#edit-node-save")
    expect(page.locator("#node-dialog-message")).to_contain_text("节点已保存")
    page.click("#node-test")
    expect(page.locator("#node-test-result")).to_contain_text("可达：是；HTTP 200")
    page.click("#node-toggle")
    expect(page.locator("#node-dialog-message")).to_contain_text("节点已停用")
    assert admin_api.get(f"/api/v1/cascade/nodes/{node_id}").json()["data"]["status"] == "disabled"
    page.click("#node-toggle")
    expect(page.locator("#node-dialog-message")).to_contain_text("节点已启用")
    node = admin_api.get(f"/api/v1/cascade/nodes/{node_id}").json()["data"]
    assert (node["labels"], node["capacity"], node["is_active"]) == (["cn-east", "rss"], 7, True)
    assert (node["sources"], node["effective_sources"]) == (["rss"], ["rss"])
    assert "管理员设定" in page.inner_text('[data-node-row="managed"]')
    page.click("#node-delete")
    page.click("#confirm-yes")
    page.wait_for_selector('[data-node-row="managed"]', state="detached")
    assert admin_api.get(f"/api/v1/cascade/nodes/{node_id}").status_code == 404

    # Change the password: every session ends; the new one logs in; then put it back.
    console.go("account")
    page.fill("#acc-current", ADMIN_PASSWORD)
    page.fill("#acc-new", "another long password")
    page.fill("#acc-repeat", "another long password")
    page.click("#acc-submit")
    page.wait_for_selector("#login-title")
    assert "密码已修改" in page.inner_text("#login-message")
    assert admin_api.get("/api/v1/auth/me").status_code == 401
    console.login("another long password")
    console.go("account")
    page.fill("#acc-current", "another long password")
    page.fill("#acc-new", ADMIN_PASSWORD)
    page.fill("#acc-repeat", "not the same")
    page.click("#acc-submit")
    expect(page.locator("#account-message")).to_contain_text("两次输入的新密码不一致")
    page.fill("#acc-repeat", ADMIN_PASSWORD)
    page.click("#acc-submit")
    page.wait_for_selector("#login-title")
    assert console.script_errors(allowed_statuses=(422,)) == []


def _feed(admin_api, name: str) -> dict:
    items = admin_api.get("/api/v1/feeds", params={"q": name}).json()["data"]["items"]
    return next(item for item in items if item["mp_name"] == name)


def _feed_id(admin_api, name: str) -> str:
    return _feed(admin_api, name)["id"]
