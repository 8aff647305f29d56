"""What the admin console needs beyond the other services: password change, cron preview,
articles collected per day."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from shared import errors as codes

from ..config import settings
from ..clock import now
from ..errors import ApiError
from ..extensions import db
from ..models import Admin
from ..models.work import Article
from . import admins
from .scheduling import next_slot


def change_password(admin: Admin, current_password: str, new_password: str) -> None:
    """Check the current password, set the new one and revoke every token of this admin.

    :raises ApiError: 422 naming the field that is wrong.
    """
    if not admins._check_password(current_password, admin.password_hash.encode("ascii")):
        raise ApiError(codes.VALIDATION_FAILED, "The current password is wrong.",
                       details={"current_password": ["Wrong password."]})
    try:
        admins.set_password(admin, new_password)
    except admins.PasswordPolicyError as exc:
        raise ApiError(codes.VALIDATION_FAILED, details={"new_password": [str(exc)]}) from None


def next_runs(cron_exp: str, count: int) -> dict:
    """Return the next ``count`` due times of a cron expression in the schedule's timezone."""
    tz_name = settings().schedule_timezone
    runs: list[datetime] = []
    moment = now()
    for _ in range(count):
        try:
            moment = next_slot(cron_exp, moment, tz_name)
        except ValueError:  # valid but never due, such as 30 February
            break
        runs.append(moment)
    return {"cron_exp": cron_exp, "timezone": tz_name, "next_runs": runs}


def articles_per_day(days: int) -> list[dict]:
    """Count the articles the parent stored on each of the last ``days`` UTC days."""
    today = now().astimezone(timezone.utc).date()
    first = today - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    counts = {first + timedelta(days=n): 0 for n in range(days)}
    stamps = db.session.execute(
        db.select(Article.created_at).where(Article.created_at >= start)
    ).scalars()
    for stamp in stamps:
        day = stamp.astimezone(timezone.utc).date() if stamp.tzinfo else stamp.date()
        if day in counts:
            counts[day] += 1
    return [{"date": day.isoformat(), "count": count} for day, count in counts.items()]


# Routes other work adds to the API; the console shows their pages once they exist.
_OPTIONAL_ROUTES = {
    "wechat_login": ("POST", "/api/v1/cascade/nodes/x/wechat/login"),
    "wechat_status": ("GET", "/api/v1/cascade/nodes/x/wechat"),
    "wechat_qr": ("GET", "/api/v1/cascade/nodes/x/wechat/qr.png"),
    "feed_search": ("POST", "/api/v1/feeds/search"),
    "deliveries": ("GET", "/api/v1/deliveries"),
    "delivery_retry": ("POST", "/api/v1/deliveries/x/retry"),
    "task_test": ("POST", "/api/v1/message-tasks/x/test"),
    "task_preview": ("POST", "/api/v1/message-tasks/preview"),
    "openapi": ("GET", "/api/v1/openapi.json"),
}


def features(url_map) -> dict:
    """Tell which optional routes and task fields this parent serves."""
    from werkzeug.exceptions import HTTPException

    from .. import schemas

    adapter = url_map.bind("localhost")
    found = {}
    for name, (method, path) in _OPTIONAL_ROUTES.items():
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            endpoint = None
        # POST /message-tasks/preview meets GET/PUT /message-tasks/<task_id>: a 405 here.
        found[name] = endpoint is not None
    task_fields = schemas.MessageTaskCreateSchema().fields
    found["task_channel"] = "channel" in task_fields
    found["task_sign_secret"] = "sign_secret" in task_fields
    found["task_push_newest"] = "push_newest" in task_fields
    return found
