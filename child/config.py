"""The child's configuration: one frozen, validated dataclass from YAML + environment.

Sources, lowest first: defaults, the ``cascade:`` section of the YAML file
(``--config FILE``, else ``CASCADE_CONFIG``, else ``./config.yaml`` if present), then the
seed's environment variables. Values pasted with stray quotes or whitespace are cleaned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from shared.settings_values import parse_bool
from shared.signing import API_KEY_PREFIX, API_SECRET_PREFIX, CREDENTIAL_BODY_LENGTH


class ConfigError(Exception):
    """A configuration value is missing or invalid (exit code 2)."""


@dataclass(frozen=True)
class ChildConfig:
    parent_api_url: str
    api_key: str
    api_secret: str
    enabled: bool = True
    node_type: int = 1
    sync_interval: int = 300
    heartbeat_interval: int = 60
    data_dir: str = "data/child"
    auth_mode: str = "signed"
    capacity: int = 4
    ca_bundle: str | None = None
    health_listen: str | None = None
    request_timeout: float = 30.0
    claim_wait: int = 25
    allow_private_addresses: bool = False
    content_format: str = "html"
    wechat_base_url: str = "https://mp.weixin.qq.com"
    wechat_mode: str = "web"
    wechat_max_pages: int = 5
    wechat_pages_per_run: int = 1
    wechat_page_pause: tuple[float, float] = (0.0, 10.0)
    wechat_account_pause: tuple[float, float] = (3.0, 10.0)
    wechat_article_pause: tuple[float, float] = (3.0, 10.0)
    wechat_full_text: bool = False
    wechat_cooldown: int = 1800
    source: str = "environment"


# key in the YAML `cascade:` section -> environment variable (environment wins)
ENV_NAMES = {
    "enabled": "CASCADE_ENABLED",
    "node_type": "CASCADE_NODE_TYPE",
    "parent_api_url": "CASCADE_PARENT_URL",
    "api_key": "CASCADE_API_KEY",
    "api_secret": "CASCADE_API_SECRET",
    "sync_interval": "CASCADE_SYNC_INTERVAL",
    "heartbeat_interval": "CASCADE_HEARTBEAT_INTERVAL",
    "data_dir": "CASCADE_DATA_DIR",
    "auth_mode": "CASCADE_AUTH_MODE",
    "capacity": "CASCADE_CAPACITY",
    "ca_bundle": "CASCADE_CA_BUNDLE",
    "health_listen": "CASCADE_HEALTH_LISTEN",
    "request_timeout": "CASCADE_REQUEST_TIMEOUT",
    "claim_wait": "CASCADE_CLAIM_WAIT",
    "allow_private_addresses": "CASCADE_ALLOW_PRIVATE_ADDRESSES",
    "content_format": "CASCADE_CONTENT_FORMAT",
    "wechat_base_url": "CASCADE_WECHAT_BASE_URL",
    "wechat_mode": "CASCADE_WECHAT_MODE",
    "wechat_max_pages": "CASCADE_WECHAT_MAX_PAGES",
    "wechat_pages_per_run": "CASCADE_WECHAT_PAGES_PER_RUN",
    "wechat_page_pause": "CASCADE_WECHAT_PAGE_PAUSE",
    "wechat_account_pause": "CASCADE_WECHAT_ACCOUNT_PAUSE",
    "wechat_article_pause": "CASCADE_WECHAT_ARTICLE_PAUSE",
    "wechat_full_text": "CASCADE_WECHAT_FULL_TEXT",
    "wechat_cooldown": "CASCADE_WECHAT_COOLDOWN",
}
# Keys of the parent's own `cascade:` section: a config.yaml shared by both roles is fine.
PARENT_ONLY_KEYS = {
    "offline_after", "allow_plain_auth", "max_body_bytes", "sync_log_retention_days",
    "change_log_retention_days", "lease_ttl", "max_attempts", "feeds_per_allocation",
    "claim_max_wait", "admin_token_ttl", "login_max_failures", "login_window_seconds",
    "maintenance_interval", "bcrypt_rounds", "test_connection_timeout", "schedule_timezone",
    "retry_backoff", "work_retention_days", "trusted_proxies", "long_poll_slots",
    "werss_timezone",
    "max_rate_limit_wait", "min_cron_interval", "public_base_url",
    "delivery_max_attempts", "delivery_retry_backoff",
}
# Top-level keys only a parent's config.yaml has (docs/CONFIGURATION.md).
PARENT_TOP_LEVEL_KEYS = {"db", "secret_key", "secret_key_file", "port"}
NODE_TYPE_WORDS = {"parent": 0, "child": 1}
_PARENT_MARKERS = "\0parent-markers"
_CREDENTIAL_RE = {
    "api_key": re.compile(rf"^{API_KEY_PREFIX}[A-Za-z0-9]{{{CREDENTIAL_BODY_LENGTH}}}$"),
    "api_secret": re.compile(rf"^{API_SECRET_PREFIX}[A-Za-z0-9]{{{CREDENTIAL_BODY_LENGTH}}}$"),
}


def _clean(value: Any) -> Any:
    """Strip whitespace and one pair of matching quotes pasted around a value."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        text = text[1:-1].strip()
    return text


def _read_yaml(path: Path) -> dict:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    section = loaded.get("cascade") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: 'cascade' must be a mapping")
    unknown = sorted(set(section) - set(ENV_NAMES) - PARENT_ONLY_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown cascade key(s): {', '.join(unknown)}")
    markers = sorted(set(loaded) & PARENT_TOP_LEVEL_KEYS)
    return {**section, _PARENT_MARKERS: markers} if markers else section


def load_config(config_file: str | None = None, environ=None) -> ChildConfig:
    """Build and validate the configuration.

    :raises ConfigError: one line naming the key and what is wrong.
    """
    environ = os.environ if environ is None else environ
    path = config_file or environ.get("CASCADE_CONFIG")
    values: dict[str, Any] = {}
    source = "environment"
    from_env: set[str] = set()
    if path:
        values.update(_read_yaml(Path(path)))
        source = str(path)
    elif Path("config.yaml").exists():
        values.update(_read_yaml(Path("config.yaml")))
        source = "config.yaml"
    for key, env_name in ENV_NAMES.items():
        if environ.get(env_name, "").strip() != "":
            values[key] = environ[env_name]
            from_env.add(key)
    markers = values.pop(_PARENT_MARKERS, None)
    values = {key: _clean(value) for key, value in values.items()}
    _refuse_parent_role(values, source, from_env)
    if markers and not values.get("parent_api_url"):
        raise ConfigError(
            f"{source} configures a parent (it sets {', '.join(markers)} and no "
            "cascade.parent_api_url): give werss-child its own file with node_type: child, "
            "parent_api_url, api_key and api_secret (docs/CHILD.md#configuration)")
    return _validate(values, source)


def node_type_number(raw: Any) -> int | None:
    """The guide's words (parent, child; any case) or the API's numbers (0, 1); else None."""
    if isinstance(raw, bool):
        return None
    text = str(raw).strip().lower()
    if text in NODE_TYPE_WORDS:
        return NODE_TYPE_WORDS[text]
    return int(text) if text in ("0", "1") else None


def _refuse_parent_role(values: dict, source: str, from_env: set[str]) -> None:
    """Say plainly when the configuration given is a parent's, before anything else."""
    raw = values.get("node_type", 1)
    number = node_type_number(raw)
    if number is None:
        raise ConfigError(f"{_label('node_type')}: expected child (or 1), got {raw!r}")
    if number == 1:
        return
    where = (f"the environment ({ENV_NAMES['node_type']}={raw})" if "node_type" in from_env
             else f"{source} (cascade.node_type: {raw})")
    raise ConfigError(
        f"{where} configures a parent, not a child: werss-child needs node_type: child "
        f"(or 1), with parent_api_url, api_key and api_secret; the parent is run with "
        f"werss-parent")


def _label(key: str) -> str:
    return f"{ENV_NAMES[key]} (cascade.{key})"


def _int(values: dict, key: str, default: int, minimum: int, maximum: int) -> int:
    raw = values.get(key, default)
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = int(str(raw))
    except ValueError:
        raise ConfigError(f"{_label(key)}: expected a whole number, got {raw!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{_label(key)}: must be between {minimum} and {maximum}, got {number}")
    return number


def _bool(values: dict, key: str, default: bool) -> bool:
    raw = values.get(key, default)
    try:
        return parse_bool(raw)
    except ValueError:
        raise ConfigError(f"{_label(key)}: expected true or false, got {raw!r}") from None


def _validate(values: dict, source: str) -> ChildConfig:
    enabled = _bool(values, "enabled", True)
    node_type = node_type_number(values.get("node_type", 1)) or 1  # any other was refused
    url = str(values.get("parent_api_url") or "").rstrip("/")
    if not url:
        raise ConfigError(f"{_label('parent_api_url')}: required (e.g. http://parent:8001)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{_label('parent_api_url')}: expected an http(s) URL, got {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"{_label('parent_api_url')}: must not carry a query or fragment")
    api_path = re.search(r"/api(/v1)?(/wx)?(/cascade)?$", parts.path)
    if api_path:
        root = url[: len(url) - len(api_path.group(0))]
        raise ConfigError(
            f"{_label('parent_api_url')}: give the parent's root URL ({root}), not its API "
            f"path ({api_path.group(0)} is added by the child)")
    credentials = {}
    for key in ("api_key", "api_secret"):
        value = str(values.get(key) or "")
        if not value:
            raise ConfigError(f"{_label(key)}: required (from the parent's credentials route)")
        if not _CREDENTIAL_RE[key].match(value):
            prefix = API_KEY_PREFIX if key == "api_key" else API_SECRET_PREFIX
            raise ConfigError(
                f"{_label(key)}: expected {prefix} followed by {CREDENTIAL_BODY_LENGTH} letters "
                f"or digits ({len(value)} characters given)")
        credentials[key] = value
    auth_mode = str(values.get("auth_mode", "signed")).lower()
    if auth_mode not in ("signed", "plain"):
        raise ConfigError(f"{_label('auth_mode')}: expected signed or plain, got {auth_mode!r}")
    ca_bundle = values.get("ca_bundle") or None
    if ca_bundle and not Path(ca_bundle).is_file():
        raise ConfigError(f"{_label('ca_bundle')}: file {ca_bundle} does not exist")
    health = values.get("health_listen") or None
    if health:
        host, _, port = str(health).rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{_label('health_listen')}: expected HOST:PORT, got {health!r}")
    content_format = str(values.get("content_format") or "html").strip().lower()
    if content_format not in ("html", "text", "markdown"):
        raise ConfigError(f"{_label('content_format')}: expected html, text or markdown, "
                          f"got {content_format!r}")
    try:
        timeout = float(values.get("request_timeout", 30.0))
    except ValueError:
        raise ConfigError(f"{_label('request_timeout')}: expected seconds") from None
    if not 1 <= timeout <= 300:
        raise ConfigError(f"{_label('request_timeout')}: must be between 1 and 300 seconds")
    wechat = _wechat_settings(values)
    return ChildConfig(
        **wechat,
        parent_api_url=url,
        api_key=credentials["api_key"],
        api_secret=credentials["api_secret"],
        enabled=enabled,
        node_type=node_type,
        sync_interval=_int(values, "sync_interval", 300, 5, 86400),
        heartbeat_interval=_int(values, "heartbeat_interval", 60, 1, 3600),
        data_dir=str(values.get("data_dir") or "data/child"),
        auth_mode=auth_mode,
        capacity=_int(values, "capacity", 4, 1, 100),
        ca_bundle=ca_bundle,
        health_listen=health,
        request_timeout=timeout,
        claim_wait=_int(values, "claim_wait", 25, 0, 30),
        allow_private_addresses=_bool(values, "allow_private_addresses", False),
        content_format=content_format,
        source=source,
    )


def _pause(values: dict, key: str, default: tuple[float, float]) -> tuple[float, float]:
    """A pause range: "LOW-HIGH" seconds (or one number, or a two-item list)."""
    raw = values.get(key, default)
    try:
        if isinstance(raw, (list, tuple)):
            low, high = (float(v) for v in raw)
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            low = high = float(raw)
        else:
            text = str(raw).replace(" ", "")
            low_text, sep, high_text = text.partition("-")
            low = float(low_text)
            high = float(high_text) if sep else low
    except (TypeError, ValueError):
        raise ConfigError(f"{_label(key)}: expected seconds as LOW-HIGH (e.g. 3-10), "
                          f"got {raw!r}") from None
    if not 0 <= low <= high <= 600:
        raise ConfigError(f"{_label(key)}: expected 0 <= LOW <= HIGH <= 600, got {raw!r}")
    return (low, high)


def _wechat_settings(values: dict) -> dict:
    base_url = str(values.get("wechat_base_url") or "https://mp.weixin.qq.com").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(f"{_label('wechat_base_url')}: expected an http(s) URL, got {base_url!r}")
    mode = str(values.get("wechat_mode", "web")).lower()
    if mode not in ("web", "api"):
        raise ConfigError(f"{_label('wechat_mode')}: expected web or api, got {mode!r}")
    return {
        "wechat_base_url": base_url,
        "wechat_mode": mode,
        "wechat_max_pages": _int(values, "wechat_max_pages", 5, 1, 100),
        "wechat_pages_per_run": _int(values, "wechat_pages_per_run", 1, 1, 100),
        "wechat_page_pause": _pause(values, "wechat_page_pause", (0.0, 10.0)),
        "wechat_account_pause": _pause(values, "wechat_account_pause", (3.0, 10.0)),
        "wechat_article_pause": _pause(values, "wechat_article_pause", (3.0, 10.0)),
        "wechat_full_text": _bool(values, "wechat_full_text", False),
        "wechat_cooldown": _int(values, "wechat_cooldown", 1800, 1, 86400),
    }
