"""Stable error codes of the wire contract and their HTTP statuses.

Clients branch on ``error`` (never on ``message``, which is for people).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One stable error: its snake_case code, HTTP status and default message."""

    code: str
    status: int
    message: str


def _e(code: str, status: int, message: str) -> ErrorCode:
    return ErrorCode(code, status, message)


BAD_REQUEST = _e("bad_request", 400, "The request is not valid.")
MALFORMED_JSON = _e("malformed_json", 400, "The body is not valid JSON; send a JSON object.")
VALIDATION_FAILED = _e("validation_failed", 422, "Some fields are invalid; see details.")
PAYLOAD_TOO_LARGE = _e("payload_too_large", 413, "The body is larger than this server accepts.")
NOT_FOUND = _e("not_found", 404, "No such route or resource.")
METHOD_NOT_ALLOWED = _e("method_not_allowed", 405, "This route does not accept that method.")
UNSUPPORTED_MEDIA_TYPE = _e("unsupported_media_type", 415, "Send the body as JSON.")

AUTHENTICATION_REQUIRED = _e(
    "authentication_required", 401, "Send credentials in the Authorization header."
)
MALFORMED_AUTHORIZATION = _e(
    "malformed_authorization", 401, "The Authorization header cannot be parsed."
)
INVALID_CREDENTIALS = _e(
    "invalid_credentials", 401,
    "The credentials were not accepted: check the api_key and api_secret (认证失败).",
)
REQUEST_EXPIRED = _e(
    "request_expired", 401,
    "The request timestamp is outside the allowed window; check this host's clock.",
)
REPLAYED_REQUEST = _e(
    "replayed_request", 401, "This nonce was already used; sign every request with a new nonce."
)
PLAIN_AUTH_DISABLED = _e(
    "plain_auth_disabled", 401,
    "This parent only accepts signed requests (AK-SK-HMAC-SHA256).",
)
WRONG_CREDENTIAL_TYPE = _e(
    "wrong_credential_type", 401, "These credentials are not accepted on this route."
)
INVALID_TOKEN = _e("invalid_token", 401, "The access token is unknown, expired or revoked; log in again.")
INVALID_LOGIN = _e("invalid_login", 401, "Wrong username or password.")
TOO_MANY_ATTEMPTS = _e("too_many_attempts", 429, "Too many failed logins; wait and try again.")

NODE_DISABLED = _e("node_disabled", 403, "This node is disabled or deleted on the parent.")
FORBIDDEN = _e("forbidden", 403, "You may not do that.")

CONFLICT = _e("conflict", 409, "The request conflicts with the current state.")
NAME_TAKEN = _e("name_taken", 409, "That name is already in use.")
ALREADY_EXISTS = _e("already_exists", 409, "A record with that identity already exists.")
IDEMPOTENCY_KEY_REUSED = _e(
    "idempotency_key_reused", 422,
    "This Idempotency-Key was used with a different request; use a new key.",
)
CURSOR_EXPIRED = _e(
    "cursor_expired", 410, "The cursor is older than the change log; do a full pull."
)
LEASE_LOST = _e("lease_lost", 409, "The lease expired or belongs to another claim.")

WECHAT_UNAVAILABLE = _e(
    "wechat_unavailable", 503,
    "No online node has a valid WeChat session; log a node in to WeChat first.")
WECHAT_TIMEOUT = _e("wechat_timeout", 504, "The node did not answer in time; try again.")
WECHAT_FAILED = _e("wechat_failed", 502, "The node could not ask WeChat; see the message.")
QR_NOT_AVAILABLE = _e("qr_not_available", 404, "No WeChat login QR code is waiting to be scanned.")
LOGIN_SUPERSEDED = _e("login_superseded", 409, "A newer WeChat login was requested for this node.")

SEND_BUDGET_EXHAUSTED = _e("send_budget_exhausted", 429,
                           "This destination's rate limit is used up for now; retry later.")
SEND_BUDGET_BUSY = _e("send_budget_busy", 503,
                      "Too many concurrent permit requests for one destination; retry.")

INTERNAL_ERROR = _e("internal_error", 500, "Something went wrong on the server; it has been logged.")
SERVICE_UNAVAILABLE = _e("service_unavailable", 503, "The service cannot reach its database.")

ALL = {
    value.code: value for value in list(globals().values()) if isinstance(value, ErrorCode)
}

STATUS_DEFAULTS = {
    400: BAD_REQUEST,
    401: AUTHENTICATION_REQUIRED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: CONFLICT,
    410: CURSOR_EXPIRED,
    413: PAYLOAD_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    422: VALIDATION_FAILED,
    429: TOO_MANY_ATTEMPTS,
    500: INTERNAL_ERROR,
    503: SERVICE_UNAVAILABLE,
}
