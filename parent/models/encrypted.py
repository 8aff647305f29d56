"""One column type for secrets at rest: values are encrypted with parent/crypto.py's key.

A copy of the database alone shows none of a message task's webhook URL (tokens live in
its query), headers, cookies or signing secret.
"""

from __future__ import annotations

import json
import logging

from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)


def _cipher():
    from ..crypto import cipher

    return cipher()


class EncryptedText(TypeDecorator):
    """A string stored Fernet-encrypted in a TEXT column; None stays NULL."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return _cipher().encrypt_field(self.encode(value))

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        plaintext = _cipher().decrypt_field(value)
        if plaintext is None:
            # Encrypted under another secret_key: unreadable, as node secrets are.
            log.warning("an encrypted column cannot be decrypted with this secret_key")
            return self.empty()
        return self.decode(plaintext)

    def encode(self, value) -> str:
        return str(value)

    def decode(self, text: str):
        return text

    def empty(self):
        return ""


class EncryptedJSON(EncryptedText):
    """A JSON document stored encrypted (message-task headers)."""

    cache_ok = True

    def encode(self, value) -> str:
        return json.dumps(value, ensure_ascii=False, sort_keys=True)

    def decode(self, text: str):
        return json.loads(text)

    def empty(self):
        return {}
