"""Marshmallow schemas of the WeChat node payloads: login steps and command results."""

from __future__ import annotations

from marshmallow import fields, validate

from .schemas import FlexibleTime, SafeStr, NodePayload

NODE_LOGIN_STATES = ("waiting_scan", "scanned", "valid", "failed")


class WechatAccountSchema(NodePayload):
    name = SafeStr(max_length=255, load_default="")
    avatar = SafeStr(max_length=1000, load_default="")


class LoginStateSchema(NodePayload):
    """``POST /cascade/wechat/login-state``: a step of the login the parent asked for."""

    command_id = SafeStr(max_length=36, allow_none=True, load_default=None)
    state = fields.String(required=True, validate=validate.OneOf(NODE_LOGIN_STATES))
    qr_png = fields.String(allow_none=True, load_default=None,
                           validate=validate.Length(max=400_000))  # base64 of <= 256 KiB
    qr_expires_at = FlexibleTime(allow_none=True, load_default=None)
    account = fields.Nested(WechatAccountSchema, allow_none=True, load_default=None)
    expires_at = FlexibleTime(allow_none=True, load_default=None)
    error = SafeStr(max_length=1000, allow_none=True, load_default=None)


class SearchRowSchema(NodePayload):
    faker_id = SafeStr(required=True, min_length=1, max_length=128)
    mp_name = SafeStr(max_length=255, load_default="")
    mp_intro = SafeStr(max_length=2000, load_default="")
    mp_cover = SafeStr(max_length=1000, load_default="")


class CommandResultSchema(NodePayload):
    """``POST /cascade/commands/{id}/result``: what a relayed command found, or why not."""

    results = fields.List(fields.Nested(SearchRowSchema), load_default=list,
                          validate=validate.Length(max=100))
    error = SafeStr(max_length=1000, allow_none=True, load_default=None)
