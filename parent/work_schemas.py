"""Admin query schemas for the work-distribution views."""

from marshmallow import RAISE, Schema, fields, validate

from shared.schemas import QueryInt, SafeStr

from .models.work import ALLOCATION_STATUSES


class _Query(Schema):
    class Meta:
        unknown = RAISE

    page = QueryInt(load_default=1, minimum=1, maximum=1_000_000)
    page_size = QueryInt(load_default=50, minimum=1, maximum=200)


class AllocationQuerySchema(_Query):
    status = fields.String(validate=validate.OneOf(ALLOCATION_STATUSES), load_default=None)
    task_id = SafeStr(max_length=64, load_default=None)
    node_id = SafeStr(max_length=36, load_default=None)
    run_id = SafeStr(max_length=36, load_default=None)


class FeedStatusQuerySchema(_Query):
    freshness = fields.String(
        validate=validate.OneOf(["fresh", "recent", "stale", "outdated", "never"]),
        load_default=None)


class ArticleQuerySchema(_Query):
    feed_id = SafeStr(max_length=64, load_default=None)
    since = QueryInt(minimum=0, maximum=2**33, load_default=None)
    q = SafeStr(max_length=100, load_default=None)


class DispatchSchema(Schema):
    class Meta:
        unknown = RAISE

    task_id = SafeStr(required=True, min_length=1, max_length=64)
