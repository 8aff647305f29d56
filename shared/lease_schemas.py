"""Marshmallow schemas of the work-distribution payloads: claim, leases, articles."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from .schemas import FlexibleTime, HttpUrl, SafeStr, StrictInt

MAX_ARTICLES_PER_BATCH = 500


class _NodePayload(Schema):
    class Meta:
        unknown = EXCLUDE


class ClaimSchema(_NodePayload):
    max = StrictInt(minimum=1, maximum=100, load_default=1)
    wait = StrictInt(minimum=0, maximum=30, load_default=0)


class LeaseResultSchema(_NodePayload):
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


class CompleteSchema(_NodePayload):
    results = fields.List(fields.Nested(LeaseResultSchema), load_default=list,
                          validate=validate.Length(max=1000))


class FailSchema(_NodePayload):
    error = SafeStr(max_length=4000, allow_none=True, load_default=None)
    retryable = fields.Boolean(load_default=True)
    rate_limited_until = FlexibleTime(allow_none=True, load_default=None)
    # Handing back unstarted work (e.g. the child is shutting down): not a failed attempt.
    release = fields.Boolean(load_default=False)


class WechatArticleFieldsSchema(_NodePayload):
    """WeRSS's fields of a WeChat article beyond the common ones."""

    item_show_type = StrictInt(minimum=0, maximum=1000, allow_none=True, load_default=None)
    copyright_stat = StrictInt(minimum=0, maximum=1000, allow_none=True, load_default=None)
    create_time = StrictInt(minimum=0, maximum=2**33, allow_none=True, load_default=None)
    update_time = StrictInt(minimum=0, maximum=2**33, allow_none=True, load_default=None)


class ArticleSchema(_NodePayload):
    id = SafeStr(required=True, min_length=1, max_length=255)
    mp_id = SafeStr(required=True, min_length=1, max_length=64)
    title = SafeStr(max_length=1000, load_default="")
    url = HttpUrl(max_length=2000, load_default="")
    pic_url = SafeStr(max_length=2000, load_default="", allow_none=True)
    description = SafeStr(max_length=20000, load_default="", allow_none=True)
    content = SafeStr(max_length=2_000_000, allow_none=True, load_default=None)
    publish_time = StrictInt(minimum=0, maximum=2**33, load_default=0)
    wechat = fields.Nested(WechatArticleFieldsSchema, allow_none=True, load_default=None)


class ArticleBatchSchema(_NodePayload):
    lease_id = SafeStr(max_length=36, allow_none=True, load_default=None)
    # Each article is validated on its own (ArticleSchema), so one bad article is refused
    # alone and the rest of the batch is stored.
    articles = fields.List(fields.Raw(), required=True,
                           validate=validate.Length(max=MAX_ARTICLES_PER_BATCH))
