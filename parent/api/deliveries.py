"""Admin view of deliveries: list them, retry a failed one."""

from flask import Blueprint
from marshmallow import RAISE, Schema, fields, post_load, validate

from shared.schemas import QueryInt, SafeStr

from ..auth import admin_required
from ..models.delivery import DELIVERY_STATUSES
from ..services import deliveries
from ._io import load_query, respond

bp = Blueprint("deliveries", __name__)


class DeliveryQuerySchema(Schema):
    """Filters plus either paging form: page + page_size, or limit + offset."""

    class Meta:
        unknown = RAISE

    task_id = SafeStr(max_length=64, load_default=None)
    feed_id = SafeStr(max_length=64, load_default=None)
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES), load_default=None)
    page = QueryInt(minimum=1, maximum=1_000_000, load_default=None)
    page_size = QueryInt(minimum=1, maximum=200, load_default=None)
    limit = QueryInt(minimum=1, maximum=200, load_default=None)
    offset = QueryInt(minimum=0, maximum=10_000_000, load_default=None)

    @post_load
    def _window(self, data, **kwargs):
        size = data["limit"] or data["page_size"] or 50
        if data["offset"] is not None:
            offset = data["offset"]
        else:
            offset = ((data["page"] or 1) - 1) * size
        data.update(limit=size, offset=offset, page_size=size, page=offset // size + 1)
        return data


@bp.get("/deliveries")
@admin_required
def list_deliveries():
    query = load_query(DeliveryQuerySchema())
    rows, total = deliveries.list_deliveries(query, query["offset"], query["limit"])
    return respond({"items": [deliveries.delivery_to_dict(d) for d in rows], "total": total,
                    "page": query["page"], "page_size": query["page_size"],
                    "limit": query["limit"], "offset": query["offset"]})


@bp.post("/deliveries/<delivery_id>/retry")
@admin_required
def retry_delivery(delivery_id):
    return respond(deliveries.delivery_to_dict(deliveries.retry(delivery_id)), "已重新排队")
