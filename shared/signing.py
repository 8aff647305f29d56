"""AK-SK request authentication: the plain form and the signed form (docs/PROTOCOL.md §3).

``string_to_sign`` is, joined with "\\n"::

    AK-SK-HMAC-SHA256
    METHOD            upper case
    PATH              as sent, without the query
    CANONICAL_QUERY   see canonical_query()
    TIMESTAMP         Unix seconds
    NONCE             16-64 chars of [A-Za-z0-9_-]
    HEX(SHA-256(body bytes))
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote

PLAIN_SCHEME = "AK-SK"
SIGNED_SCHEME = "AK-SK-HMAC-SHA256"
TIMESTAMP_WINDOW_SECONDS = 300
API_KEY_PREFIX = "CN"
API_SECRET_PREFIX = "CS"
CREDENTIAL_BODY_LENGTH = 32

_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SIGNATURE_RE = re.compile(r"^[0-9a-f]{64}$")
_TIMESTAMP_RE = re.compile(r"^[0-9]{1,12}$")
# C0 controls and DEL: one regex search (a per-character loop was ~3 % of a heartbeat).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CREDENTIAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_SIGNED_FIELDS = ("Credential", "Timestamp", "Nonce", "Signature")
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


class AuthorizationFormatError(ValueError):
    """The Authorization header cannot be parsed."""


@dataclass(frozen=True)
class PlainCredentials:
    """``AK-SK <api_key>:<api_secret>``."""

    api_key: str
    api_secret: str


@dataclass(frozen=True)
class SignedCredentials:
    """The parsed fields of an ``AK-SK-HMAC-SHA256`` header."""

    api_key: str
    timestamp: int
    nonce: str
    signature: str


def generate_credentials() -> tuple[str, str]:
    """Return a new (api_key, api_secret) pair from the OS CSPRNG."""
    return (
        API_KEY_PREFIX + _random_token(CREDENTIAL_BODY_LENGTH),
        API_SECRET_PREFIX + _random_token(CREDENTIAL_BODY_LENGTH),
    )


def _random_token(length: int) -> str:
    return "".join(secrets.choice(_CREDENTIAL_CHARS) for _ in range(length))


def generate_nonce() -> str:
    """Return a fresh 32-character nonce."""
    return secrets.token_hex(16)


def _rfc3986(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(query: str) -> str:
    """Canonicalise a raw query string as the contract defines it.

    Decode as application/x-www-form-urlencoded (``+`` is a space, %XX as UTF-8, blank
    values kept), percent-encode every name and value per RFC 3986, sort the pairs by
    encoded name then encoded value, and join them as ``name=value`` with ``&``.
    """
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace")
    encoded = sorted((_rfc3986(name), _rfc3986(value)) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def body_digest(body: bytes | None) -> str:
    """Return HEX(SHA-256(body)), with no body hashed as b""."""
    return hashlib.sha256(body or b"").hexdigest()


def string_to_sign(
    method: str, path: str, query: str, timestamp: int | str, nonce: str, body: bytes | None
) -> str:
    """Build the exact text that is signed."""
    return "\n".join(
        (
            SIGNED_SCHEME,
            method.upper(),
            path,
            canonical_query(query),
            str(timestamp),
            nonce,
            body_digest(body),
        )
    )


def compute_signature(
    api_secret: str,
    method: str,
    path: str,
    query: str,
    timestamp: int | str,
    nonce: str,
    body: bytes | None,
) -> str:
    """Return the lowercase hex HMAC-SHA256 signature of a request."""
    message = string_to_sign(method, path, query, timestamp, nonce, body)
    return hmac.new(api_secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


def signed_authorization(
    api_key: str,
    api_secret: str,
    method: str,
    path: str,
    query: str = "",
    body: bytes | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
    clock=None,
) -> str:
    """Build a complete ``AK-SK-HMAC-SHA256`` Authorization header value."""
    if timestamp is None:
        import time

        timestamp = int((clock or time.time)())
    nonce = nonce or generate_nonce()
    signature = compute_signature(api_secret, method, path, query, timestamp, nonce, body)
    return (
        f"{SIGNED_SCHEME} Credential={api_key}, Timestamp={timestamp}, "
        f"Nonce={nonce}, Signature={signature}"
    )


def plain_authorization(api_key: str, api_secret: str) -> str:
    """Build the seed guide's plain ``AK-SK key:secret`` header value."""
    return f"{PLAIN_SCHEME} {api_key}:{api_secret}"


def parse_authorization(header: str) -> PlainCredentials | SignedCredentials | None:
    """Parse an AK-SK Authorization header.

    Return None when the header uses another scheme (e.g. Bearer), so the caller can tell
    "not AK-SK at all" from "AK-SK but broken".

    :raises AuthorizationFormatError: the header is AK-SK but cannot be parsed.
    """
    header = header.strip()
    if _CONTROL_RE.search(header):
        raise AuthorizationFormatError("control characters are not allowed")
    scheme, _, rest = header.partition(" ")
    rest = rest.strip()
    if scheme == SIGNED_SCHEME:
        return _parse_signed(rest)
    if scheme == PLAIN_SCHEME:
        api_key, sep, api_secret = rest.partition(":")
        if not sep or not api_key or not api_secret or " " in rest:
            raise AuthorizationFormatError("expected 'AK-SK <api_key>:<api_secret>'")
        return PlainCredentials(api_key, api_secret)
    return None


def _parse_signed(rest: str) -> SignedCredentials:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep or not name or not value:
            raise AuthorizationFormatError(f"cannot parse {part.strip()!r}; expected Name=value")
        if name not in _SIGNED_FIELDS:
            raise AuthorizationFormatError(f"unknown field {name!r}")
        if name in fields:
            raise AuthorizationFormatError(f"field {name!r} appears twice")
        fields[name] = value.strip()
    missing = [name for name in _SIGNED_FIELDS if name not in fields]
    if missing:
        raise AuthorizationFormatError("missing " + ", ".join(missing))
    if not _TIMESTAMP_RE.match(fields["Timestamp"]):
        raise AuthorizationFormatError("Timestamp must be Unix seconds")
    if not _NONCE_RE.match(fields["Nonce"]):
        raise AuthorizationFormatError("Nonce must be 16-64 characters of [A-Za-z0-9_-]")
    if not _SIGNATURE_RE.match(fields["Signature"]):
        raise AuthorizationFormatError("Signature must be 64 lowercase hex characters")
    return SignedCredentials(
        api_key=fields["Credential"],
        timestamp=int(fields["Timestamp"]),
        nonce=fields["Nonce"],
        signature=fields["Signature"],
    )


def verify_signature(
    api_secret: str,
    credentials: SignedCredentials,
    method: str,
    path: str,
    query: str,
    body: bytes | None,
) -> bool:
    """Check a signed request's signature in constant time."""
    expected = compute_signature(
        api_secret, method, path, query, credentials.timestamp, credentials.nonce, body
    )
    return hmac.compare_digest(expected, credentials.signature)


def timestamp_skew(timestamp: int, now: float) -> float:
    """Return how far a request timestamp is from the server clock, in seconds."""
    return abs(now - timestamp)
