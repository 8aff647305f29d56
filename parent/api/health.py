"""Unauthenticated liveness, readiness and metrics.

``/livez``: the process answers (no database: a restart would not fix a database outage).
``/readyz``: it can serve, i.e. the database answers and its schema is this code's
(alembic head == the database's revision). ``/healthz``: the database answers (kept for
existing checks).
"""

from flask import Blueprint, Response, current_app
from sqlalchemy import text

from shared import errors as codes
from shared.timeutil import isoformat_z

from ..clock import now
from ..errors import error_response
from ..extensions import db
from ..metrics import render_metrics
from .request_response import respond
from .dumps import HealthSchema, LiveSchema, ReadySchema
from ..openapi import describe

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@describe("Liveness: the parent answers and its database does",
          data=HealthSchema,
          public=True)
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure here means the database is unreachable
        db.session.rollback()
        return error_response(codes.SERVICE_UNAVAILABLE, details={"database": "unreachable"})
    return respond({"status": "ok", "database": "ok", "time": isoformat_z(now())})


@bp.get("/livez")
@describe("Liveness of the process alone: no database call", data=LiveSchema, public=True)
def livez():
    return respond({"status": "ok", "time": isoformat_z(now())})


@bp.get("/readyz")
@describe("Readiness: the database answers and its migrations are this version's",
          data=ReadySchema, public=True)
def readyz():
    try:
        revisions = set(db.session.execute(text("SELECT version_num FROM alembic_version"))
                        .scalars())
    except Exception:  # noqa: BLE001 - unreachable, or never migrated (no alembic_version)
        db.session.rollback()
        try:
            db.session.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - any failure here means the database is unreachable
            db.session.rollback()
            return error_response(codes.SERVICE_UNAVAILABLE, details={"database": "unreachable"})
        db.session.rollback()
        revisions = set()
    heads = _migration_heads()
    if revisions != heads:
        return error_response(
            codes.SERVICE_UNAVAILABLE, "The database schema is not this version's: run "
            "werss-parent init (it migrates) or wait for the upgrade to finish.",
            details={"database": "ok", "migrations": "not current",
                     "database_revision": sorted(revisions), "code_revision": sorted(heads)})
    return respond({"status": "ready", "database": "ok", "migrations": "current",
                    "revision": ",".join(sorted(heads)), "time": isoformat_z(now())})


def _migration_heads() -> set[str]:
    """The revisions this code's migrations end at (read once per app: they are files)."""
    heads = current_app.extensions.get("werss.migration_heads")
    if heads is None:
        from alembic.script import ScriptDirectory

        from .. import MIGRATIONS_DIR

        heads = set(ScriptDirectory(MIGRATIONS_DIR).get_heads())
        current_app.extensions["werss.migration_heads"] = heads
    return heads


@bp.get("/metrics")
@describe("Prometheus metrics (text exposition format)", content={"text/plain": {"type": "string"}},
          public=True)
def metrics():
    body, content_type = render_metrics()
    return Response(body, content_type=content_type)
