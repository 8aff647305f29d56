"""Errors the child's client raises, named by meaning; each carries status, code, request id."""

from __future__ import annotations


class ParentError(Exception):
    """Any answer from the parent that is not a success."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 request_id: str | None = None, details=None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.details = details
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        if self.status:
            parts.append(f"HTTP {self.status}")
        if self.code:
            parts.append(self.code)
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        return " | ".join(parts)


class ParentUnavailableError(ParentError):
    """The parent could not be reached or answered 5xx: retry later."""


class RateLimitedError(ParentUnavailableError):
    """429: retry after ``retry_after`` seconds."""


class AuthenticationError(ParentError):
    """401: the credentials were refused (认证失败). Unrecoverable: exit code 3."""


class PermissionDeniedError(ParentError):
    """403: e.g. node_disabled. node_disabled is unrecoverable: exit code 3."""


class ConflictError(ParentError):
    """409: e.g. lease_lost."""


class InvalidRequestError(ParentError):
    """Another 4xx: this request will never succeed as it is."""


class NotFoundError(InvalidRequestError):
    """404."""


class CursorExpiredError(ParentError):
    """410 cursor_expired: do a full pull."""


class ContractError(ParentError):
    """A success whose payload the wire contract (shared/) does not allow: nothing is used."""


FATAL_CODES = {"invalid_credentials", "node_disabled", "plain_auth_disabled",
               "malformed_authorization", "wrong_credential_type"}


def is_fatal(error: BaseException) -> bool:
    """Credentials rejected or node disabled: retrying cannot help."""
    return isinstance(error, (AuthenticationError, PermissionDeniedError)) and (
        error.code in FATAL_CODES or error.code is None
    ) and error.code != "request_expired" and error.code != "replayed_request"
