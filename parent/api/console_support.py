"""Admin routes the console needs that no other resource offers."""

from flask import Blueprint, current_app, g

from shared.channels import CHANNELS, SIGNED_CHANNELS
from shared.schemas import QueryInt, SafeStr
from shared.timeutil import isoformat_z
from shared import errors as codes

from ..auth import admin_required
from ..schemas import _AdminInput, validate_cron
from ..services import console_support
from .request_response import load_body, load_query, respond
from ..openapi import OBJECT, describe

bp = Blueprint("console_support", __name__)


class PasswordChangeSchema(_AdminInput):
    current_password = SafeStr(required=True, min_length=1, max_length=1024)
    new_password = SafeStr(required=True, min_length=1, max_length=1024)


class NextRunsQuerySchema(_AdminInput):
    cron_exp = SafeStr(required=True, min_length=1, max_length=120, validate=validate_cron)
    count = QueryInt(load_default=5, minimum=1, maximum=20)


class DailyQuerySchema(_AdminInput):
    days = QueryInt(load_default=14, minimum=1, maximum=90)


@bp.post("/auth/password")
@describe("Change this admin's password (every token is revoked)", body=PasswordChangeSchema,
          data=None, errors=(codes.INVALID_LOGIN, codes.TOO_MANY_ATTEMPTS))
@admin_required
def change_password():
    values = load_body(PasswordChangeSchema())
    console_support.change_password(g.admin, values["current_password"], values["new_password"])
    return respond(None, "密码已修改，请重新登录")


@bp.get("/cron/next-runs")
@describe("The next firings of a cron expression", query=NextRunsQuerySchema, data=OBJECT)
@admin_required
def next_runs():
    query = load_query(NextRunsQuerySchema())
    result = console_support.next_runs(query["cron_exp"], query["count"])
    result["next_runs"] = [isoformat_z(moment) for moment in result["next_runs"]]
    return respond(result)


@bp.get("/articles/daily")
@describe("Articles collected per day", query=DailyQuerySchema,
          data={"type": "object", "properties": {"days": {"type": "array"}}})
@admin_required
def articles_daily():
    query = load_query(DailyQuerySchema())
    return respond({"days": console_support.articles_per_day(query["days"])})


_NAMES = {"type": "array", "items": {"type": "string"}}


@bp.get("/console/channels")
@describe("The push channels a task can name, and those that sign (shared.channels.REGISTRY)",
          data={"type": "object", "required": ["channels", "signed"],
                "properties": {"channels": _NAMES, "signed": _NAMES}})
@admin_required
def channels():
    return respond({"channels": list(CHANNELS), "signed": list(SIGNED_CHANNELS)})


@bp.get("/console/features")
@describe("Which optional routes this parent serves (for the console)", data=OBJECT)
@admin_required
def features():
    return respond(console_support.features(current_app.url_map))
