"""The child's configuration: the seed's keys and variables, environment wins, clear errors."""

import subprocess
import sys

import pytest

from child.config import ConfigError, load_config

KEY = "CN" + "a" * 32
SECRET = "CS" + "b" * 32
GOOD = {"CASCADE_PARENT_URL": "http://parent:8001", "CASCADE_API_KEY": KEY,
        "CASCADE_API_SECRET": SECRET}


def test_seed_environment_is_enough():
    config = load_config(environ=GOOD)
    assert config.parent_api_url == "http://parent:8001"
    assert (config.sync_interval, config.heartbeat_interval) == (300, 60)
    assert config.auth_mode == "signed" and config.capacity == 4


def test_yaml_cascade_section_and_environment_wins(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "cascade:\n  enabled: true\n  node_type: 1\n  parent_api_url: http://yaml:8001\n"
        f"  api_key: {KEY}\n  api_secret: {SECRET}\n  sync_interval: 120\n"
        "  heartbeat_interval: 30\n", encoding="utf-8")
    config = load_config(str(path), environ={})
    assert config.parent_api_url == "http://yaml:8001" and config.sync_interval == 120
    config = load_config(str(path), environ={"CASCADE_SYNC_INTERVAL": "60",
                                             "CASCADE_PARENT_URL": "http://env:8001"})
    assert config.sync_interval == 60 and config.parent_api_url == "http://env:8001"


@pytest.mark.parametrize("pasted,expected", [
    ("  http://parent:8001/  ", "http://parent:8001"),
    ("'http://parent:8001'", "http://parent:8001"),
    ('"http://parent:8001/"', "http://parent:8001"),
])
def test_stray_quotes_and_whitespace_are_cleaned(pasted, expected):
    config = load_config(environ={**GOOD, "CASCADE_PARENT_URL": pasted,
                                  "CASCADE_API_KEY": f' "{KEY}" ', "CASCADE_API_SECRET": f"'{SECRET}'\n"})
    assert config.parent_api_url == expected and config.api_key == KEY and config.api_secret == SECRET


@pytest.mark.parametrize("override,needle", [
    ({"CASCADE_PARENT_URL": ""}, "CASCADE_PARENT_URL"),
    ({"CASCADE_PARENT_URL": "parent:8001"}, "CASCADE_PARENT_URL"),
    ({"CASCADE_PARENT_URL": "ftp://parent"}, "CASCADE_PARENT_URL"),
    ({"CASCADE_API_KEY": ""}, "CASCADE_API_KEY"),
    ({"CASCADE_API_KEY": "CN123"}, "CASCADE_API_KEY"),
    ({"CASCADE_API_SECRET": "CN" + "b" * 32}, "CASCADE_API_SECRET"),
    ({"CASCADE_SYNC_INTERVAL": "often"}, "CASCADE_SYNC_INTERVAL"),
    ({"CASCADE_SYNC_INTERVAL": "0"}, "CASCADE_SYNC_INTERVAL"),
    ({"CASCADE_HEARTBEAT_INTERVAL": "-5"}, "CASCADE_HEARTBEAT_INTERVAL"),
    ({"CASCADE_NODE_TYPE": "0"}, "CASCADE_NODE_TYPE"),
    ({"CASCADE_ENABLED": "perhaps"}, "CASCADE_ENABLED"),
    ({"CASCADE_AUTH_MODE": "hmac"}, "CASCADE_AUTH_MODE"),
    ({"CASCADE_CAPACITY": "0"}, "CASCADE_CAPACITY"),
    ({"CASCADE_CA_BUNDLE": "/nonexistent/ca.pem"}, "CASCADE_CA_BUNDLE"),
    ({"CASCADE_HEALTH_LISTEN": "8011"}, "CASCADE_HEALTH_LISTEN"),
])
def test_each_bad_value_is_named_in_one_line(override, needle):
    env = {**GOOD, **override}
    env = {k: v for k, v in env.items() if v != "" or k not in GOOD}
    with pytest.raises(ConfigError) as info:
        load_config(environ=env)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_unknown_yaml_key_is_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("cascade:\n  parent_url: http://x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="parent_url"):
        load_config(str(path), environ={})


@pytest.mark.parametrize("command", ["run", "sync", "status"])
def test_bad_configuration_exits_2_with_one_line(command, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CASCADE_PARENT_URL": "http://127.0.0.1:9",
           "CASCADE_API_KEY": "wrong", "CASCADE_API_SECRET": SECRET}
    result = subprocess.run([sys.executable, "-m", "child", command], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "CASCADE_API_KEY" in lines[0]


def test_disabled_cascade_exits_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", **GOOD, "CASCADE_ENABLED": "false"}
    result = subprocess.run([sys.executable, "-m", "child", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "disabled" in result.stderr


def test_a_config_yaml_shared_with_the_parent_is_accepted(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "cascade:\n  allow_plain_auth: false\n  lease_ttl: 300\n  parent_api_url: http://p:8001\n"
        f"  api_key: {KEY}\n  api_secret: {SECRET}\n", encoding="utf-8")
    assert load_config(str(path), environ={}).parent_api_url == "http://p:8001"


@pytest.mark.parametrize("word", ["child", "Child", "CHILD", "1", 1])
def test_node_type_takes_the_guides_word_and_the_apis_number(word, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(f"cascade:\n  node_type: {word}\n", encoding="utf-8")
    assert load_config(str(path), environ=GOOD).node_type == 1
    assert load_config(environ={**GOOD, "CASCADE_NODE_TYPE": str(word)}).node_type == 1


def test_the_guides_parent_block_given_to_the_child_says_it_configures_a_parent(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("# config.yaml\ncascade:\n  enabled: False  # 父节点不需要启用级联\n"
                    "  node_type: parent\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    message = str(info.value)
    assert "configures a parent" in message and str(path) in message
    assert "CASCADE_PARENT_URL" not in message


def test_a_parent_config_file_given_to_the_child_is_named_as_such(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("db: sqlite:///data/parent.db\nsecret_key: abcdefghijklmnopqrstuvwxyz\n"
                    "cascade:\n  lease_ttl: 300\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ={})
    assert "configures a parent" in str(info.value) and "db, secret_key" in str(info.value)


def test_node_type_parent_from_the_environment_is_blamed_on_the_environment():
    with pytest.raises(ConfigError) as info:
        load_config(environ={**GOOD, "CASCADE_NODE_TYPE": "parent"})
    assert "CASCADE_NODE_TYPE=parent" in str(info.value)
    assert "configures a parent" in str(info.value)


@pytest.mark.parametrize("url", ["http://parent:8001/api/v1", "http://parent:8001/api/v1/",
                                 "http://parent:8001/api/v1/wx/cascade",
                                 "http://parent:8001/api/v1/cascade"])
def test_a_parent_url_with_the_api_path_is_refused_naming_the_root(url):
    with pytest.raises(ConfigError) as info:
        load_config(environ={**GOOD, "CASCADE_PARENT_URL": url})
    assert "http://parent:8001)" in str(info.value) and "CASCADE_PARENT_URL" in str(info.value)


def test_a_parent_behind_a_path_prefix_is_still_accepted():
    config = load_config(environ={**GOOD, "CASCADE_PARENT_URL": "https://example.com/werss"})
    assert config.parent_api_url == "https://example.com/werss"


def test_the_guides_parent_block_makes_werss_child_exit_2_with_that_message(tmp_path):
    (tmp_path / "config.yaml").write_text("cascade:\n  enabled: False\n  node_type: parent\n",
                                          encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "child", "run"],
                            env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "configures a parent" in result.stderr and len(result.stderr.splitlines()) == 1


def test_content_format_and_private_addresses_settings():
    config = load_config(environ=GOOD)
    assert config.content_format == "html" and config.allow_private_addresses is False
    config = load_config(environ={**GOOD, "CASCADE_CONTENT_FORMAT": "Markdown",
                                  "CASCADE_ALLOW_PRIVATE_ADDRESSES": "true"})
    assert config.content_format == "markdown" and config.allow_private_addresses is True
    with pytest.raises(ConfigError, match="content_format"):
        load_config(environ={**GOOD, "CASCADE_CONTENT_FORMAT": "pdf"})
