"""Marshmallow schemas of the node wire payloads (docs/PROTOCOL.md §5).

Node payloads ignore unknown fields, so a newer child can talk to an older parent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from .timeutil import from_unix, isoformat_z, naive_time_zone, parse_iso

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
        return isoformat_z(value) if isinstance(value, datetime) else value


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


class NodePayload(Schema):
    """The base of every node payload: unknown fields are ignored, both ways.

    A newer child can talk to an older parent, and a child loads what a newer parent sends.
    """

    class Meta:
        unknown = EXCLUDE


class WechatAccountCapabilitySchema(NodePayload):
    name = SafeStr(max_length=255, load_default="")
    avatar = SafeStr(max_length=1000, load_default="")


class WechatCapabilitySchema(NodePayload):
    session_valid = fields.Boolean(load_default=False)
    expires_at = FlexibleTime(allow_none=True, load_default=None)
    account = fields.Nested(WechatAccountCapabilitySchema, allow_none=True, load_default=None)


class CapabilitiesSchema(NodePayload):
    sources = fields.List(SafeStr(max_length=32), load_default=list,
                          validate=validate.Length(max=16))
    wechat = fields.Nested(WechatCapabilitySchema, allow_none=True, load_default=None)


class HeartbeatSchema(NodePayload):
    version = SafeStr(max_length=64, allow_none=True, load_default=None)
    hostname = SafeStr(max_length=255, allow_none=True, load_default=None)
    capacity = StrictInt(maximum=1000, allow_none=True, load_default=None)
    running = StrictInt(maximum=100000, allow_none=True, load_default=None)
    capabilities = fields.Nested(CapabilitiesSchema, allow_none=True, load_default=None)
    callback_url = HttpUrl(max_length=500, allow_none=True, load_default=None)  # nodes column


class ReportItemSchema(NodePayload):
    mp_id = SafeStr(required=True, min_length=1, max_length=128)
    mp_name = SafeStr(max_length=255, load_default="")
    article_count = StrictInt(load_default=0)
    success_count = StrictInt(load_default=0)
    timestamp = FlexibleTime(allow_none=True, load_default=None)


class ReportResultSchema(NodePayload):
    task_id = SafeStr(required=True, min_length=1, max_length=64)
    allocation_id = SafeStr(max_length=64, allow_none=True, load_default=None)
    results = fields.List(fields.Nested(ReportItemSchema), required=True,
                          validate=validate.Length(max=10000))
    timestamp = FlexibleTime(allow_none=True, load_default=None)


class ChangesQuerySchema(NodePayload):
    since = QueryInt(load_default=0, maximum=2**62)
    limit = QueryInt(load_default=500, minimum=1, maximum=1000)


class PageQuerySchema(NodePayload):
    """A page of a full pull: ``limit`` items with ids after ``after`` (keyset paging)."""

    limit = QueryInt(required=True, minimum=1, maximum=5000)
    after = SafeStr(load_default=None, max_length=64)


class WireTime(fields.Field):
    """A time the parent sends as ISO 8601 UTC (``2026-11-28T17:56:42.507Z``).

    Dumped from a datetime; loaded as the same text (checked to be a time), so a child keeps
    what it was sent as it was sent.
    """

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat_z(value) if isinstance(value, datetime) else value

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        if isinstance(value, str) and 0 < len(value) <= 64:
            try:
                parse_iso(value.strip())
                return value
            except (ValueError, OverflowError):
                pass
        raise ValidationError("Expected an ISO 8601 time.")


class _NoneAsEmpty:
    """Dump a null as the field's empty value: rows older than a column's default hold null."""

    empty: Callable[[], object]

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return self.empty()
        return super()._serialize(value, attr, obj, **kwargs)  # type: ignore[misc]


class WireList(_NoneAsEmpty, fields.List):
    empty = list


class WireDict(_NoneAsEmpty, fields.Dict):
    empty = dict


class WireCount(_NoneAsEmpty, fields.Integer):
    empty = int


# Field metadata of a value that must never reach a template, a log line or an error text
# (tokens in a webhook URL, auth headers, cookies, signing secrets).
SECRET = {"secret": True}


def secret_fields(*schemas: Schema | type[Schema]) -> tuple[str, ...]:
    """Return the names of the fields of ``schemas`` marked ``metadata=SECRET``, sorted."""
    names = set()
    for schema in schemas:
        instance = schema() if isinstance(schema, type) else schema
        names |= {name for name, field in instance.fields.items() if field.metadata.get("secret")}
    return tuple(sorted(names))


class FeedSchema(NodePayload):
    """A feed as nodes receive it: ``GET /cascade/feeds``, its changes, and inside leases.

    Only fields an admin sets: the ETag and the cursors built on the change log stay exact.
    """

    id = SafeStr(required=True, min_length=1, max_length=64)
    faker_id = SafeStr(allow_none=True, max_length=128)
    mp_name = SafeStr(allow_none=True)
    mp_cover = SafeStr(allow_none=True, max_length=1000)
    mp_intro = SafeStr(allow_none=True, max_length=100000)
    status = fields.Integer(allow_none=True)
    source_type = SafeStr(allow_none=True, max_length=16)
    source_url = SafeStr(allow_none=True, max_length=1000)
    labels = WireList(fields.String())
    created_at = WireTime(allow_none=True)
    updated_at = WireTime(allow_none=True)


class MpRefSchema(NodePayload):
    id = SafeStr(required=True, min_length=1, max_length=64)
    mp_name = SafeStr(load_default="")


class PushFieldsSchema(NodePayload):
    """What a node needs of a message task to push it; shared by the task list and leases."""

    id = SafeStr(required=True, min_length=1, max_length=64)
    name = SafeStr(allow_none=True)
    # MESSAGE_TYPES (shared.channels); not checked on load: a child answers a type it does
    # not know with a clear push error instead of dropping the whole list.
    message_type = fields.Integer(allow_none=True)
    message_template = fields.String(allow_none=True)
    web_hook_url = fields.String(allow_none=True, metadata=SECRET)
    headers = WireDict(keys=fields.String(), values=fields.String(), allow_none=True,
                       metadata=SECRET)
    cookies = fields.String(allow_none=True, metadata=SECRET)
    cron_exp = fields.String(allow_none=True)
    mps_id = WireList(fields.Nested(MpRefSchema), allow_none=True)
    # The channel in use: the task's own, else derived from the URL (shared.channels).
    channel = fields.String(allow_none=True)


class MessageTaskSchema(PushFieldsSchema):
    """A message task as ``GET /cascade/message-tasks`` and its changes send it."""

    status = fields.Integer(allow_none=True)
    labels = WireList(fields.String())
    push_newest = WireCount()
    # sign_secret is write-only: the list says only whether one is set; leases carry it.
    has_sign_secret = fields.Boolean()
    created_at = WireTime(allow_none=True)
    updated_at = WireTime(allow_none=True)


class ChangesSchema(NodePayload):
    """The body of GET .../changes: the current state of what changed after ``since``."""

    items = fields.List(fields.Dict(), required=True)
    deleted = fields.List(fields.String(), required=True)
    cursor = fields.String(required=True)
    has_more = fields.Boolean(required=True)

    @validates_schema
    def _cursor_is_numeric(self, data, **kwargs):
        if not str(data.get("cursor", "")).isdigit():
            raise ValidationError({"cursor": ["Expected a decimal cursor."]})


class FeedChangesSchema(ChangesSchema):
    """The body of ``GET /cascade/feeds/changes``."""

    items = fields.List(fields.Nested(FeedSchema), required=True)


class MessageTaskChangesSchema(ChangesSchema):
    """The body of ``GET /cascade/message-tasks/changes``."""

    items = fields.List(fields.Nested(MessageTaskSchema), required=True)
