"""Marshmallow schemas of the delivery payloads children send (docs/PROTOCOL.md)."""

from __future__ import annotations

from marshmallow import fields, validate

from .lease_schemas import MAX_ARTICLES_PER_BATCH
from .schemas import SafeStr, StrictInt, NodePayload

REPORT_STATUSES = ("sent", "failed")


class DeliveryPlanSchema(NodePayload):
    """``POST /cascade/leases/{lease_id}/deliveries``: the articles a child collected."""

    feed_id = SafeStr(required=True, min_length=1, max_length=64)
    article_ids = fields.List(SafeStr(min_length=1, max_length=255), required=True,
                              validate=validate.Length(max=MAX_ARTICLES_PER_BATCH))


class DeliveryReportSchema(NodePayload):
    """``POST /cascade/deliveries/{delivery_id}/report``: what one push did."""

    status = SafeStr(required=True, max_length=16, validate=validate.OneOf(REPORT_STATUSES))
    attempts = StrictInt(minimum=0, maximum=100, load_default=1)
    retryable = fields.Boolean(load_default=True)
    retry_after = StrictInt(minimum=0, maximum=86400, allow_none=True, load_default=None)
    vendor_code = SafeStr(max_length=64, allow_none=True, load_default=None)
    vendor_message = SafeStr(max_length=1000, allow_none=True, load_default=None)
