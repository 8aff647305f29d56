"""Output schemas of the admin API: what a route answers, dumped from models.

The same schemas describe the responses in the OpenAPI document (parent/openapi.py), so a
field added here is documented by construction. Wire payloads for nodes are the contract's
(``shared/``); these are the admin's views.
"""

from __future__ import annotations

from datetime import datetime

from marshmallow import Schema, fields, post_dump, validate

from shared.timeutil import isoformat_z

from ..config import settings
from ..clock import now
from ..models.node import STATUS_DISABLED, STATUS_OFFLINE, STATUS_ONLINE
from ..services import node_sources


class UtcTime(fields.DateTime):
    """A UTC moment as the contract writes it (``2026-01-01T00:00:00Z``), or null."""

    def __init__(self, **kwargs):
        super().__init__(allow_none=True, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return isoformat_z(value)


def _text(**kwargs) -> fields.String:
    return fields.String(allow_none=True, **kwargs)


class FeedAdminSchema(Schema):
    """A feed as nodes pull it plus the parent's collection bookkeeping."""

    id = fields.String(required=True)
    faker_id = _text()
    mp_name = fields.String(required=True)
    mp_cover = fields.String()
    mp_intro = fields.String()
    status = fields.Integer()
    source_type = fields.String()
    source_url = _text()
    labels = fields.Function(lambda feed: feed.labels or [], metadata={
        "type": "array", "items": {"type": "string"}})
    created_at = UtcTime()
    updated_at = UtcTime()
    sync_time = fields.Integer()
    update_time = fields.Integer()
    last_run_at = UtcTime()
    last_run_node_id = _text()
    last_run_status = _text()
    invalid_reason = _text()


NODE_STATUSES = (STATUS_ONLINE, STATUS_OFFLINE, STATUS_DISABLED)


class NodeAdminSchema(Schema):
    """A node for admins: never the secret or anything derived from it."""

    def __init__(self, *args, moment: datetime | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # One moment for a whole list, so two nodes seen at once agree on "online".
        self.moment = moment

    id = fields.String(required=True)
    node_id = fields.String(attribute="id", required=True, dump_only=True)
    node_type = fields.Integer()
    name = fields.String(required=True)
    description = fields.String()
    api_url = _text()
    labels = fields.Function(lambda node: node.labels or [], metadata={
        "type": "array", "items": {"type": "string"}})
    capacity = fields.Integer()
    reported_capacity = fields.Integer(allow_none=True)
    is_active = fields.Boolean()
    status = fields.Method("_status", metadata={"type": "string", "enum": list(NODE_STATUSES)})
    last_heartbeat_at = UtcTime()
    last_sync_at = UtcTime()
    version = _text(attribute="agent_version")
    hostname = _text()
    running = fields.Integer()
    capabilities = fields.Function(lambda node: node.capabilities or {},
                                   metadata={"type": "object"})
    sources = fields.List(fields.String(), allow_none=True)
    effective_sources = fields.List(fields.String())
    sources_origin = fields.String()
    route_family = _text()
    callback_url = _text()
    api_key = _text()
    has_credentials = fields.Function(lambda node: node.api_key is not None,
                                      metadata={"type": "boolean"})
    credentials_issued_at = UtcTime()
    created_at = UtcTime()
    updated_at = UtcTime()

    def _status(self, node) -> str:
        return node.status_at(self.moment or now(), settings().offline_after_seconds)

    @post_dump(pass_original=True)
    def _sources(self, data, node, **kwargs):
        # What the parent makes of the sources setting is worked out, not stored.
        data.update(node_sources.describe(node))
        return data


class AllocationAdminSchema(Schema):
    """One allocation of a task run, as the work views show it."""

    id = fields.String(required=True)
    run_id = fields.String()
    task_id = fields.String()
    feed_ids = fields.List(fields.String())
    status = fields.String()
    attempt = fields.Integer()
    max_attempts = fields.Integer()
    labels = fields.List(fields.String())
    needs_wechat = fields.Boolean()
    leased_to = _text()
    lease_id = _text(attribute="current_lease_id")
    lease_expires_at = UtcTime()
    not_before = UtcTime()
    last_error = _text()
    results = fields.List(fields.Dict(), allow_none=True)
    completed_at = UtcTime()
    created_at = UtcTime()
    updated_at = UtcTime()


class ArticleAdminSchema(Schema):
    """A collected article, without its body (``has_content`` says whether one is stored)."""

    id = fields.String(attribute="article_id", required=True)
    mp_id = fields.String(attribute="feed_id", required=True)
    title = fields.String()
    url = fields.String()
    pic_url = fields.String()
    description = fields.String()
    publish_time = fields.Integer()
    has_content = fields.Function(lambda article: article.content is not None,
                                  metadata={"type": "boolean"})
    wechat = fields.Dict(allow_none=True)
    node_id = _text()
    created_at = UtcTime()


class ReportAdminSchema(Schema):
    """A task result a node reported."""

    id = fields.Integer(required=True)
    node_id = fields.String()
    task_id = fields.String()
    allocation_id = _text()
    results = fields.List(fields.Dict())
    reported_at = UtcTime()
    received_at = UtcTime()


class SyncLogSchema(Schema):
    """One entry of the sync log."""

    id = fields.Integer(required=True)
    node_id = _text()
    operation = fields.String()
    direction = fields.String()
    status = fields.String()
    data_count = fields.Integer()
    error_message = _text()
    started_at = UtcTime()
    finished_at = UtcTime()


class DeliveryAdminSchema(Schema):
    """One push of a feed's new articles to one destination."""

    id = fields.String(required=True)
    task_id = fields.String()
    run_id = _text()
    feed_id = fields.String()
    allocation_id = _text()
    node_id = _text()
    channel = fields.String()
    destination = fields.String()
    article_ids = fields.Function(lambda delivery: list(delivery.article_ids or []),
                                  metadata={"type": "array", "items": {"type": "string"}})
    article_count = fields.Function(lambda delivery: len(delivery.article_ids or []),
                                    metadata={"type": "integer"})
    attempts = fields.Integer()
    status = fields.String()
    vendor_code = _text()
    vendor_message = _text()
    next_attempt_at = UtcTime()
    sent_at = UtcTime()
    created_at = UtcTime()
    updated_at = UtcTime()



class TokenSchema(Schema):
    """A Bearer token from a login."""

    access_token = fields.String(required=True)
    token_type = fields.String(required=True, validate=validate.Equal("bearer"))
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds."})


class AdminSchema(Schema):
    id = fields.Integer(required=True)
    username = fields.String(required=True)


class CredentialsSchema(Schema):
    """A node's new credentials: the secret is shown this once."""

    node_id = fields.String(required=True)
    api_key = fields.String(required=True)
    api_secret = fields.String(required=True)


class NodeDeletedSchema(Schema):
    node_id = fields.String(required=True)
    deleted = fields.Boolean(required=True)


class WhoamiSchema(Schema):
    node_id = fields.String(required=True)
    name = fields.String(required=True)
    node_type = fields.Integer(required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, validate=validate.Equal("ok"))
    database = fields.String(required=True, validate=validate.Equal("ok"))
    time = fields.String(required=True)


class LiveSchema(Schema):
    status = fields.String(required=True, validate=validate.Equal("ok"))
    time = fields.String(required=True)


class ReadySchema(Schema):
    status = fields.String(required=True, validate=validate.Equal("ready"))
    database = fields.String(required=True, validate=validate.Equal("ok"))
    migrations = fields.String(required=True, validate=validate.Equal("current"))
    revision = fields.String(required=True)
    time = fields.String(required=True)
