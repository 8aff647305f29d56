"""Admin login and logout."""

from flask import Blueprint, g, request

from shared import errors as codes

from .. import unit_of_work
from ..auth import admin_required
from ..schemas import LoginSchema
from ..services import admins
from .request_response import load_body, respond
from .dumps import AdminSchema, TokenSchema
from ..openapi import describe

bp = Blueprint("auth", __name__)


@bp.post("/auth/login")
@describe("Log in: trade a username and password for a Bearer token", body=LoginSchema,
          body_types=("application/json", "application/x-www-form-urlencoded"),
          data=TokenSchema,
          errors=(codes.INVALID_LOGIN, codes.TOO_MANY_ATTEMPTS), public=True)
def login():
    values = load_body(LoginSchema(), allow_form=True)
    with unit_of_work.separately():  # the attempt counts even if the password is wrong
        attempt = admins.record_login_attempt(values["username"], request.remote_addr)
    candidate = admins.login_candidate(attempt)
    # End the read transaction: on SQLite it would hold the write lock through the hash.
    unit_of_work.commit_now()
    token, ttl = admins.complete_login(attempt, candidate, values["password"])
    return respond(TokenSchema().dump(
        {"access_token": token, "token_type": "bearer", "expires_in": ttl}), "登录成功")


@bp.post("/auth/logout")
@describe("Log out: revoke this token", data=None)
@admin_required
def logout():
    admins.revoke_token(g.admin_token)
    return respond(None, "已退出登录")


@bp.get("/auth/me")
@describe("The admin this token belongs to", data=AdminSchema)
@admin_required
def me():
    return respond(AdminSchema().dump(g.admin))
