"""Every model, imported here so Alembic and create_all() see the whole schema."""

from .admin import Admin, AdminLoginSource, AdminToken, LoginFailure
from .delivery import Delivery, PushedArticle, TaskFeedStart
from .feed import Feed
from .channels import NoticeMark, SendBudget
from .message_task import MessageTask
from .node import Node
from .replication import ChangeLogEntry, MetaValue
from .report import TaskReport
from .request_guard import IdempotencyRecord, UsedNonce
from .sync_log import SyncLog
from .wechat import NodeCommand, WechatLogin
from .work import Allocation, Article, Lease, TaskRun

__all__ = [
    "Allocation", "Article", "Lease", "TaskRun",
    "Delivery", "PushedArticle", "TaskFeedStart",
    "Admin", "AdminLoginSource", "AdminToken", "ChangeLogEntry", "Feed", "IdempotencyRecord", "LoginFailure",
    "MessageTask", "MetaValue", "Node", "NoticeMark", "SendBudget", "SyncLog", "TaskReport", "UsedNonce",
    "NodeCommand", "WechatLogin",
]
