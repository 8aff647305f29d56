"""The response envelope (docs/PROTOCOL.md §2)."""

from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
IDEMPOTENCY_HEADER = "Idempotency-Key"
CURSOR_HEADER = "X-Cascade-Cursor"
# On a paged full pull: the `after` value of the next page; absent on the last page.
NEXT_AFTER_HEADER = "X-Cascade-Next-After"
# On claim answers: the token a child sends back to have its next claim parked (§7 claim).
WORK_TOKEN_HEADER = "X-Work-Token"
MAX_IDEMPOTENCY_KEY_LENGTH = 255


def success_body(data: Any = None, message: str = "success") -> dict:
    """Build the body of a 2xx response."""
    return {"code": 0, "message": message, "data": data}


def error_body(
    status: int, error: str, message: str, details: Any = None, request_id: str | None = None
) -> dict:
    """Build the body of a 4xx/5xx response."""
    return {
        "code": status,
        "message": message,
        "error": error,
        "details": details,
        "request_id": request_id,
    }
