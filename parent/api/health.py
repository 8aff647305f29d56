"""Unauthenticated liveness and metrics."""

from flask import Blueprint, Response
from sqlalchemy import text

from shared import errors as codes
from shared.timeutil import isoformat_z

from ..clock import now
from ..errors import error_response
from ..extensions import db
from ..metrics import render_metrics
from ._io import respond

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure here means the database is unreachable
        db.session.rollback()
        return error_response(codes.SERVICE_UNAVAILABLE, details={"database": "unreachable"})
    return respond({"status": "ok", "database": "ok", "time": isoformat_z(now())})


@bp.get("/metrics")
def metrics():
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
