"""URL paths of the wire contract (docs/PROTOCOL.md §1)."""

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
# Ends the caller's waiting claim (long-poll) at once: a stopping child calls it.
CLAIM_CANCEL = "/claim/cancel"

# WeChat logins relayed through the parent (node side; docs/WECHAT.md).
WECHAT_LOGIN_STATE = "/wechat/login-state"
COMMAND_RESULT = "/commands/{command_id}/result"
