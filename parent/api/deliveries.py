"""Admin view of deliveries: list them, retry a failed one."""

from flask import Blueprint
from marshmallow import fields, validate

from shared.schemas import SafeStr
from shared import errors as codes

from ..auth import admin_required
from ..models.delivery import DELIVERY_STATUSES
from ..paging import PagedQuerySchema, page_body
from ..services import deliveries
from .request_response import load_query, respond
from .dumps import DeliveryAdminSchema
from ..openapi import describe, page_of

bp = Blueprint("deliveries", __name__)


class DeliveryQuerySchema(PagedQuerySchema):
    default_page_size = 50

    task_id = SafeStr(max_length=64, load_default=None)
    feed_id = SafeStr(max_length=64, load_default=None)
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES), load_default=None)


@bp.get("/deliveries")
@describe("Deliveries (pushes), a page at a time", query=DeliveryQuerySchema,
          data=page_of(DeliveryAdminSchema))
@admin_required
def list_deliveries():
    query = load_query(DeliveryQuerySchema())
    rows, total = deliveries.list_deliveries(query)
    return respond(page_body(DeliveryAdminSchema().dump(rows, many=True), total, query))


@bp.post("/deliveries/<delivery_id>/retry")
@describe("Queue a failed delivery again", data=DeliveryAdminSchema, errors=(codes.CONFLICT,))
@admin_required
def retry_delivery(delivery_id):
    return respond(DeliveryAdminSchema().dump(deliveries.retry(delivery_id)), "已重新排队")
