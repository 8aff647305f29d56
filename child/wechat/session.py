"""The WeChat session at rest: Fernet-encrypted in the child's cache, keyed by the node secret.

The key is derived from the node's api_secret (configuration, never the cache), so a copy
of the cache alone does not give anyone the WeChat login. Nothing here logs the session.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .api import WechatSession

META_NAME = "wechat.session"


def _fernet(secret: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"werss-child wechat session v1").derive(secret.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(raw))


class SessionStore:
    """Load and save the one WeChat session of this child."""

    def __init__(self, cache, secret: str):
        self.cache = cache
        self._fernet = _fernet(secret)

    def load(self) -> WechatSession | None:
        """Return the stored session, or None (none stored, or stored under another secret)."""
        token = self.cache.get_meta(META_NAME)
        if not token:
            return None
        try:
            return WechatSession.from_json(self._fernet.decrypt(token.encode()).decode("utf-8"))
        except (InvalidToken, ValueError, TypeError):
            return None

    def save(self, session: WechatSession) -> None:
        self.cache.set_meta(META_NAME, self._fernet.encrypt(session.to_json().encode()).decode())

    def clear(self) -> None:
        self.cache.set_meta(META_NAME, None)
