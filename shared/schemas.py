"""Marshmallow schemas of the node wire payloads (docs/PROTOCOL.md §5).

Node payloads ignore unknown fields, so a newer child can talk to an older parent.
"""

from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .timeutil import from_unix, naive_time_zone, parse_iso

MAX_INT = 2**31 - 1
MAX_UNIX = 2**33  # far beyond any real date, inside every backend's range


def is_utf8_text(text: str) -> bool:
    """Tell whether text can be encoded as UTF-8."""
    # JSON's "\\ud800" escapes decode to lone surrogates, which no driver or response encodes.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SafeStr(fields.String):
    """A string without NUL characters or lone surrogates, and with a length cap."""

    def __init__(self, *args, max_length: int = 255, min_length: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_length = max_length
        self.min_length = min_length

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("Must not contain NUL characters.")
        if not is_utf8_text(text):
            raise ValidationError("Must be valid Unicode text (no lone surrogates).")
        if len(text) > self.max_length:
            raise ValidationError(f"Longer than {self.max_length} characters.")
        if len(text.strip()) < self.min_length:
            raise ValidationError("Must not be empty." if self.min_length == 1 else
                                  f"Shorter than {self.min_length} characters.")
        return text


class StrictInt(fields.Integer):
    """An integer that is a JSON number (not a bool, not a string) within bounds."""

    def __init__(self, *args, minimum: int = 0, maximum: int = MAX_INT, **kwargs):
        super().__init__(*args, strict=True, **kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        number = super()._deserialize(value, attr, data, **kwargs)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError(f"Must be between {self.minimum} and {self.maximum}.")
        return number


class QueryInt(fields.Integer):
    """An integer from a query string, within bounds."""

    def __init__(self, *args, minimum: int = 0, maximum: int = MAX_INT, **kwargs):
        super().__init__(*args, **kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and len(value) > 20:
            raise ValidationError("Not a valid integer.")
        number = super()._deserialize(value, attr, data, **kwargs)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError(f"Must be between {self.minimum} and {self.maximum}.")
        return number


NODE_TYPE_WORDS = {"parent": 0, "child": 1}


class NodeType(fields.Field):
    """0 / 1, or the guide's words parent / child in any case.

    In a JSON body a number must be a JSON number; in a query string it is text.
    """

    def __init__(self, *args, query: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.query = query

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            text = value.strip().lower()
            if text in NODE_TYPE_WORDS:
                return NODE_TYPE_WORDS[text]
            if self.query and text in ("0", "1"):
                return int(text)
        elif isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
            return value
        raise ValidationError("Expected parent (0) or child (1).")


class FlexibleTime(fields.Field):
    """A time given as Unix seconds (int or float) or an ISO 8601 string."""

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        if isinstance(value, bool):
            raise ValidationError("Expected Unix seconds or an ISO 8601 time.")
        if isinstance(value, (int, float)):
            if not 0 <= value <= MAX_UNIX:
                raise ValidationError("Unix seconds out of range.")
            return from_unix(value)
        if isinstance(value, str) and 0 < len(value) <= 64:
            try:
                parsed = parse_iso(value.strip(), naive_time_zone.get())
            except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted to UTC
                raise ValidationError("Expected Unix seconds or an ISO 8601 time.") from None
            if not 1970 <= parsed.year <= 2200:
                raise ValidationError("Time out of range.")
            return parsed
        raise ValidationError("Expected Unix seconds or an ISO 8601 time.")

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class HttpUrl(SafeStr):
    """An absolute http(s) URL."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 1000)
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if text == "":
            return text
        validate.URL(schemes={"http", "https"}, require_tld=False)(text)
        return text


class _NodePayload(Schema):
    class Meta:
        unknown = EXCLUDE


class WechatAccountCapabilitySchema(_NodePayload):
    name = SafeStr(max_length=255, load_default="")
    avatar = SafeStr(max_length=1000, load_default="")


class WechatCapabilitySchema(_NodePayload):
    session_valid = fields.Boolean(load_default=False)
    expires_at = FlexibleTime(allow_none=True, load_default=None)
    account = fields.Nested(WechatAccountCapabilitySchema, allow_none=True, load_default=None)


class CapabilitiesSchema(_NodePayload):
    sources = fields.List(SafeStr(max_length=32), load_default=list,
                          validate=validate.Length(max=16))
    wechat = fields.Nested(WechatCapabilitySchema, allow_none=True, load_default=None)


class HeartbeatSchema(_NodePayload):
    version = SafeStr(max_length=64, allow_none=True, load_default=None)
    hostname = SafeStr(max_length=255, allow_none=True, load_default=None)
    capacity = StrictInt(maximum=1000, allow_none=True, load_default=None)
    running = StrictInt(maximum=100000, allow_none=True, load_default=None)
    capabilities = fields.Nested(CapabilitiesSchema, allow_none=True, load_default=None)
    callback_url = HttpUrl(max_length=500, allow_none=True, load_default=None)  # nodes column


class ReportItemSchema(_NodePayload):
    mp_id = SafeStr(required=True, min_length=1, max_length=128)
    mp_name = SafeStr(max_length=255, load_default="")
    article_count = StrictInt(load_default=0)
    success_count = StrictInt(load_default=0)
    timestamp = FlexibleTime(allow_none=True, load_default=None)


class ReportResultSchema(_NodePayload):
    task_id = SafeStr(required=True, min_length=1, max_length=64)
    allocation_id = SafeStr(max_length=64, allow_none=True, load_default=None)
    results = fields.List(fields.Nested(ReportItemSchema), required=True,
                          validate=validate.Length(max=10000))
    timestamp = FlexibleTime(allow_none=True, load_default=None)


class ChangesQuerySchema(_NodePayload):
    since = QueryInt(load_default=0, maximum=2**62)
    limit = QueryInt(load_default=500, minimum=1, maximum=1000)


class PageQuerySchema(_NodePayload):
    """A page of a full pull: ``limit`` items with ids after ``after`` (keyset paging)."""

    limit = QueryInt(required=True, minimum=1, maximum=5000)
    after = SafeStr(load_default=None, max_length=64)


class FeedSchema(_NodePayload):
    """A feed as GET /cascade/feeds sends it (what a child caches)."""

    id = SafeStr(required=True, max_length=64)
    faker_id = SafeStr(allow_none=True, max_length=128)
    mp_name = SafeStr(required=True)
    mp_cover = SafeStr(allow_none=True, max_length=1000)
    mp_intro = SafeStr(allow_none=True, max_length=100000)
    status = fields.Integer()
    sync_time = fields.Integer()
    update_time = fields.Integer()
    source_type = SafeStr(validate=validate.OneOf(["wechat", "rss"]))
    source_url = SafeStr(allow_none=True, max_length=1000)
    labels = fields.List(fields.String())
    created_at = FlexibleTime(allow_none=True)
    updated_at = FlexibleTime(allow_none=True)


class MpRefSchema(_NodePayload):
    id = SafeStr(required=True, min_length=1, max_length=64)
    mp_name = SafeStr(load_default="")


class MessageTaskSchema(_NodePayload):
    """A message task as GET /cascade/message-tasks sends it."""

    id = SafeStr(required=True, max_length=64)
    name = SafeStr(required=True)
    message_type = fields.Integer(validate=validate.OneOf([0, 1]))
    message_template = fields.String()
    web_hook_url = fields.String()
    mps_id = fields.List(fields.Nested(MpRefSchema))
    cron_exp = fields.String()
    status = fields.Integer()
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    cookies = fields.String()
    labels = fields.List(fields.String())
    created_at = FlexibleTime(allow_none=True)
    updated_at = FlexibleTime(allow_none=True)


class ChangesSchema(_NodePayload):
    """The body of GET .../changes."""

    items = fields.List(fields.Dict(), required=True)
    deleted = fields.List(fields.String(), required=True)
    cursor = fields.String(required=True)
    has_more = fields.Boolean(required=True)

    @validates_schema
    def _cursor_is_numeric(self, data, **kwargs):
        if not str(data.get("cursor", "")).isdigit():
            raise ValidationError({"cursor": ["Expected a decimal cursor."]})
