"""The child's WeChat side against the fake mp.weixin.qq.com: login, session, collector."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest

from child.cache import LocalCache
from child.collectors import collector_for
from child.collectors.base import CollectError
from child.config import load_config
from child.wechat.api import WechatApi, extract_content
from child.wechat.login import LoginFailedError, run_login
from child.wechat.manager import WechatManager
from child.wechat.session import META_NAME, SessionStore
from tests.support.fake_wechat import FakeWechat

KEY = "CN" + "a" * 32
SECRET = "CS" + "b" * 32


@pytest.fixture
def fake():
    with FakeWechat() as server:
        yield server


@pytest.fixture
def config(fake, tmp_path):
    return load_config(environ={
        "CASCADE_PARENT_URL": "http://127.0.0.1:9", "CASCADE_API_KEY": KEY,
        "CASCADE_API_SECRET": SECRET, "CASCADE_DATA_DIR": str(tmp_path),
        "CASCADE_WECHAT_BASE_URL": fake.base_url, "CASCADE_WECHAT_PAGE_PAUSE": "0",
        "CASCADE_WECHAT_ACCOUNT_PAUSE": "0", "CASCADE_WECHAT_ARTICLE_PAUSE": "0"})


@pytest.fixture
def cache(tmp_path):
    store = LocalCache(tmp_path)
    yield store
    store.close()


def confirm_when_shown(fake: FakeWechat, scan_first: bool = True) -> threading.Thread:
    def phone():
        fake.wait_for_qr()
        if scan_first:
            fake.scan()
            fake.wait_for_status_seen(4)
        fake.confirm()
    thread = threading.Thread(target=phone, daemon=True)
    thread.start()
    return thread


def logged_in(fake, config, cache) -> WechatManager:
    manager = WechatManager(config, cache, poll_interval=0.05)
    confirm_when_shown(fake)
    manager.login(lambda state, **kw: None)
    return manager


def test_qr_login_reports_each_step_and_reads_the_account(fake, config, cache):
    states = []
    manager = WechatManager(config, cache, poll_interval=0.05)
    confirm_when_shown(fake)

    session = manager.login(lambda state, **kw: states.append((state, kw)))

    assert [s for s, _ in states] == ["waiting_scan", "scanned"]
    assert states[0][1]["qr_png"].startswith(b"\x89PNG")
    assert session.account_name == "测试运营号" and session.token.isdigit()
    capability = manager.capability()
    assert capability["session_valid"] is True
    assert capability["account"] == {"name": "测试运营号", "avatar": fake.avatar}
    assert "token" not in json.dumps(capability) and session.token not in json.dumps(capability)


def test_unscanned_qr_code_expires_as_a_failed_login(fake, config):
    api = WechatApi(fake.base_url)
    with pytest.raises(LoginFailedError, match="expired"):
        run_login(api, lambda *a, **k: None, poll_interval=0.01, qr_lifetime=0.1)


def test_session_is_encrypted_at_rest_and_survives_a_restart(fake, config, cache, tmp_path):
    manager = logged_in(fake, config, cache)
    token = manager.session().token

    raw = cache.get_meta(META_NAME)
    assert token not in raw and "slave_sid" not in raw and "测试运营号" not in raw
    again = WechatManager(config, LocalCache(tmp_path))
    assert again.session().token == token
    # Another node secret cannot read it: the cache file alone is not the login.
    assert SessionStore(cache, "CS" + "c" * 32).load() is None


def test_collects_first_five_pages_then_stops_at_a_page_already_seen(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.add_account("MzA5MDAwMDAwMQ==", "科技日报", articles=30)
    feed = {"id": "MP_WXS_3090000001", "faker_id": "MzA5MDAwMDAwMQ==", "source_type": "wechat"}
    collector = collector_for("wechat", None, None, wechat=manager)

    first = collector.collect(feed)
    assert len(first) == 25  # 5 pages x count=5 on a feed's first collection
    assert fake.list_call_count("/cgi-bin/appmsgpublish") == 5
    newest = fake.accounts["MzA5MDAwMDAwMQ=="].articles[0]
    assert first[0].id == newest["aid"] and first[0].title == newest["title"]
    assert first[0].url == newest["link"] and first[0].pic_url == newest["cover"]
    assert first[0].description == newest["digest"]
    assert first[0].publish_time == newest["update_time"]
    assert first[0].wechat == {"item_show_type": 0, "copyright_stat": 1,
                               "create_time": newest["create_time"],
                               "update_time": newest["update_time"]}
    assert first[0].to_wire()["wechat"]["copyright_stat"] == 1

    fake.publish("MzA5MDAwMDAwMQ==", title="新文章")
    second = collector_for("wechat", None, None, wechat=manager).collect(feed)
    assert fake.list_call_count("/cgi-bin/appmsgpublish") == 6  # one page, holding a seen one
    assert second[0].title == "新文章"


def test_parallel_leases_collect_one_account_at_a_time(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.list_delay = 0.2
    for n in range(3):
        fake.add_account(f"F{n}", f"号{n}", articles=2)
    threads = [threading.Thread(target=collector_for("wechat", None, None, wechat=manager).collect,
                                args=({"id": f"X{n}", "faker_id": f"F{n}"},)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fake.list_call_count("/cgi-bin/appmsgpublish") == 3
    assert fake.max_in_flight == 1


def test_api_mode_lists_appmsg_with_the_same_ids(fake, config, cache):
    manager = logged_in(fake, replace(config, wechat_mode="api", wechat_max_pages=1), cache)
    manager.config = replace(config, wechat_mode="api", wechat_max_pages=1)
    fake.add_account("FAKE2", "二号", articles=3)
    articles = collector_for("wechat", None, None, wechat=manager).collect(
        {"id": "MP_WXS_2", "faker_id": "FAKE2"})
    assert [a.id for a in articles] == [a["aid"] for a in fake.accounts["FAKE2"].articles]
    assert fake.list_call_count("/cgi-bin/appmsg") == 1


def test_frequency_control_hands_the_feed_back_rate_limited(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.add_account("F", "限流号", articles=3)
    fake.rate_limit_per_minute = 0
    with pytest.raises(CollectError) as caught:
        collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
    assert caught.value.rate_limited_until is not None
    assert manager.blocked()
    calls = fake.list_call_count()
    with pytest.raises(CollectError):  # cooling down: WeChat is not even asked
        collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
    assert fake.list_call_count() == calls


def test_verification_page_counts_as_frequency_control(fake, config, cache):
    manager = logged_in(fake, replace(config, wechat_full_text=True), cache)
    manager.config = replace(config, wechat_full_text=True)
    fake.add_account("F", "验证号", articles=1)
    fake.verification = True
    with pytest.raises(CollectError) as caught:
        collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
    assert caught.value.rate_limited_until is not None


def test_expired_session_releases_the_lease_and_is_reported_once(fake, config, cache):
    manager = logged_in(fake, config, cache)
    reports = []
    manager.on_expired = lambda: reports.append(manager.capability())
    fake.add_account("F", "过期号", articles=1)
    fake.expire_sessions()
    for _ in range(2):
        with pytest.raises(CollectError) as caught:
            collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
        assert caught.value.action == "release"
    assert len(reports) == 1 and reports[0]["session_valid"] is False


def test_idle_child_notices_the_expired_session_on_wechats_home_page(fake, config, cache):
    manager = logged_in(fake, config, cache)
    reports = []
    manager.on_expired = lambda: reports.append(manager.capability()["session_valid"])
    assert manager.check_session() is True and reports == []
    fake.expire_sessions()
    assert manager.check_session() is False
    assert reports == [False] and manager.session() is None


def test_invalid_account_marks_the_feed_invalid(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.add_account("F", "无效号")
    fake.invalid_fakeids.add("F")
    with pytest.raises(CollectError) as caught:
        collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
    assert caught.value.retryable is False
    assert caught.value.result_extra == {"feed_invalid": True}
    assert "200002" in str(caught.value)


def test_other_wechat_errors_fail_the_allocation_with_wechats_message(config, cache):
    from tests.support.local_server import LocalServer, Reply

    with LocalServer() as server:
        server.serve("/cgi-bin/appmsgpublish", Reply(body=json.dumps(
            {"base_resp": {"ret": 200040, "err_msg": "some new error"}})))
        manager = WechatManager(replace(config, wechat_base_url=server.url("")), cache)
        from child.wechat.api import WechatSession
        manager.adopt(WechatSession(token="1", cookies={}, fingerprint="f",
                                    expires_at=manager.clock() + 60))
        with pytest.raises(CollectError) as caught:
            collector_for("wechat", None, None, wechat=manager).collect({"id": "X", "faker_id": "F"})
    assert caught.value.action == "fail" and "some new error" in str(caught.value)


def test_full_text_keeps_js_content_with_real_images(fake, config, cache):
    manager = logged_in(fake, config, cache)
    manager.config = replace(config, wechat_full_text=True)
    fake.add_account("F", "全文号", articles=1)
    [article] = collector_for("wechat", None, None, wechat=manager).collect(
        {"id": "X", "faker_id": "F"})
    assert article.content.startswith('<div class="rich_media_content" id="js_content">')
    assert f'src="https://mmbiz.qpic.cn/{article.id}/0.png"' in article.content
    assert "data-src" not in article.content and "<script" not in article.content


def test_a_task_whose_template_shows_content_gets_full_text(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.add_account("F", "全文号", articles=1)
    cache.replace_all("tasks", [
        {"id": "t-full", "message_template": "{% for a in articles %}{{ a.content }}{% endfor %}"},
        {"id": "t-plain", "message_template": "{{ feed.mp_name }}"}], None, None)
    [full] = collector_for("wechat", None, None, wechat=manager, task_id="t-full").collect(
        {"id": "X", "faker_id": "F"})
    [plain] = collector_for("wechat", None, None, wechat=manager, task_id="t-plain").collect(
        {"id": "Y", "faker_id": "F"})
    assert full.content and "js_content" in full.content
    assert plain.content is None


def test_extract_content_drops_scripts_and_keeps_nesting():
    html = ('<div id="x"><div id="js_content" style="visibility:hidden"><p>a<b>b</b></p>'
            '<script>evil()</script><img data-src="u"><br></div><p>after</p></div>')
    assert extract_content(html) == '<div id="js_content"><p>a<b>b</b></p><img src="u"><br></div>'


def test_search_returns_contract_rows(fake, config, cache):
    manager = logged_in(fake, config, cache)
    fake.add_account("MzA5", "人民日报", signature="权威")
    rows = manager.api.search(manager.session(), "人民")
    assert rows == [{"faker_id": "MzA5", "mp_name": "人民日报", "mp_intro": "权威",
                     "mp_cover": "https://mmbiz.qpic.cn/head.jpg"}]


@pytest.mark.parametrize("name, value, message", [
    ("CASCADE_WECHAT_MODE", "browser", "expected web or api"),
    ("CASCADE_WECHAT_PAGE_PAUSE", "10-3", "LOW <= HIGH"),
    ("CASCADE_WECHAT_BASE_URL", "ftp://x", r"http\(s\) URL"),
])
def test_bad_wechat_settings_are_refused(tmp_path, name, value, message):
    from child.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(environ={"CASCADE_PARENT_URL": "http://p", "CASCADE_API_KEY": KEY,
                             "CASCADE_API_SECRET": SECRET, name: value})


def test_wechat_defaults_follow_werss():
    config = load_config(environ={"CASCADE_PARENT_URL": "http://p", "CASCADE_API_KEY": KEY,
                                  "CASCADE_API_SECRET": SECRET})
    assert config.wechat_base_url == "https://mp.weixin.qq.com"
    assert (config.wechat_mode, config.wechat_max_pages, config.wechat_pages_per_run) == ("web", 5, 1)
    assert config.wechat_page_pause == (0, 10) and config.wechat_account_pause == (3, 10)


def test_cli_login_saves_the_qr_then_status_shows_the_session(fake, config, cache, tmp_path):
    import io

    from child.wechat import cli

    qr = tmp_path / "qr.png"
    seen = {}

    def phone():
        fake.wait_for_qr()
        while not qr.exists():
            threading.Event().wait(0.02)
        seen["png"] = qr.read_bytes()
        fake.confirm()
    threading.Thread(target=phone, daemon=True).start()
    out = io.StringIO()
    assert cli.login(config, cache, out=out, qr_file=str(qr)) == 0
    assert seen["png"].startswith(b"\x89PNG") and not qr.exists()
    assert "logged in as 测试运营号" in out.getvalue()
    out = io.StringIO()
    assert cli.status(config, cache, out=out) == 0
    assert "wechat session: valid" in out.getvalue() and "测试运营号" in out.getvalue()


def test_agent_sees_a_session_stored_by_the_cli(fake, config, cache, tmp_path):
    running = WechatManager(config, cache)
    assert running.session() is None
    logged_in(fake, config, LocalCache(tmp_path))
    assert running.session() is not None


def test_health_listener_shows_a_pending_qr_code_only_while_the_scan_waits(fake, config, cache,
                                                                         tmp_path):
    from types import SimpleNamespace

    import requests

    from child.agent import AgentStatus
    from child.health import serve_health
    from tests.helpers import free_port

    listen = f"127.0.0.1:{free_port()}"
    idle = AgentStatus(last_contact_at=None, heartbeat_interval=60, leases_held=0,
                       outbox_depth=0, draining=False)
    agent = SimpleNamespace(config=config, status=lambda: idle)
    server = serve_health(agent, listen)
    try:
        url = f"http://{listen}/wechat/qr.png"
        assert requests.get(url, timeout=5).status_code == 404
        manager = WechatManager(config, cache, poll_interval=0.05)
        shown = {}

        def phone():
            fake.wait_for_qr()
            for _ in range(100):
                answer = requests.get(url, timeout=5)
                if answer.status_code == 200:
                    shown["png"] = answer.content
                    break
                threading.Event().wait(0.05)
            fake.confirm()
        threading.Thread(target=phone, daemon=True).start()
        manager.login(lambda *a, **k: None)
        assert shown["png"].startswith(b"\x89PNG")
        assert requests.get(url, timeout=5).status_code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_a_newer_login_request_replaces_the_running_one(fake, config, cache):
    reports = []

    class Parent:
        def report_wechat_login(self, body):
            reports.append((body["command_id"], body["state"]))

        def heartbeat(self, payload):
            return {}

    manager = WechatManager(config, cache, Parent(), poll_interval=0.05)
    manager.handle_commands([{"id": "first", "kind": "wechat_login", "payload": {}}])
    fake.wait_for_qr()
    manager.handle_commands([{"id": "second", "kind": "wechat_login", "payload": {}}])
    for _ in range(200):
        if ("second", "waiting_scan") in reports:
            break
        threading.Event().wait(0.02)
    fake.confirm()
    manager._login_thread.join(10)
    assert ("first", "failed") in reports
    assert reports[-1] == ("second", "valid")
    assert manager.session() is not None


def test_child_status_shows_the_wechat_session(fake, config, tmp_path, capsys, monkeypatch):
    from child.__main__ import main

    cache = LocalCache(tmp_path)
    logged_in(fake, config, cache)
    cache.close()
    for name, value in {"CASCADE_PARENT_URL": "http://127.0.0.1:9", "CASCADE_API_KEY": KEY,
                        "CASCADE_API_SECRET": SECRET, "CASCADE_DATA_DIR": str(tmp_path),
                        "CASCADE_WECHAT_BASE_URL": fake.base_url}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        main(["status"])
    assert stopped.value.code == 0
    assert "wechat: valid (测试运营号, until " in capsys.readouterr().out
