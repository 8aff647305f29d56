"""Admin-side input schemas. Unknown fields are refused so typos do not pass silently."""

from __future__ import annotations

import json
import re

from datetime import datetime, timezone

from croniter import CroniterBadDateError, croniter
from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from shared.channels import CHANNELS, MESSAGE_TYPE_MESSAGE, MESSAGE_TYPE_WEBHOOK, MESSAGE_TYPES
from shared.schemas import (
    HttpUrl, MpRefSchema, NodeType, QueryInt, SafeStr, StrictInt, is_utf8_text,
)
from shared.sources import SOURCE_TYPES, identity_of

from .paging import PagedQuerySchema

# \Z, not $: "$" also matches before a trailing newline.
LABEL_RE = re.compile(r"^[A-Za-z0-9_.:/=-]{1,64}\Z")
FEED_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}\Z")
HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}\Z")
NODE_URL_MAX = 500  # nodes.api_url


class _AdminInput(Schema):
    class Meta:
        unknown = RAISE


class Label(SafeStr):
    def __init__(self, **kwargs):
        super().__init__(max_length=64, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not LABEL_RE.match(text):
            raise ValidationError("Labels are 1-64 characters of A-Z a-z 0-9 _ . : / = -")
        return text


def labels_field(**kwargs):
    return fields.List(Label(), validate=validate.Length(max=32), **kwargs)


def validate_cron(expression: str) -> None:
    """Accept 5 fields (minute..weekday) or 6 with seconds first, as WeRSS does."""
    parts = expression.split()
    if len(parts) == 5:
        ok = croniter.is_valid(expression)
    elif len(parts) == 6:
        ok = croniter.is_valid(expression, second_at_beginning=True)
    else:
        raise ValidationError("A cron expression has 5 fields (or 6 with seconds first).")
    if not ok:
        raise ValidationError(f"{expression!r} is not a valid cron expression.")
    _check_cron_fires(expression, seconds_first=len(parts) == 6)


CRON_SAMPLES = 24  # consecutive firings checked against the minimum interval


def _check_cron_fires(expression: str, seconds_first: bool) -> None:
    """Refuse a cron that never fires (``0 0 31 2 *``) or fires more often than allowed."""
    minimum = _min_cron_interval()
    iterator = croniter(expression, datetime(2026, 1, 1, tzinfo=timezone.utc),
                        second_at_beginning=seconds_first)
    try:
        previous = iterator.get_next(float)
        for _ in range(CRON_SAMPLES):
            following = iterator.get_next(float)
            if following - previous < minimum:
                raise ValidationError(
                    f"{expression!r} fires every {following - previous:g} s; the shortest "
                    f"interval allowed is {minimum} s (cascade.min_cron_interval).")
            previous = following
    except CroniterBadDateError:
        raise ValidationError(f"{expression!r} never fires (no such date).") from None


def _min_cron_interval() -> int:
    try:
        return current_app.config["WERSS_SETTINGS"].cascade.min_cron_interval
    except (RuntimeError, KeyError, AttributeError):  # outside an app: the default
        return 60


def validate_template(template: str) -> None:
    """Refuse at save time what the child could never render (``{{= expr }}``, bad syntax)."""
    from child.templates import TemplateError, check_template  # the child's own renderer

    try:
        check_template(template)
    except TemplateError as exc:
        raise ValidationError(str(exc)) from None


class LoginSchema(_AdminInput):
    username = SafeStr(required=True, min_length=1, max_length=64)
    password = SafeStr(required=True, min_length=1, max_length=1024)


class PageQuerySchema(PagedQuerySchema):
    default_page_size = 20


class NodeListQuerySchema(PageQuerySchema):
    node_type = NodeType(query=True, load_default=None)
    status = fields.String(validate=validate.OneOf(["online", "offline", "disabled"]),
                           load_default=None)


def sources_field(**kwargs):
    """The sources a node runs (null: work it out; see services/node_sources.py)."""
    return fields.List(fields.String(validate=validate.OneOf(SOURCE_TYPES)), allow_none=True,
                       validate=validate.Length(max=len(SOURCE_TYPES)), **kwargs)


class NodeCreateSchema(_AdminInput):
    node_type = NodeType(load_default=1)
    name = SafeStr(required=True, min_length=1, max_length=100)
    description = SafeStr(max_length=2000, load_default="")
    api_url = HttpUrl(max_length=NODE_URL_MAX, allow_none=True, load_default=None)
    labels = labels_field(load_default=list)
    capacity = StrictInt(minimum=1, maximum=1000, load_default=4)
    sources = sources_field(load_default=None)

    @pre_load
    def _strip_name(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            data = {**data, "name": data["name"].strip()}
        return data

    @validates_schema
    def _sources_once_each(self, data, **kwargs):
        sources = data.get("sources")
        if sources is not None and len(set(sources)) != len(sources):
            raise ValidationError("Name each source once.", "sources")


class NodeUpdateSchema(NodeCreateSchema):
    node_type = NodeType()
    name = SafeStr(min_length=1, max_length=100)
    description = SafeStr(max_length=2000)
    api_url = HttpUrl(max_length=NODE_URL_MAX, allow_none=True)
    labels = labels_field()
    capacity = StrictInt(minimum=1, maximum=1000)
    sources = sources_field()
    is_active = fields.Boolean()


class TestConnectionSchema(_AdminInput):
    api_url = HttpUrl(allow_none=True, load_default=None)
    api_key = SafeStr(max_length=128, allow_none=True, load_default=None)
    api_secret = SafeStr(max_length=128, allow_none=True, load_default=None)


class SyncLogQuerySchema(PagedQuerySchema):
    default_page_size = 50

    node_id = SafeStr(max_length=36, load_default=None)
    operation = SafeStr(max_length=32, load_default=None)
    status = SafeStr(max_length=16, load_default=None)


class ReportQuerySchema(SyncLogQuerySchema):
    # marshmallow 4 keeps an inherited field set to None; exclude it instead.
    class Meta(SyncLogQuerySchema.Meta):
        exclude = ("operation", "status")

    task_id = SafeStr(max_length=64, load_default=None)


class FeedCreateSchema(_AdminInput):
    id = SafeStr(max_length=64, validate=validate.Regexp(FEED_ID_RE), load_default=None)
    faker_id = SafeStr(max_length=128, allow_none=True, load_default=None)
    mp_name = SafeStr(required=True, min_length=1, max_length=255)
    mp_cover = SafeStr(max_length=1000, load_default="")
    mp_intro = SafeStr(max_length=20000, load_default="")
    status = StrictInt(minimum=0, maximum=1, load_default=1)
    source_type = fields.String(validate=validate.OneOf(SOURCE_TYPES), load_default=SOURCE_TYPES[0])
    source_url = HttpUrl(allow_none=True, load_default=None)
    labels = labels_field(load_default=list)

    @validates_schema
    def _source_fields(self, data, partial=False, **kwargs):
        if partial:
            return
        source_type = data.get("source_type")
        identity = identity_of(source_type)
        if identity == "source_url" and not data.get("source_url"):
            raise ValidationError({"source_url": [f"Required for an {source_type} feed."]})
        if identity == "faker_id" and not (data.get("faker_id") or data.get("id")):
            raise ValidationError({"faker_id": ["A WeChat feed needs its faker_id (or an id)."]})


class FeedUpdateSchema(FeedCreateSchema):
    class Meta(FeedCreateSchema.Meta):
        exclude = ("id",)  # a feed's id never changes: nodes key everything on it

    mp_name = SafeStr(min_length=1, max_length=255)
    mp_cover = SafeStr(max_length=1000)
    mp_intro = SafeStr(max_length=20000)
    status = StrictInt(minimum=0, maximum=1)
    source_type = fields.String(validate=validate.OneOf(SOURCE_TYPES))
    labels = labels_field()
    faker_id = SafeStr(max_length=128, allow_none=True)
    source_url = HttpUrl(allow_none=True)


class FeedListQuerySchema(PageQuerySchema):
    source_type = fields.String(validate=validate.OneOf(SOURCE_TYPES), load_default=None)
    status = QueryInt(minimum=0, maximum=1, load_default=None)
    q = SafeStr(max_length=100, load_default=None)


class HeadersField(fields.Field):
    """HTTP headers as an object of strings, or that object as a JSON string (WeRSS)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):
                raise ValidationError("Expected an object of header names to values.") from None
        if not isinstance(value, dict) or len(value) > 50:
            raise ValidationError("Expected an object of at most 50 header names to values.")
        headers = {}
        for name, item in value.items():
            if not isinstance(item, str) or not HEADER_NAME_RE.match(name):
                raise ValidationError(f"Header {name!r} must be a token with a string value.")
            if any(ch in item for ch in "\r\n\x00") or len(item) > 4000 or not is_utf8_text(item):
                raise ValidationError(f"Header {name!r} has an invalid value.")
            headers[name] = item
        return headers


class MessageTaskCreateSchema(_AdminInput):
    name = SafeStr(required=True, min_length=1, max_length=255)
    message_type = StrictInt(minimum=min(MESSAGE_TYPES), maximum=max(MESSAGE_TYPES),
                             load_default=MESSAGE_TYPE_MESSAGE)
    message_template = SafeStr(max_length=100_000, load_default="", validate=validate_template)
    web_hook_url = HttpUrl(load_default="")
    headers = HeadersField(load_default=dict)
    cookies = SafeStr(max_length=8000, load_default="")
    mps_id = fields.List(fields.Nested(MpRefSchema), load_default=list,
                         validate=validate.Length(max=10000))
    cron_exp = SafeStr(required=True, min_length=1, max_length=120, validate=validate_cron)
    status = StrictInt(minimum=0, maximum=1, load_default=1)
    labels = labels_field(load_default=list)
    # A feed's first run for the task pushes articles published after it joined, plus
    # this many of the newest older ones.
    push_newest = StrictInt(minimum=0, maximum=50, load_default=0)
    channel = SafeStr(validate=validate.OneOf(CHANNELS), allow_none=True, load_default=None)
    sign_secret = SafeStr(max_length=500, allow_none=True, load_default=None, load_only=True)

    @pre_load
    def _decode_mps_id(self, data, **kwargs):
        # WeRSS stores mps_id as a JSON string; accept that form too.
        if isinstance(data, dict) and isinstance(data.get("mps_id"), str):
            try:
                data = {**data, "mps_id": json.loads(data["mps_id"] or "[]")}
            except (ValueError, RecursionError):
                raise ValidationError({"mps_id": ["Expected a list of {id, mp_name}."]}) from None
        return data

    @validates_schema
    def _webhook_needs_url(self, data, partial=False, **kwargs):
        if not partial and data.get("message_type") == MESSAGE_TYPE_WEBHOOK and not data.get("web_hook_url"):
            raise ValidationError({"web_hook_url": ["Required for a webhook task (message_type 1)."]})


class MessageTaskUpdateSchema(MessageTaskCreateSchema):
    name = SafeStr(min_length=1, max_length=255)
    message_type = StrictInt(minimum=min(MESSAGE_TYPES), maximum=max(MESSAGE_TYPES))
    message_template = SafeStr(max_length=100_000, validate=validate_template)
    web_hook_url = HttpUrl()
    headers = HeadersField()
    cookies = SafeStr(max_length=8000)
    mps_id = fields.List(fields.Nested(MpRefSchema), validate=validate.Length(max=10000))
    cron_exp = SafeStr(min_length=1, max_length=120, validate=validate_cron)
    status = StrictInt(minimum=0, maximum=1)
    labels = labels_field()
    push_newest = StrictInt(minimum=0, maximum=50)
    channel = SafeStr(validate=validate.OneOf(CHANNELS), allow_none=True)
    sign_secret = SafeStr(max_length=500, allow_none=True, load_only=True)


class MessageTaskPreviewSchema(_AdminInput):
    task_id = SafeStr(max_length=64, load_default=None)
    message_type = StrictInt(minimum=min(MESSAGE_TYPES), maximum=max(MESSAGE_TYPES),
                             load_default=None)
    message_template = SafeStr(max_length=100_000, load_default=None, validate=validate_template)
    channel = SafeStr(validate=validate.OneOf(CHANNELS), load_default=None)
    feed_id = SafeStr(max_length=64, load_default=None)
    articles = fields.String(validate=validate.OneOf(["recent", "sample"]), load_default="recent")
    limit = StrictInt(minimum=1, maximum=50, load_default=5)
    content_format = fields.String(validate=validate.OneOf(["html", "text", "markdown"]),
                                   load_default="html")


class MessageTaskListQuerySchema(PageQuerySchema):
    status = QueryInt(minimum=0, maximum=1, load_default=None)
