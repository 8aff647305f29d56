"""Marshmallow schemas of the payloads existing WeRSS nodes send (docs/COMPAT.md).

The shapes are those of we-mp-rss's ``core/cascade.py`` (``CascadeClient``) and
``apis/cascade.py`` request models. Unknown fields are ignored, and values WeRSS writes
loosely (ids as numbers, ``null`` titles, counts as strings) are accepted and normalised
into the shapes our lease services take.
"""

from __future__ import annotations

from marshmallow import (
    ValidationError, fields, post_load, pre_load, validate, validates_schema,
)

from .lease_schemas import MAX_ARTICLES_PER_BATCH
from .schemas import (
    MAX_INT, MAX_UNIX, FeedSchema, FlexibleTime, HttpUrl, NodePayload, PushFieldsSchema, QueryInt,
    SafeStr, WireTime,
)

# task-status values, grouped by the lease transition they cause.
RENEW_STATUSES = ("claimed", "executing", "running", "processing")
COMPLETE_STATUSES = ("completed", "success")
FAIL_STATUSES = ("failed", "timeout")
TASK_STATUSES = RENEW_STATUSES + COMPLETE_STATUSES + FAIL_STATUSES

ID_LENGTH = 64


class _WeRSSPayload(NodePayload):
    """A payload WeRSS sends or receives: unknown fields ignored, as for every node payload."""


class Identifier(SafeStr):
    """An id WeRSS may send as a string or as a bare number."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return super()._deserialize(value, attr, data, **kwargs)


class LooseInt(fields.Field):
    """A non-negative count or Unix time given as a number or a numeric string; null is 0."""

    def __init__(self, *args, maximum: int = MAX_INT, **kwargs):
        kwargs.setdefault("load_default", 0)
        kwargs.setdefault("allow_none", True)
        super().__init__(*args, **kwargs)
        self.maximum = maximum

    def _deserialize(self, value, attr, data, **kwargs) -> int:
        if isinstance(value, bool):
            raise ValidationError("Not a valid integer.")
        text = value.strip() if isinstance(value, str) else ""
        if text.isascii() and text.isdigit() and len(text) <= 20:
            value = int(value.strip())
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ValidationError("Not a valid integer.")
        if not 0 <= value <= self.maximum:
            raise ValidationError(f"Must be between 0 and {self.maximum}.")
        return value

    def deserialize(self, value, attr=None, data=None, **kwargs):
        result = super().deserialize(value, attr, data, **kwargs)
        return 0 if result is None else result


class _LeaseRef(_WeRSSPayload):
    """How a WeRSS call names its work: the allocation id (plus our lease id, optionally)."""

    allocation_id = SafeStr(required=True, min_length=1, max_length=ID_LENGTH)
    # Not sent by WeRSS; a client that kept the lease_id from claim-task may send it to be
    # fenced to exactly that lease.
    lease_id = SafeStr(max_length=36, allow_none=True, load_default=None)
    timestamp = FlexibleTime(allow_none=True, load_default=None)


class ClaimTaskSchema(_WeRSSPayload):
    """POST /cascade/claim-task: WeRSS sends no body."""


class PendingTasksQuerySchema(_WeRSSPayload):
    """GET /cascade/pending-tasks?node_id=&limit= (node_id is taken from the credentials)."""

    node_id = SafeStr(max_length=ID_LENGTH, load_default=None)
    limit = QueryInt(minimum=1, maximum=10, load_default=1)


class TaskStatusSchema(_LeaseRef):
    """PUT /cascade/task-status: ``{allocation_id, status, error_message, timestamp}``."""

    status = SafeStr(required=True, max_length=32, validate=validate.OneOf(TASK_STATUSES))
    error_message = SafeStr(max_length=4000, allow_none=True, load_default=None)
    # Ours, not WeRSS's: a failure is retried (up to max_attempts) unless this is false.
    retryable = fields.Boolean(load_default=True)

    @pre_load
    def _lower_status(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("status"), str):
            data = {**data, "status": data["status"].strip().lower()}
        return data


class WeRSSArticleSchema(_WeRSSPayload):
    """One article as WeRSS's ``WxGather.FillBack`` builds it."""

    id = Identifier(required=True, min_length=1, max_length=255)
    mp_id = SafeStr(required=True, min_length=1, max_length=ID_LENGTH)
    title = SafeStr(max_length=1000, allow_none=True, load_default="")
    url = HttpUrl(max_length=2000, allow_none=True, load_default="")
    pic_url = SafeStr(max_length=2000, allow_none=True, load_default="")
    description = SafeStr(max_length=20000, allow_none=True, load_default="")
    content = SafeStr(max_length=2_000_000, allow_none=True, load_default=None)
    publish_time = LooseInt(maximum=MAX_UNIX)

    @post_load
    def _to_ours(self, data, **kwargs):
        for name in ("title", "url", "pic_url", "description"):
            data[name] = data[name] or ""
        # WeRSS sends "" when it did not gather the body: that is "no content", not content.
        data["content"] = data["content"] or None
        return data


class UploadArticlesSchema(_LeaseRef):
    """POST /cascade/upload-articles: ``{allocation_id, articles, timestamp}``."""

    # Validated one by one (WeRSSArticleSchema): a bad article is refused alone.
    articles = fields.List(fields.Raw(), required=True,
                           validate=validate.Length(max=MAX_ARTICLES_PER_BATCH))


class CompletionResultSchema(_WeRSSPayload):
    """One per-feed result; WeRSS children send one of two shapes.

    ``jobs/cascade_sync.py``: ``{feed_id, mp_name, success, article_count, new_article_count,
    error}``; ``jobs/cascade_task_dispatcher.py``: ``{mp_id, mp_name, status, article_count,
    error?}`` with status "success" or "failed".
    """

    mp_id = Identifier(max_length=ID_LENGTH, allow_none=True, load_default=None)
    feed_id = Identifier(max_length=ID_LENGTH, allow_none=True, load_default=None)
    mp_name = SafeStr(max_length=255, allow_none=True, load_default="")
    success = fields.Boolean(allow_none=True, load_default=None)
    status = SafeStr(max_length=32, allow_none=True, load_default=None)
    article_count = LooseInt()
    new_article_count = LooseInt()
    error = SafeStr(max_length=4000, allow_none=True, load_default=None)

    @validates_schema
    def _names_a_feed(self, data, **kwargs):
        if not (data.get("mp_id") or data.get("feed_id")):
            raise ValidationError({"mp_id": ["Name the feed as mp_id or feed_id."]})

    @post_load
    def _to_lease_result(self, data, **kwargs):
        """Return the shape of shared.lease_schemas.LeaseResultSchema."""
        if data["success"] is not None:
            success = data["success"]
        elif data["status"]:
            success = data["status"].strip().lower() in COMPLETE_STATUSES
        else:
            success = not data["error"]
        return {
            "mp_id": data["mp_id"] or data["feed_id"],
            "mp_name": data["mp_name"] or "",
            "article_count": data["article_count"],
            "new_count": data["new_article_count"],
            "pushed_count": 0,
            "success": success,
            "error": data["error"],
        }


class ReportCompletionSchema(_LeaseRef):
    """POST /cascade/report-completion.

    ``{allocation_id, task_id, results, article_count, timestamp}``.
    """

    task_id = SafeStr(max_length=ID_LENGTH, allow_none=True, load_default=None)
    results = fields.List(fields.Nested(CompletionResultSchema), load_default=list,
                          validate=validate.Length(max=1000))
    article_count = LooseInt()


class WeRSSTaskPackageSchema(PushFieldsSchema):
    """What claim-task and pending-tasks answer: WeRSS's task package plus our lease fields.

    The task's push fields (and their secret marks) are the lease task's; WeRSS names the
    task ``task_id`` / ``task_name`` and has no ``mps_id`` or ``channel`` in a package.
    """

    class Meta(NodePayload.Meta):
        exclude = ("id", "name", "mps_id", "channel")

    allocation_id = SafeStr(required=True, min_length=1, max_length=ID_LENGTH)
    task_id = SafeStr(required=True, min_length=1, max_length=ID_LENGTH)
    task_name = SafeStr(allow_none=True)
    feeds = fields.List(fields.Nested(FeedSchema), required=True)
    dispatched_at = WireTime(required=True)
    claimed = fields.Boolean(required=True)  # false: a preview of pending-tasks, no lease
    lease_id = SafeStr(allow_none=True, max_length=36)
    attempt = fields.Integer(allow_none=True)
    expires_at = WireTime(allow_none=True)
    slot = WireTime(allow_none=True)
    run_id = SafeStr(allow_none=True, max_length=36)
