"""test-connection: can the parent reach a node's URL, and do credentials work there?

Admin-only. Timeouts on every call, redirects never followed, and the remote body is
never returned: at most its stable error code.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlsplit

import requests
from marshmallow import ValidationError

from shared import paths, signing

from ..config import settings
from .. import unit_of_work
from .nodes import get_node

_ERROR_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# HTTP header values are Latin-1 on the wire; anything else would fail inside http.client.
_CREDENTIAL_RE = re.compile(r"^[\x21-\x7e]+$")
# An error envelope is small; a remote streaming more than this is not answering with one.
_MAX_ERROR_BODY = 64 * 1024
NO_HTTP_ANSWER = "no HTTP answer"


def _remote_error_code(response: requests.Response) -> str | None:
    raw = b""
    try:
        for chunk in response.iter_content(8192):
            raw += chunk
            if len(raw) > _MAX_ERROR_BODY:
                return None
        body = json.loads(raw)
    except (requests.RequestException, ValueError):
        return None
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _ERROR_CODE_RE.match(code) else None


def _get(session: requests.Session, url: str, headers: dict | None = None):
    timeout = settings().test_connection_timeout
    return session.get(url, headers=headers or {}, timeout=(timeout, timeout),
                       allow_redirects=False, stream=True)


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return "request failed"


def test_connection(node_id: str, values: dict) -> dict:
    node = get_node(node_id)
    api_url = (values.get("api_url") or node.api_url or "").rstrip("/")
    if not api_url:
        raise ValidationError({"api_url": ["The node has no api_url; pass one to test."]})
    api_key, api_secret = values.get("api_key"), values.get("api_secret")
    if bool(api_key) != bool(api_secret):
        raise ValidationError({"api_secret": ["Give both api_key and api_secret, or neither."]})
    for name, value in (("api_key", api_key), ("api_secret", api_secret)):
        if value and not _CREDENTIAL_RE.match(value):
            raise ValidationError({name: ["Use printable ASCII characters without spaces."]})

    if urlsplit(api_url).query or urlsplit(api_url).fragment:
        raise ValidationError({"api_url": ["Give the base URL, without a query or fragment."]})

    result = {"api_url": api_url, "reachable": False, "status_code": None,
              "latency_ms": None, "authenticated": None, "error": None}
    # Nothing was written; end the read transaction now so outbound calls (up to the
    # timeout) never hold a database lock (on SQLite, the write lock) while they wait.
    unit_of_work.commit_now()
    with requests.Session() as session:
        session.trust_env = False
        started = time.monotonic()
        try:
            response = _get(session, api_url + paths.HEALTHZ)
            response.close()
        except requests.RequestException:
            # One answer for a closed port, a port that does not speak HTTP and a timeout:
            # test-connection must not tell an admin's browser which local ports are open.
            result["error"] = NO_HTTP_ANSWER
            return result
        result.update(reachable=True, status_code=response.status_code,
                      latency_ms=round((time.monotonic() - started) * 1000, 1))
        if api_key and api_secret:  # both or neither, checked above
            result.update(_check_credentials(session, api_url, api_key, api_secret))
    return result


def _check_credentials(session, api_url: str, api_key: str, api_secret: str) -> dict:
    path = paths.CASCADE_PREFIX + paths.WHOAMI
    header = signing.signed_authorization(api_key, api_secret, "GET", urlsplit(api_url).path + path)
    try:
        response = _get(session, api_url + path, {"Authorization": header})
        if response.status_code == 404:
            # An existing WeRSS parent: no whoami, and only the plain form.
            path = paths.WX_CASCADE_PREFIX + paths.MESSAGE_TASKS
            response = _get(session, api_url + path,
                            {"Authorization": signing.plain_authorization(api_key, api_secret)})
    except requests.RequestException as exc:
        return {"authenticated": False, "error": _describe(exc)}
    with response:
        if 200 <= response.status_code < 300:
            return {"authenticated": True}
        return {
            "authenticated": False,
            "error": _remote_error_code(response) or f"HTTP {response.status_code}",
        }
