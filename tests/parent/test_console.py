"""The console's static page and the admin routes it needs (the browser tests drive the UI)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from parent.api.console import STATIC_DIR
from parent.extensions import db
from parent.models import SyncLog
from parent.models.work import Article
from tests.helpers import ADMIN_PASSWORD, ADMIN_USERNAME, assert_error
from tests.parent.test_leasing import claim, dispatch, make_feeds, make_task


# --- the static page -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/console", "/console/"])
def test_console_page_is_served_with_a_strict_policy(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b'src="/console/app.js"' in response.data


@pytest.mark.parametrize("asset, mimetype", [
    ("app.js", "text/javascript"), ("i18n.js", "text/javascript"), ("app.css", "text/css"),
    ("favicon.svg", "image/svg+xml"),
])
def test_assets_are_served_by_the_parent(client, asset, mimetype):
    response = client.get(f"/console/{asset}")
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("path", ["/console/missing.js", "/console/../parent.db",
                                  "/console/%2e%2e/__init__.py"])
def test_unknown_assets_are_404_in_the_envelope(client, path):
    assert_error(client.get(path), 404, "not_found")


class _MarkupAudit(HTMLParser):
    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "script" and "src" not in attributes:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.problems.append(f"{tag} {name}=")
            if name in ("src", "href") and value and re.match(r"^(https?:)?//", value):
                self.external.append(value)


def test_page_has_no_inline_code_and_no_third_party_asset():
    audit = _MarkupAudit()
    audit.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    assert audit.problems == [] and audit.external == []
    for script in ("app.js", "i18n.js"):
        source = re.sub(r"/\*.*?\*/", "", (STATIC_DIR / script).read_text(encoding="utf-8"),
                        flags=re.S)
        # Data from the API only ever becomes text nodes; storage never sees the token.
        assert not re.search(r"\.innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(",
                             source), script
        assert "sessionStorage" not in source
        assert not re.search(r"localStorage\.setItem\([^)]*token", source, re.I)
    assert "@import" not in (STATIC_DIR / "app.css").read_text(encoding="utf-8")


def _translations() -> dict[str, set[str]]:
    source = (STATIC_DIR / "i18n.js").read_text(encoding="utf-8")
    zh, en = source.split("\n  en: {")
    keys = re.compile(r'^\s+"([a-zA-Z0-9_.]+)":', re.M)
    return {"zh": set(keys.findall(zh)), "en": set(keys.findall(en))}


def test_every_word_of_the_console_exists_in_chinese_and_english():
    words = _translations()
    assert words["zh"] == words["en"]
    source = (STATIC_DIR / "app.js").read_text(encoding="utf-8")
    used = {key for key in re.findall(r'\bt\("([a-zA-Z0-9_.]+)"', source)
            if not key.endswith(".")}  # a prefix: checked below
    assert used and used <= words["zh"], sorted(used - words["zh"])
    # Keys built at run time: every value they are built from has a word.
    for prefix, values in {
        "nav.": ["overview", "nodes", "feeds", "tasks", "runs", "deliveries", "logs",
                 "articles", "account"],
        "status.": ["online", "offline", "disabled", "pending", "leased", "completed", "dead",
                    "success", "not_modified", "failed", "sent", "retrying", "fresh",
                    "recent", "stale", "outdated", "never", "enabled", "paused"],
        "wechat.": ["none", "waiting_scan", "scanned", "valid", "expired", "failed"],
        "theme.": ["auto", "light", "dark"],
        "tasks.type": ["0", "1"],
        "origin.": ["admin", "reported", "werss", "default"],
    }.items():
        assert {prefix + value for value in values} <= words["zh"], prefix


# --- password change -------------------------------------------------------------------------

def _login(client, password):
    return client.post("/api/v1/auth/login", json={"username": ADMIN_USERNAME, "password": password})


def test_password_change_revokes_tokens_and_takes_the_new_password(admin, client):
    response = admin.post("/api/v1/auth/password", json={
        "current_password": ADMIN_PASSWORD, "new_password": "a brand new secret"})
    assert response.status_code == 200, response.get_json()
    assert "a brand new secret" not in response.get_data(as_text=True)
    assert_error(admin.get("/api/v1/auth/me"), 401, "invalid_token")
    assert _login(client, ADMIN_PASSWORD).status_code == 401
    assert _login(client, "a brand new secret").status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"current_password": "wrong password", "new_password": "a brand new secret"},
     "current_password"),
    ({"current_password": ADMIN_PASSWORD, "new_password": "short"}, "new_password"),
    ({"current_password": ADMIN_PASSWORD, "new_password": "x" * 73}, "new_password"),
    ({"current_password": ADMIN_PASSWORD}, "new_password"),
    ({"current_password": ADMIN_PASSWORD, "new_password": "a brand new secret", "x": 1}, "x"),
])
def test_bad_password_change_is_refused_and_changes_nothing(admin, client, body, field):
    body_text = assert_error(admin.post("/api/v1/auth/password", json=body), 422,
                             "validation_failed")
    assert field in body_text["details"]
    assert admin.get("/api/v1/auth/me").status_code == 200  # the token still works
    assert _login(client, ADMIN_PASSWORD).status_code == 200


def test_password_change_needs_an_admin(client):
    response = client.post("/api/v1/auth/password", json={
        "current_password": ADMIN_PASSWORD, "new_password": "a brand new secret"})
    assert_error(response, 401, "authentication_required")


# --- cron preview ----------------------------------------------------------------------------

def test_next_runs_are_the_next_due_times(admin, clock):
    response = admin.get("/api/v1/cron/next-runs", query_string={"cron_exp": "30 8 * * *"})
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    assert data["timezone"] == "UTC" and len(data["next_runs"]) == 5
    moments = [datetime.fromisoformat(run.replace("Z", "+00:00")) for run in data["next_runs"]]
    assert all((m.hour, m.minute) == (8, 30) for m in moments)
    assert moments[0] > clock() and moments[0] - clock() <= timedelta(days=1)
    assert all(later - earlier == timedelta(days=1) for earlier, later in zip(moments, moments[1:]))


def test_next_runs_take_six_fields_with_seconds_first(admin):
    data = admin.get("/api/v1/cron/next-runs",
                     query_string={"cron_exp": "30 */5 * * * *", "count": 3}).get_json()["data"]
    assert [(run[14:16], run[17:19]) for run in data["next_runs"]][0][1] == "30"
    assert len(data["next_runs"]) == 3 and all(run[17:19] == "30" for run in data["next_runs"])


@pytest.mark.parametrize("cron_exp", ["0 0 30 2 *", "0 0 31 4 *"])
def test_an_expression_that_is_never_due_is_refused_not_a_500(admin, cron_exp):
    body = assert_error(admin.get("/api/v1/cron/next-runs", query_string={"cron_exp": cron_exp}),
                        422, "validation_failed")
    assert "never fires" in body["details"]["cron_exp"][0]


@pytest.mark.parametrize("query, field", [
    ({"cron_exp": "61 * * * *"}, "cron_exp"),
    ({"cron_exp": "* * *"}, "cron_exp"),
    ({}, "cron_exp"),
    ({"cron_exp": "* * * * *", "count": 21}, "count"),
])
def test_bad_cron_preview_is_422(admin, query, field):
    body = assert_error(admin.get("/api/v1/cron/next-runs", query_string=query), 422,
                        "validation_failed")
    assert field in body["details"]


# --- articles per day ------------------------------------------------------------------------

def test_articles_per_day_counts_what_the_parent_stored(app, admin, clock):
    feed_id = make_feeds(admin, 1)[0]
    today = clock().astimezone(timezone.utc)
    with app.app_context():
        for index, days_ago in enumerate([0, 0, 1, 3, 20]):
            db.session.add(Article(feed_id=feed_id, article_id=f"a{index}", title=f"t{index}",
                                   url="", created_at=today - timedelta(days=days_ago)))
        db.session.commit()
    days = admin.get("/api/v1/articles/daily", query_string={"days": 7}).get_json()["data"]["days"]
    assert len(days) == 7 and days[-1]["date"] == today.date().isoformat()
    assert [d["count"] for d in days] == [0, 0, 0, 1, 0, 1, 2]
    assert_error(admin.get("/api/v1/articles/daily", query_string={"days": 0}), 422,
                 "validation_failed")


# --- optional features -----------------------------------------------------------------------

def test_features_say_which_optional_routes_exist(app, admin):
    data = admin.get("/api/v1/console/features").get_json()["data"]
    assert set(data) >= {"wechat_login", "wechat_status", "wechat_qr", "feed_search",
                         "deliveries", "delivery_retry", "task_test", "task_preview",
                         "task_channel", "task_sign_secret"}
    assert all(isinstance(value, bool) for value in data.values())
    expected = "deliveries" in {rule.rule.rsplit("/", 1)[-1] for rule in app.url_map.iter_rules()}
    assert data["deliveries"] is expected


def test_a_route_that_lands_lights_its_feature_up():
    from werkzeug.routing import Map, Rule

    from parent.services.console_support import features

    today = Map([Rule("/api/v1/feeds/<feed_id>", methods=["GET", "PUT"], endpoint="feed"),
                 Rule("/api/v1/message-tasks/<task_id>", methods=["GET"], endpoint="task")])
    assert not any(v for k, v in features(today).items() if not k.startswith("task_"))
    landed = Map([Rule("/api/v1/feeds/<feed_id>", methods=["GET"], endpoint="feed"),
                  Rule("/api/v1/feeds/search", methods=["POST"], endpoint="search"),
                  Rule("/api/v1/cascade/nodes/<node_id>/wechat", methods=["GET"], endpoint="w")])
    found = features(landed)
    assert found["feed_search"] and found["wechat_status"]
    assert not found["wechat_login"] and not found["deliveries"]


# --- the sync log shows completed leases -----------------------------------------------------

def _report_logs(app):
    with app.app_context():
        return db.session.execute(
            db.select(SyncLog).where(SyncLog.operation == "report_result")).scalars().all()


@pytest.mark.parametrize("result, status, error", [
    ({"success": True}, "success", None),
    ({"success": False, "error": "HTTP 503 from the hook"}, "failed", "HTTP 503 from the hook"),
])
def test_a_completed_lease_is_logged_as_the_nodes_report(app, admin, node, node_caller,
                                                         result, status, error):
    make_feeds(admin, 1)
    dispatch(admin, make_task(admin))
    lease = claim(node_caller)[0]
    body = {"results": [{"mp_id": lease["feeds"][0]["id"], "mp_name": "f0", "article_count": 3,
                         "new_count": 3, "pushed_count": 3, **result}]}
    assert node_caller.post(f"/leases/{lease['lease_id']}/complete", json=body).status_code == 200
    logs = _report_logs(app)
    assert [(log.node_id, log.direction, log.status, log.data_count, log.error_message)
            for log in logs] == [(node.node_id, "push", status, 1, error)]
