"""Node routes of the push-once exchange: plan a lease's deliveries, report their outcome."""

from flask import Blueprint, g

from shared import paths
from shared.delivery_schemas import DeliveryPlanSchema, DeliveryReportSchema
from shared import errors as codes

from ..auth import node_required
from ..services import deliveries
from .request_response import idempotent, load_body, respond
from .dumps import DeliveryAdminSchema
from ..openapi import ANY, describe

bp = Blueprint("node_deliveries", __name__)

# Built once (a Schema's __init__ deep-copies its fields; load keeps no per-call state
# on the instance, so threads share them): see parent/api/node_sync.py.
_PLAN = DeliveryPlanSchema()
_REPORT = DeliveryReportSchema()
_DELIVERY = DeliveryAdminSchema()


@bp.post(paths.as_rule(paths.LEASE_DELIVERIES))
@describe("Plan a lease's pushes of a feed: which articles go where", body=DeliveryPlanSchema,
          data=ANY, errors=(codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def plan_deliveries(lease_id):
    values = load_body(_PLAN)
    return respond(deliveries.plan(g.node, lease_id, values["feed_id"], values["article_ids"]))


@bp.post(paths.as_rule(paths.DELIVERY_REPORT))
@describe("Report what a push did", body=DeliveryReportSchema, data=DeliveryAdminSchema,
          errors=(codes.FORBIDDEN, codes.CONFLICT))
@node_required
@idempotent
def report_delivery(delivery_id):
    values = load_body(_REPORT)
    return respond(_DELIVERY.dump(deliveries.report(g.node, delivery_id, values)))
