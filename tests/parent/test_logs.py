"""The parent's logs: JSON lines with the request's ids as fields, at the configured level."""

import io
import json
import logging

import pytest

from parent.config import ConfigError, load_settings
from parent.logs import configure_logging
from shared import jsonlog
from tests.parent.test_leasing import claim, dispatch, make_feeds, make_task


@pytest.fixture
def captured(app):
    """What the process's log handler writes, as configured by `serve` for this app."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, dict(jsonlog._process_fields))
    # A parent process has no process-wide fields; in-process child tests may have set some.
    jsonlog._process_fields.clear()
    stream = io.StringIO()
    configure_logging(app.config["WERSS_SETTINGS"], stream)

    def lines():
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    jsonlog._process_fields.update(saved[2])


@pytest.fixture
def app(db_url, clock):
    from parent import create_app
    from tests.conftest import base_config

    config = {**base_config(db_url), "log_format": "json", "log_level": "debug"}
    application = create_app(config, clock=clock, environ={})
    yield application
    from parent.extensions import db

    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def test_each_request_is_one_json_line_with_its_request_node_and_lease(admin, node_caller,
                                                                       node, captured):
    make_feeds(admin, 1)
    dispatch(admin, make_task(admin))
    lease = claim(node_caller)[0]
    response = node_caller.post(f"/leases/{lease['lease_id']}/renew")
    assert response.status_code == 200
    renew = [line for line in captured() if line["logger"] == "werss.access"
             and line.get("lease_id") == lease["lease_id"]]
    assert len(renew) == 1
    line = renew[0]
    assert line["request_id"] == response.headers["X-Request-ID"]
    assert line["node_id"] == node.node_id
    assert line["method"] == "POST" and line["status"] == 200
    assert line["path"].endswith(f"/leases/{lease['lease_id']}/renew")
    assert line["level"] == "INFO" and line["time"].endswith("Z")
    assert isinstance(line["duration_ms"], float)


def test_an_admin_request_names_no_node(admin, captured):
    admin.get("/api/v1/feeds")
    line = [entry for entry in captured() if entry["logger"] == "werss.access"][-1]
    assert line["status"] == 200 and "node_id" not in line and line["request_id"]


def test_the_log_level_is_the_configured_one(app, captured):
    logging.getLogger("werss.test").debug("visible at debug")
    assert [entry["message"] for entry in captured()] == ["visible at debug"]


def test_log_format_and_level_come_from_the_environment():
    settings = load_settings(environ={"WERSS_LOG_FORMAT": "JSON", "WERSS_LOG_LEVEL": "warning"})
    assert (settings.log_format, settings.log_level) == ("json", "WARNING")
    assert load_settings(environ={}).log_format == "text"


@pytest.mark.parametrize("environ, key", [
    ({"WERSS_LOG_FORMAT": "xml"}, "log_format"), ({"WERSS_LOG_LEVEL": "loud"}, "log_level")])
def test_a_wrong_log_setting_is_refused_by_name(environ, key):
    with pytest.raises(ConfigError, match=key):
        load_settings(environ=environ)
