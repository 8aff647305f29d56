"""URL paths of the wire contract (docs/PROTOCOL.md §1).

Both sides take every path from here: the parent mounts its routes on them (``as_rule``), the
child formats them (``LEASE_FAIL.format(lease_id=...)``).
"""

import re

API_PREFIX = "/api/v1"
CASCADE_PREFIX = API_PREFIX + "/cascade"
# Existing WeRSS (we-mp-rss 1.4.9+) nodes call the cascade routes under this prefix.
WX_CASCADE_PREFIX = API_PREFIX + "/wx/cascade"
CASCADE_PREFIXES = (CASCADE_PREFIX, WX_CASCADE_PREFIX)

HEALTHZ = "/healthz"
METRICS = "/metrics"

# Admin authentication.
LOGIN = API_PREFIX + "/auth/login"
LOGOUT = API_PREFIX + "/auth/logout"

# Node routes, relative to a cascade prefix.
HEARTBEAT = "/heartbeat"
FEEDS = "/feeds"
FEED_CHANGES = "/feeds/changes"
MESSAGE_TASKS = "/message-tasks"
MESSAGE_TASK_CHANGES = "/message-tasks/changes"
REPORT_RESULT = "/report-result"
WHOAMI = "/whoami"
# Work distribution (docs/WORK.md).
CLAIM = "/claim"
# Ends the caller's waiting claim (long-poll) at once: a stopping child calls it.
CLAIM_CANCEL = "/claim/cancel"
LEASE_RENEW = "/leases/{lease_id}/renew"
LEASE_COMPLETE = "/leases/{lease_id}/complete"
LEASE_FAIL = "/leases/{lease_id}/fail"
ARTICLES = "/articles"
# Push each new article once: plan a lease's deliveries, report each one's outcome.
LEASE_DELIVERIES = "/leases/{lease_id}/deliveries"
DELIVERY_REPORT = "/deliveries/{delivery_id}/report"
# The next send moment of a push destination under a channel's send limit.
SEND_PERMITS = "/send-permits"

# WeChat logins relayed through the parent (node side; docs/WECHAT.md).
WECHAT_LOGIN_STATE = "/wechat/login-state"
COMMAND_RESULT = "/commands/{command_id}/result"


def as_rule(path: str) -> str:
    """The path as a Flask/Werkzeug rule: ``{lease_id}`` becomes ``<lease_id>``."""
    return re.sub(r"\{(\w+)\}", r"<\1>", path)
