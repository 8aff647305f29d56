"""One redaction for every channel: remote text that holds any encoding of a secret is withheld.

Blanking the verbatim token is not enough: receivers echo it URL-encoded, JSON-escaped,
base64-encoded or upper-cased. A reply that contains a secret in any of those forms is never
forwarded; only its status and vendor code are.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from shared.lease_schemas import TASK_SECRET_FIELDS

MIN_SECRET = 6  # shorter pieces would match ordinary words
WITHHELD = "(reply withheld: it echoed a secret)"
MASK = "***"


def url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that may be credentials: path segments and query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url, parts.path, parts.query]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 8]
    found += [value for _, value in parse_qsl(parts.query) if len(value) >= 8]
    if parts.password:
        found.append(parts.password)
    return found


def task_secrets(task: dict) -> list[str]:
    """Every secret a task carries, by the contract's marks (shared TASK_SECRET_FIELDS)."""
    found: list[str] = []
    for name in TASK_SECRET_FIELDS:
        found += _secret_texts(task.get(name))
    return found


def _secret_texts(value) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _secret_texts(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _secret_texts(item)]
    if not isinstance(value, str) or not value.strip():
        return []
    text = value.strip()
    # A secret text may be a URL (tokens in its path or query) or cookies (a=b; c=d).
    cookie_values = [part.partition("=")[2].strip() for part in text.split(";") if "=" in part]
    return [text, *url_secrets(text), *cookie_values]


def _encodings(secret: str) -> set[str]:
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             secret.replace("/", "\\/"), json.dumps(secret)[1:-1].replace("/", "\\/"),
             binascii.hexlify(raw).decode()}
    for prefix in (b"", b"\0", b"\0\0"):
        # base64 of the secret anywhere in a longer encoded text: drop the characters that
        # depend on what surrounds it.
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(prefix + raw).decode().rstrip("=")
            start = {0: 0, 1: 2, 2: 3}[len(prefix)]
            core = text[start:-2] if len(text) - start > 4 else text[start:]
            if len(core) >= MIN_SECRET:
                forms.add(core)
    return {form for form in forms if len(form) >= MIN_SECRET}


class Redactor:
    """Knows a push's secrets; says whether a text may be shown and blanks what it can."""

    def __init__(self, secrets=()):
        self._forms: set[str] = set()
        self._plain: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret:
            return
        for piece in {secret, *secret.split()}:
            if len(piece) >= MIN_SECRET:
                self._plain.add(piece)
                self._forms |= {form.lower() for form in _encodings(piece)}

    def leaks(self, text: str) -> bool:
        """True when ``text`` holds any secret in any known encoding (case ignored)."""
        folded = text.lower()
        return any(form in folded for form in self._forms)

    def safe(self, text: str | None, limit: int = 200) -> str:
        """``text`` cut to ``limit`` characters, or WITHHELD when it echoes a secret."""
        if not text:
            return ""
        text = " ".join(str(text).split())
        if self.leaks(text):
            return WITHHELD
        return text[:limit]

    def mask(self, value: Any) -> Any:
        """``value`` (text, or JSON-like lists and dicts) with every known secret as ``***``."""
        if isinstance(value, str):
            for secret in sorted(self._plain, key=len, reverse=True):
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            return {key: self.mask(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.mask(item) for item in value]
        return value
