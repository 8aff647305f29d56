"""Parent configuration: defaults < config.yaml < environment < explicit overrides.

See docs/CONFIGURATION.md for every key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from flask import current_app

from shared.settings_values import parse_bool

DEFAULT_DATABASE_URL = "sqlite:///data/parent.db"
DEFAULT_PORT = 8001


class ConfigError(Exception):
    """The configuration is missing something or has an invalid value."""


@dataclass(frozen=True)
class CascadeSettings:
    """The ``cascade:`` section of the parent's config.yaml."""

    enabled: bool = True
    node_type: int = 0
    heartbeat_interval: int = 60
    offline_after: int | None = None  # None: 3 x heartbeat_interval
    sync_interval: int = 300
    allow_plain_auth: bool = True
    max_body_bytes: int = 10 * 1024 * 1024
    sync_log_retention_days: int = 30
    change_log_retention_days: int = 30
    lease_ttl: int = 600
    max_attempts: int = 3
    feeds_per_allocation: int = 1
    claim_max_wait: int = 30
    # Per gunicorn worker; 0 turns claim parking off (parent/gunicorn_worker.py).
    max_parked_claims: int = 10_000
    wechat_claim_interval: int = 3
    admin_token_ttl: int = 12 * 3600
    login_max_failures: int = 5
    login_window_seconds: int = 900
    maintenance_interval: int = 15
    bcrypt_rounds: int = 12
    test_connection_timeout: float = 5.0
    schedule_timezone: str = field(default_factory=lambda: host_timezone())
    # Times without a zone from WeRSS nodes (they send local datetime.now()) are read here.
    werss_timezone: str = "Asia/Shanghai"
    retry_backoff: int = 60
    work_retention_days: int = 30
    trusted_proxies: int = 0
    long_poll_slots: int = 4  # unused since claims stopped waiting; accepted in old files
    max_rate_limit_wait: int = 86400
    min_cron_interval: int = 60
    public_base_url: str | None = None
    delivery_max_attempts: int = 5
    delivery_retry_backoff: int = 60
    presence_flush_interval: int = 5

    @property
    def offline_after_seconds(self) -> int:
        return self.offline_after or 3 * self.heartbeat_interval


@dataclass(frozen=True)
class Settings:
    """Everything the parent reads at start."""

    database_url: str = DEFAULT_DATABASE_URL
    secret_key: str | None = None
    port: int = DEFAULT_PORT
    cascade: CascadeSettings = field(default_factory=CascadeSettings)
    source: str = "defaults"
    # parent/channel_settings.py: channel name -> ChannelLimit, and the notice channel.
    channel_limits: dict = field(default_factory=dict)
    notice: dict | None = None
    log_format: str = "text"  # or "json": one JSON object a line (shared/jsonlog.py)
    log_level: str = "INFO"


def settings() -> CascadeSettings:
    """Return the running app's ``cascade:`` settings."""
    return current_app.config["WERSS_SETTINGS"].cascade


_CASCADE_ENV_PREFIX = "WERSS_CASCADE_"
_SECRET_KEY_MIN_LENGTH = 16


def load_settings(overrides: dict[str, Any] | None = None, environ=None) -> Settings:
    """Build the settings from config.yaml, the environment and explicit overrides.

    :raises ConfigError: a file or value is invalid; the message names the key.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    cascade_raw: dict[str, Any] = {}
    source = "defaults"

    config_path = environ.get("WERSS_CONFIG")
    if config_path:
        raw, cascade_raw = _read_yaml(Path(config_path))
        source = config_path

    db_url = environ.get("WERSS_DATABASE_URL") or environ.get("DATABASE_URL")
    if db_url:
        raw["db"] = db_url
    if environ.get("WERSS_SECRET_KEY_FILE"):
        # The environment beats the file: a key file named there replaces a YAML key.
        raw.pop("secret_key", None)
        raw["secret_key_file"] = environ["WERSS_SECRET_KEY_FILE"]
    if environ.get("WERSS_SECRET_KEY"):
        raw["secret_key"] = environ["WERSS_SECRET_KEY"]
    if environ.get("PORT"):
        raw["port"] = environ["PORT"]
    for key in ("log_format", "log_level"):
        if environ.get(f"WERSS_{key.upper()}"):
            raw[key] = environ[f"WERSS_{key.upper()}"]
    for name in (f.name for f in fields(CascadeSettings)):
        env_name = _CASCADE_ENV_PREFIX + name.upper()
        if env_name in environ:
            cascade_raw[name] = environ[env_name]

    overrides = dict(overrides or {})
    cascade_raw.update(overrides.pop("cascade", {}) or {})
    raw.update(overrides)
    return _build(raw, cascade_raw, source)


def _read_yaml(path: Path) -> tuple[dict, dict]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"WERSS_CONFIG: file {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise ConfigError(f"WERSS_CONFIG: {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"WERSS_CONFIG: {path} must hold a mapping at the top level")
    cascade = loaded.pop("cascade", None) or {}
    if not isinstance(cascade, dict):
        raise ConfigError("cascade: must be a mapping")
    return loaded, dict(cascade)


def _build(raw: dict, cascade_raw: dict, source: str) -> Settings:
    known_top = {"db", "secret_key", "secret_key_file", "port", "channel_limits", "notice",
                 "log_format", "log_level"}
    unknown = sorted(set(raw) - known_top)
    if unknown:
        raise ConfigError(f"unknown configuration key(s): {', '.join(unknown)}")

    secret_key = raw.get("secret_key")
    if not secret_key and raw.get("secret_key_file"):
        secret_key = _read_secret_file(str(raw["secret_key_file"]))
    if secret_key is not None:
        secret_key = str(secret_key).strip()
        if len(secret_key) < _SECRET_KEY_MIN_LENGTH:
            raise ConfigError(
                f"secret_key: must be at least {_SECRET_KEY_MIN_LENGTH} characters"
            )

    cascade = _build_cascade(cascade_raw)
    from .channel_settings import build_channel_limits, build_notice

    return Settings(
        channel_limits=build_channel_limits(raw.get("channel_limits"), ConfigError),
        notice=build_notice(raw.get("notice"), ConfigError),
        database_url=normalize_database_url(str(raw.get("db") or DEFAULT_DATABASE_URL)),
        secret_key=secret_key or None,
        port=_as_int("port", raw.get("port", DEFAULT_PORT), minimum=1, maximum=65535),
        cascade=cascade,
        source=source,
        log_format=_as_choice("log_format", raw.get("log_format", "text"), LOG_FORMATS),
        log_level=_as_choice("log_level", raw.get("log_level", "INFO"), LOG_LEVELS).upper(),
    )


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


def _as_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return text


def _read_secret_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"secret_key_file: cannot read {path}: {exc.strerror}") from None


_POSITIVE_INTS = {
    "heartbeat_interval", "sync_interval", "max_body_bytes", "sync_log_retention_days",
    "change_log_retention_days", "lease_ttl", "max_attempts", "feeds_per_allocation",
    "admin_token_ttl", "login_max_failures", "login_window_seconds", "maintenance_interval",
    "retry_backoff", "work_retention_days", "long_poll_slots", "max_rate_limit_wait",
    "min_cron_interval", "wechat_claim_interval",
    "delivery_max_attempts", "delivery_retry_backoff", "presence_flush_interval",
}


def _build_cascade(values: dict) -> CascadeSettings:
    known = {f.name: f for f in fields(CascadeSettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"cascade: unknown key(s): {', '.join(unknown)}")
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        key = f"cascade.{name}"
        if name in ("enabled", "allow_plain_auth"):
            parsed[name] = _as_bool(key, value)
        elif name == "offline_after":
            parsed[name] = None if value in (None, "") else _as_int(key, value, minimum=1)
        elif name == "node_type":
            parsed[name] = _as_node_type(key, value)
        elif name == "claim_max_wait":
            parsed[name] = _as_int(key, value, minimum=0, maximum=30)
        elif name == "max_parked_claims":
            parsed[name] = _as_int(key, value, minimum=0, maximum=100_000)
        elif name == "bcrypt_rounds":
            parsed[name] = _as_int(key, value, minimum=4, maximum=16)
        elif name == "trusted_proxies":
            parsed[name] = _as_int(key, value, minimum=0, maximum=5)
        elif name == "public_base_url":
            parsed[name] = _as_base_url(key, value)
        elif name in ("schedule_timezone", "werss_timezone"):
            parsed[name] = _as_timezone(key, value)
        elif name == "test_connection_timeout":
            parsed[name] = _as_float(key, value, minimum=0.1, maximum=60)
        elif name in _POSITIVE_INTS:
            parsed[name] = _as_int(key, value, minimum=1)
    return replace(CascadeSettings(), **parsed)


def _as_int(key: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"{key}: must be at most {maximum}, got {number}")
    return number


def _as_node_type(key: str, value: Any) -> int:
    """The guide's words (parent, child; any case) or the API's numbers (0, 1)."""
    text = "" if isinstance(value, bool) else str(value).strip().lower()
    number = {"parent": 0, "0": 0, "child": 1, "1": 1}.get(text)
    if number is None:
        raise ConfigError(f"{key}: expected parent (or 0), got {value!r}")
    if number == 1:
        raise ConfigError(
            f"{key}: {value!r} configures a child; this is the parent (werss-parent), which "
            "runs with node_type: parent. Give a child's file to werss-child instead.")
    return number


def _as_float(key: str, value: Any, minimum: float, maximum: float) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(f"{key}: must be between {minimum} and {maximum}, got {number}")
    return number


def _as_timezone(key: str, value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = str(value).strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{key}: unknown time zone {name!r} (e.g. UTC, Asia/Shanghai)") from None
    return name


def _as_base_url(key: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{key}: expected an http(s) URL such as https://rss.example.com, "
                          f"got {text[:100]!r}")
    return text


def _as_bool(key: str, value: Any) -> bool:
    try:
        return parse_bool(value)
    except ValueError:
        raise ConfigError(f"{key}: expected true or false, got {value!r}") from None


def host_timezone(environ=None) -> str:
    """The host's time zone, as cron reads it: ``TZ``, else /etc/localtime, else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    environ = os.environ if environ is None else environ
    candidates = [environ.get("TZ", "").strip().lstrip(":")]
    try:
        target = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    for name in candidates:
        if not name:
            continue
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        return "UTC" if name in ("Etc/UTC", "Etc/Universal", "Universal", "Zulu") else name
    return "UTC"


def normalize_database_url(url: str) -> str:
    """Map postgres URLs onto the psycopg 3 driver SQLAlchemy should use."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    if not (url.startswith("sqlite") or url.startswith("postgresql+")):
        raise ConfigError(f"db: unsupported database URL scheme in {url.split(':', 1)[0]!r}")
    return url
