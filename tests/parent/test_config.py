"""Configuration: defaults < config.yaml < environment < overrides, clear one-line errors."""

import pytest

from parent import create_app
from parent.config import ConfigError, load_settings


def _yaml(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_match_the_contract():
    settings = load_settings(environ={})
    cascade = settings.cascade
    assert settings.port == 8001
    assert settings.database_url == "sqlite:///data/parent.db"
    assert (cascade.heartbeat_interval, cascade.offline_after_seconds) == (60, 180)
    assert cascade.allow_plain_auth is True and cascade.max_body_bytes == 10 * 1024 * 1024
    assert cascade.sync_log_retention_days == 30 and cascade.lease_ttl == 600
    assert cascade.max_attempts == 3 and cascade.feeds_per_allocation == 1
    assert cascade.claim_max_wait == 30


def test_yaml_then_environment_then_overrides(tmp_path):
    path = _yaml(tmp_path, "db: sqlite:///x.db\nport: 9000\nsecret_key: yaml-secret-0123456789\n"
                           "cascade:\n  heartbeat_interval: 20\n  allow_plain_auth: false\n")
    settings = load_settings(environ={"WERSS_CONFIG": path})
    assert settings.port == 9000 and settings.cascade.heartbeat_interval == 20
    assert settings.cascade.offline_after_seconds == 60 and not settings.cascade.allow_plain_auth
    env = {"WERSS_CONFIG": path, "PORT": "9100", "WERSS_CASCADE_HEARTBEAT_INTERVAL": "30",
           "DATABASE_URL": "postgresql://u@h/db"}
    settings = load_settings(environ=env)
    assert settings.port == 9100 and settings.cascade.heartbeat_interval == 30
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    env["WERSS_DATABASE_URL"] = "postgres://u@h/other"
    assert load_settings(environ=env).database_url == "postgresql+psycopg://u@h/other"
    settings = load_settings({"cascade": {"heartbeat_interval": 5}}, environ=env)
    assert settings.cascade.heartbeat_interval == 5


def test_secret_key_file_is_read(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-secret-0123456789abc\n")
    settings = load_settings(environ={"WERSS_SECRET_KEY_FILE": str(key_file)})
    assert settings.secret_key == "file-secret-0123456789abc"


@pytest.mark.parametrize("text,needle", [
    ("cascade:\n  heartbeat_interval: soon\n", "cascade.heartbeat_interval"),
    ("cascade:\n  heartbeat_interval: 0\n", "cascade.heartbeat_interval"),
    ("cascade:\n  allow_plain_auth: maybe\n", "cascade.allow_plain_auth"),
    ("cascade:\n  claim_max_wait: 31\n", "cascade.claim_max_wait"),
    ("cascade:\n  typo_key: 1\n", "typo_key"),
    ("port: 70000\n", "port"),
    ("dbb: sqlite:///x\n", "dbb"),
    ("db: mysql://x/y\n", "db"),
    ("secret_key: short\n", "secret_key"),
    ("[not, a, mapping]\n", "mapping"),
    ("key: [unclosed\n", "not valid YAML"),
])
def test_invalid_values_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"WERSS_CONFIG": _yaml(tmp_path, text)})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_missing_config_file_is_a_clear_error():
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"WERSS_CONFIG": "/nonexistent/config.yaml"})


def test_parent_refuses_to_start_without_a_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="no secret key"):
        create_app({"db": f"sqlite:///{tmp_path}/p.db"}, environ={})


def test_env_overrides_every_cascade_key():
    settings = load_settings(environ={"WERSS_CASCADE_ALLOW_PLAIN_AUTH": "false",
                                      "WERSS_CASCADE_MAX_BODY_BYTES": "2048",
                                      "WERSS_CASCADE_OFFLINE_AFTER": "45"})
    assert settings.cascade.allow_plain_auth is False
    assert settings.cascade.max_body_bytes == 2048 and settings.cascade.offline_after_seconds == 45


def test_secret_key_file_from_the_environment_beats_the_yaml_key(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-the-env-file-0123456789\n")
    path = _yaml(tmp_path, "secret_key: from-the-yaml-0123456789\n")
    settings = load_settings(environ={"WERSS_CONFIG": path, "WERSS_SECRET_KEY_FILE": str(key_file)})
    assert settings.secret_key == "from-the-env-file-0123456789"


def test_the_shipped_config_example_loads_and_states_the_defaults():
    from dataclasses import asdict
    from pathlib import Path

    from parent.config import CascadeSettings

    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    settings = load_settings(environ={"WERSS_CONFIG": str(example)})
    assert asdict(settings.cascade) == asdict(CascadeSettings()), \
        "config.example.yaml and the defaults in parent/config.py disagree"


@pytest.mark.parametrize("word", ["parent", "Parent", "PARENT", "0", 0])
def test_node_type_takes_the_guides_word_and_the_apis_number(tmp_path, word):
    settings = load_settings(environ={"WERSS_CONFIG": _yaml(
        tmp_path, f"cascade:\n  enabled: False\n  node_type: {word}\n")})
    assert settings.cascade.node_type == 0 and settings.cascade.enabled is False


def test_the_guides_parent_block_is_valid_verbatim(tmp_path):
    text = ("# config.yaml\ncascade:\n  enabled: False  # 父节点不需要启用级联\n"
            "  node_type: parent\n")
    assert load_settings(environ={"WERSS_CONFIG": _yaml(tmp_path, text)}).cascade.node_type == 0


@pytest.mark.parametrize("word", ["child", "1"])
def test_a_childs_node_type_given_to_the_parent_says_so(tmp_path, word):
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"WERSS_CONFIG": _yaml(tmp_path, f"cascade:\n  node_type: {word}\n")})
    assert "configures a child" in str(info.value) and "werss-child" in str(info.value)


def test_schedule_timezone_defaults_to_the_hosts_zone_from_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    assert load_settings(environ={}).cascade.schedule_timezone == "Asia/Shanghai"
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert load_settings(environ={}).cascade.schedule_timezone == "Europe/Berlin"
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    explicit = load_settings(environ={"WERSS_CASCADE_SCHEDULE_TIMEZONE": "UTC"})
    assert explicit.cascade.schedule_timezone == "UTC"


def test_host_timezone_falls_back_to_localtime_then_utc():
    from parent.config import host_timezone

    assert host_timezone({"TZ": "Not/AZone"}) == host_timezone({})
    assert host_timezone({"TZ": "America/New_York"}) == "America/New_York"


def test_werss_timezone_defaults_to_shanghai_and_is_validated(tmp_path):
    assert load_settings(environ={}).cascade.werss_timezone == "Asia/Shanghai"
    with pytest.raises(ConfigError, match="cascade.werss_timezone"):
        load_settings(environ={"WERSS_CASCADE_WERSS_TIMEZONE": "Mars/Base"})
