"""Send permits: one rate limit per destination, whoever asks."""

from __future__ import annotations

import hashlib
import threading

import pytest

from parent import create_app
from parent.config import ConfigError, load_settings
from parent.extensions import db
from parent.models import SendBudget
from parent.services import send_budgets
from tests.conftest import base_config, create_node_with_credentials
from tests.helpers import NodeCaller, assert_error
from tests.parent.test_leasing import claim, dispatch, make_feeds, make_task

ROBOT_URL = "https://oapi.dingtalk.com/robot/send?access_token=a"
OTHER_URL = "https://oapi.dingtalk.com/robot/send?access_token=b"
HOOK_URL = "https://hooks.example.org/werss"
# The keys are computed here as the vendor-neutral formula the child uses, not by the code
# under test: SHA-256 of the channel, a newline and the URL.
ROBOT = hashlib.sha256(f"dingtalk\n{ROBOT_URL}".encode()).hexdigest()
OTHER = hashlib.sha256(f"dingtalk\n{OTHER_URL}".encode()).hexdigest()
HOOK = hashlib.sha256(f"webhook\n{HOOK_URL}?".encode()).hexdigest()


def lease_pushing_to(admin, caller, url, **fields):
    """Give ``caller``'s node a live lease of a task that pushes to ``url``."""
    feed = make_feeds(admin, 1, prefix=f"p{hashlib.sha1(url.encode()).hexdigest()[:6]}")
    task = make_task(admin, web_hook_url=url, mps_id=[{"id": feed[0], "mp_name": "x"}],
                     **fields)
    dispatch(admin, task)
    [lease] = claim(caller)
    return lease


@pytest.fixture
def node_caller(admin, node_caller):
    """The node, holding live leases of tasks that push to both robots and the webhook."""
    lease_pushing_to(admin, node_caller, ROBOT_URL)
    lease_pushing_to(admin, node_caller, OTHER_URL)
    lease_pushing_to(admin, node_caller, HOOK_URL, message_type=1)
    return node_caller


def permit(caller, channel="dingtalk", destination=ROBOT):
    response = caller.post("/send-permits", json={"channel": channel, "destination": destination})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def test_permits_to_one_robot_are_spaced_by_its_limit(node_caller, clock):
    waits = [permit(node_caller)["wait"] for _ in range(4)]
    spacing = (60 + 1.2) / 20  # 20/min plus the default 2 % margin
    assert waits == pytest.approx([0, spacing, 2 * spacing, 3 * spacing], abs=0.01)
    clock.advance(60)
    assert permit(node_caller)["wait"] == 0  # the backlog has passed


def test_each_robot_has_its_own_budget(node_caller):
    permit(node_caller)
    assert permit(node_caller, destination=OTHER)["wait"] == 0


def test_no_twenty_first_message_in_any_minute(node_caller, clock):
    sends = []
    for _ in range(45):
        answer = permit(node_caller)
        sends.append(clock().timestamp() + answer["wait"])
        clock.advance(0.5)
    sends.sort()
    assert all(later - earlier >= 60 for earlier, later in zip(sends, sends[20:]))


def test_unlimited_channels_are_granted_at_once(app, node_caller):
    assert permit(node_caller, "webhook", HOOK)["wait"] == 0
    assert permit(node_caller, "webhook", HOOK)["wait"] == 0
    with app.app_context():
        assert db.session.execute(db.select(SendBudget)).first() is None


def test_no_permit_is_reserved_too_far_ahead(node_caller):
    answers = [permit(node_caller) for _ in range(45)]
    assert all(a["granted"] for a in answers[:40])
    refused = answers[-1]
    assert refused["granted"] is False and refused["retry_after"] > 0


@pytest.mark.parametrize("body", [
    {"channel": "slack", "destination": ROBOT},
    {"channel": "dingtalk", "destination": "https://oapi.dingtalk.com/robot/send?access_token=a"},
    {"channel": "dingtalk"},
    {"channel": "dingtalk", "destination": ROBOT, "extra": 1},
])
def test_bad_permit_requests_are_refused_and_change_nothing(app, node_caller, body):
    assert_error(node_caller.post("/send-permits", json=body), 422, "validation_failed")
    with app.app_context():
        assert db.session.execute(db.select(SendBudget)).first() is None


def test_admins_cannot_ask_for_permits(admin):
    response = admin.post("/api/v1/cascade/send-permits",
                          json={"channel": "dingtalk", "destination": ROBOT})
    assert response.status_code == 401


def permit_refused(app, caller, channel="dingtalk", destination=ROBOT):
    assert_error(caller.post("/send-permits", json={"channel": channel,
                                                    "destination": destination}),
                 403, "forbidden")
    with app.app_context():  # nothing reserved: the robot's budget is untouched
        assert db.session.get(SendBudget, destination) is None


def test_a_node_without_a_lease_of_the_robot_gets_no_permit(app, admin, client, clock):
    stranger = NodeCaller(client, create_node_with_credentials(admin, name="stranger"),
                          clock=clock, mode="signed")
    permit_refused(app, stranger)
    lease_pushing_to(admin, stranger, OTHER_URL)  # a lease of another robot is no key to this
    permit_refused(app, stranger, destination=ROBOT)


def test_a_permit_names_the_channel_its_lease_pushes_through(app, node_caller):
    permit_refused(app, node_caller, "feishu", hashlib.sha256(
        f"feishu\n{ROBOT_URL}".encode()).hexdigest())


def test_no_permits_once_the_lease_is_over(app, admin, client, clock):
    caller = NodeCaller(client, create_node_with_credentials(admin, name="late"), clock=clock,
                        mode="signed")
    lease = lease_pushing_to(admin, caller, ROBOT_URL)
    assert permit(caller)["granted"]
    done = caller.post(f"/leases/{lease['lease_id']}/complete", json={"results": []})
    assert done.status_code == 200, done.get_json()
    assert_error(caller.post("/send-permits", json={"channel": "dingtalk",
                                                    "destination": ROBOT}), 403, "forbidden")


def test_configured_limits_replace_the_defaults():
    settings = load_settings({"channel_limits": {"dingtalk": {"count": 5, "per": 10},
                                                 "feishu": None}}, environ={})
    assert settings.channel_limits["dingtalk"].count == 5
    assert "feishu" not in settings.channel_limits
    assert settings.channel_limits["wecom"].count == 20


@pytest.mark.parametrize("raw", [{"slack": {"count": 1}}, {"dingtalk": {"count": 0}},
                                 {"dingtalk": "20/min"}, {"dingtalk": {"count": 1, "burst": 2}}])
def test_bad_limits_are_configuration_errors(raw):
    with pytest.raises(ConfigError, match="channel_limits"):
        load_settings({"channel_limits": raw}, environ={})


def test_concurrent_askers_never_share_a_moment(db_url):
    """Several threads (as several workers would) reserve at once: every moment differs."""
    app = create_app({**base_config(db_url), "channel_limits": {
        "dingtalk": {"count": 50, "per": 1, "margin": 0}}}, environ={})
    moments, errors = [], []

    def ask():
        with app.app_context():
            try:
                for _ in range(10):
                    answer = send_budgets.reserve("dingtalk", ROBOT)
                    db.session.commit()
                    moments.append(answer["wait"])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        row = db.session.get(SendBudget, ROBOT)
        assert row.grants == 40
        db.engine.dispose()


def test_the_shipped_config_example_states_the_channel_defaults():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    shipped = load_settings(environ={"WERSS_CONFIG": str(example)})
    defaults = load_settings(environ={})
    assert shipped.channel_limits == defaults.channel_limits
    assert shipped.notice is None


def test_a_notice_channel_is_checked_at_start():
    with pytest.raises(ConfigError, match="notice.web_hook_url"):
        load_settings({"notice": {"channel": "dingtalk", "web_hook_url": "ftp://x"}}, environ={})
    with pytest.raises(ConfigError, match="notice.sign_secret"):
        load_settings({"notice": {"web_hook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/"
                                                  "send?key=k", "sign_secret": "x"}}, environ={})
    notice = load_settings({"notice": {"web_hook_url": "https://open.feishu.cn/open-apis/bot/"
                                                       "v2/hook/x"}}, environ={}).notice
    assert notice["channel"] == "feishu"
