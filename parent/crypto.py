"""Secrets at rest: node api_secrets and message-task secrets (webhook URL, headers, cookies,
sign_secret) are Fernet-encrypted under keys derived from secret_key.

The key lives in configuration, never in the database, so a copy of the database alone
cannot authenticate as any node.
"""

import base64
import hashlib
import hmac
import threading
from collections import OrderedDict

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

_EXTENSION_KEY = "werss.cipher"
_DECRYPTED_MAX = 20_000  # node secrets kept decrypted per worker (a few MB at most)


class SecretCipher:
    """Encrypt and decrypt node secrets; hash admin tokens."""

    def __init__(self, secret_key: str):
        self._fernet = Fernet(self._derive(secret_key, b"werss-cascade node secrets v1"))
        self._token_key = self._derive_raw(secret_key, b"werss-cascade admin tokens v1")
        # ciphertext -> plaintext: authenticating a node costs a dict lookup, not a Fernet
        # decryption (HMAC + AES). A rotation stores a new ciphertext, so it never hits.
        self._decrypted: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()
        self._field_fernet = Fernet(self._derive(secret_key, b"werss-cascade task secrets v1"))

    @staticmethod
    def _derive_raw(secret_key: str, info: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            secret_key.encode("utf-8")
        )

    @classmethod
    def _derive(cls, secret_key: str, info: bytes) -> bytes:
        return base64.urlsafe_b64encode(cls._derive_raw(secret_key, info))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str | None:
        """Return the plaintext, or None if it was encrypted under another key."""
        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            return None

    def decrypt_cached(self, ciphertext: str) -> str | None:
        """As decrypt(), remembering the answer for this ciphertext in this process."""
        with self._lock:
            if ciphertext in self._decrypted:
                self._decrypted.move_to_end(ciphertext)
                return self._decrypted[ciphertext]
        plaintext = self.decrypt(ciphertext)
        with self._lock:
            self._decrypted[ciphertext] = plaintext
            if len(self._decrypted) > _DECRYPTED_MAX:
                self._decrypted.popitem(last=False)
        return plaintext

    def encrypt_field(self, plaintext: str) -> str:
        """Encrypt a column value (models.encrypted.EncryptedText)."""
        return self._field_fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt_field(self, ciphertext: str) -> str | None:
        """Return a column's plaintext, or None if it was encrypted under another key."""
        try:
            return self._field_fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError):
            return None

    def token_digest(self, token: str) -> str:
        """Keyed digest of an admin bearer token (the stored form)."""
        return hmac.new(self._token_key, token.encode("utf-8"), hashlib.sha256).hexdigest()


def init_app(app, secret_key: str) -> None:
    app.extensions[_EXTENSION_KEY] = SecretCipher(secret_key)


def cipher() -> SecretCipher:
    return current_app.extensions[_EXTENSION_KEY]
