"""Marshmallow schemas of the work-distribution payloads: claim, leases, articles."""

from __future__ import annotations

from marshmallow import fields, validate

from .schemas import (
    FeedSchema, FlexibleTime, HttpUrl, MessageTaskSchema, NodePayload, PushFieldsSchema, SafeStr,
    SECRET, StrictInt, WireTime, secret_fields,
)

MAX_ARTICLES_PER_BATCH = 500


class ClaimSchema(NodePayload):
    max = StrictInt(minimum=1, maximum=100, load_default=1)
    wait = StrictInt(minimum=0, maximum=30, load_default=0)


class LeaseResultSchema(NodePayload):
    mp_id = SafeStr(required=True, min_length=1, max_length=64)
    mp_name = SafeStr(max_length=255, load_default="")
    article_count = StrictInt(load_default=0)
    new_count = StrictInt(load_default=0)
    pushed_count = StrictInt(load_default=0)
    success = fields.Boolean(load_default=True)
    error = SafeStr(max_length=4000, allow_none=True, load_default=None)
    # Articles of this feed the parent refused at upload, each {id, reason}.
    refused = fields.List(fields.Dict(), load_default=list, validate=validate.Length(max=100))
    # WeChat refused the account (200002): the parent stops scheduling the feed.
    feed_invalid = fields.Boolean(load_default=False)


class CompleteSchema(NodePayload):
    results = fields.List(fields.Nested(LeaseResultSchema), load_default=list,
                          validate=validate.Length(max=1000))


class FailSchema(NodePayload):
    error = SafeStr(max_length=4000, allow_none=True, load_default=None)
    retryable = fields.Boolean(load_default=True)
    rate_limited_until = FlexibleTime(allow_none=True, load_default=None)
    # Handing back unstarted work (e.g. the child is shutting down): not a failed attempt.
    release = fields.Boolean(load_default=False)


class WechatArticleFieldsSchema(NodePayload):
    """WeRSS's fields of a WeChat article beyond the common ones."""

    item_show_type = StrictInt(minimum=0, maximum=1000, allow_none=True, load_default=None)
    copyright_stat = StrictInt(minimum=0, maximum=1000, allow_none=True, load_default=None)
    create_time = StrictInt(minimum=0, maximum=2**33, allow_none=True, load_default=None)
    update_time = StrictInt(minimum=0, maximum=2**33, allow_none=True, load_default=None)


class ArticleSchema(NodePayload):
    id = SafeStr(required=True, min_length=1, max_length=255)
    mp_id = SafeStr(required=True, min_length=1, max_length=64)
    title = SafeStr(max_length=1000, load_default="")
    url = HttpUrl(max_length=2000, load_default="")
    pic_url = SafeStr(max_length=2000, load_default="", allow_none=True)
    description = SafeStr(max_length=20000, load_default="", allow_none=True)
    content = SafeStr(max_length=2_000_000, allow_none=True, load_default=None)
    publish_time = StrictInt(minimum=0, maximum=2**33, load_default=0)
    wechat = fields.Nested(WechatArticleFieldsSchema, allow_none=True, load_default=None)


class ArticleBatchSchema(NodePayload):
    lease_id = SafeStr(max_length=36, allow_none=True, load_default=None)
    # Each article is validated on its own (ArticleSchema), so one bad article is refused
    # alone and the rest of the batch is stored.
    articles = fields.List(fields.Raw(), required=True,
                           validate=validate.Length(max=MAX_ARTICLES_PER_BATCH))


class SendLimitSchema(NodePayload):
    """A channel's send limit: at most ``count`` pushes per ``per`` seconds per destination."""

    count = fields.Integer(required=True)
    per = fields.Float(required=True)  # seconds; a configured limit may use fractions


class LeaseTaskSchema(PushFieldsSchema):
    """The task inside a lease: what a node needs to push, secrets included."""

    # Write-only on the admin side; it reaches a node only inside the lease it works on.
    sign_secret = fields.String(allow_none=True, metadata=SECRET)
    # Set when the task's pushes must ask for send permits (POST /cascade/send-permits).
    send_limit = fields.Nested(SendLimitSchema, allow_none=True)


class LeaseSchema(NodePayload):
    """One lease of ``POST /cascade/claim``: an allocation's work, held until ``expires_at``."""

    lease_id = SafeStr(required=True, min_length=1, max_length=36)
    allocation_id = SafeStr(required=True, min_length=1, max_length=64)
    attempt = fields.Integer(required=True)
    expires_at = WireTime(required=True)
    slot = WireTime(allow_none=True)  # the cron time this run is for, or the dispatch time
    run_id = SafeStr(allow_none=True, max_length=36)
    task = fields.Nested(LeaseTaskSchema, required=True)
    feeds = fields.List(fields.Nested(FeedSchema), required=True)


# Every task field a template, a log line or an error text must never show.
TASK_SECRET_FIELDS = secret_fields(MessageTaskSchema, LeaseTaskSchema)
