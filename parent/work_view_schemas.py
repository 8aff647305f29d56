"""Admin query schemas for the work-distribution views."""

from marshmallow import RAISE, Schema, fields, validate

from shared.schemas import QueryInt, SafeStr

from .models.work import ALLOCATION_STATUSES
from .paging import PagedQuerySchema


class _Query(PagedQuerySchema):
    default_page_size = 50


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
