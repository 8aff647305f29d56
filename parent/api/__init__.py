"""Every blueprint, mounted in one readable list."""

from flask import Flask

from shared.paths import API_PREFIX, CASCADE_PREFIXES

from . import (
    admin_nodes, auth, compat, feeds, health, message_tasks, node_sync, outputs, sync_logs,
    wechat, werss_shapes, work, work_views,
)
from . import deliveries, node_deliveries
from . import console, console_support
from . import channels
from . import docs

# (blueprint, prefixes): cascade blueprints are served under both cascade prefixes
# because existing WeRSS nodes call /api/v1/wx/cascade/...
BLUEPRINTS = [
    (health.bp, ("",)),
    (auth.bp, (API_PREFIX,)),
    (wechat.search_bp, (API_PREFIX,)),
    (feeds.bp, (API_PREFIX,)),
    (message_tasks.bp, (API_PREFIX,)),
    (channels.admin_bp, (API_PREFIX,)),
    (channels.node_bp, CASCADE_PREFIXES),
    (admin_nodes.bp, CASCADE_PREFIXES),
    (sync_logs.bp, CASCADE_PREFIXES),
    (node_sync.bp, CASCADE_PREFIXES),
    (work.bp, CASCADE_PREFIXES),
    (wechat.bp, CASCADE_PREFIXES),
    (compat.bp, CASCADE_PREFIXES),
    (node_deliveries.bp, CASCADE_PREFIXES),
    (deliveries.bp, (API_PREFIX,)),
    (work_views.cascade_bp, CASCADE_PREFIXES),
    (work_views.articles_bp, (API_PREFIX,)),
    (outputs.bp, ("",)),
    (console_support.bp, (API_PREFIX,)),
    (console.bp, ("",)),
    (docs.bp, ("",)),
]


def init_app(app: Flask) -> None:
    werss_shapes.init_app(app)
    for blueprint, prefixes in BLUEPRINTS:
        for index, prefix in enumerate(prefixes):
            name = blueprint.name if index == 0 else f"{blueprint.name}_wx"
            app.register_blueprint(blueprint, url_prefix=prefix or None, name=name)
