"""Count the SQL each hot request runs, in-process, against the benchmark's own database.

The load figures say how fast; this says why: it lists every statement one heartbeat or
feeds pull executes, so a hot path doing more database work than the design allows
(auth = one indexed read; heartbeat = at most one UPDATE plus the nonce INSERT when signed;
a 304 pull never reads feed rows) shows up by name.
"""

from __future__ import annotations

import json
import re
import time

from sqlalchemy import event

from shared import signing
from shared.paths import CASCADE_PREFIX, CLAIM, FEEDS, HEARTBEAT, LEASE_COMPLETE

_TABLE_PATTERNS = {
    "SELECT": re.compile(r"\bFROM\s+\"?(\w+)\"?", re.IGNORECASE),
    "INSERT": re.compile(r"\bINTO\s+\"?(\w+)\"?", re.IGNORECASE),
    "UPDATE": re.compile(r"^\s*UPDATE\s+\"?(\w+)\"?", re.IGNORECASE),
    "DELETE": re.compile(r"\bFROM\s+\"?(\w+)\"?", re.IGNORECASE),
}
_INNERMOST_PARENS = re.compile(r"\([^()]*\)")
HEARTBEAT_BODY = json.dumps({
    "version": "bench", "hostname": "bench-host", "capacity": 4, "running": 0,
}).encode()


def outer_statement(sql: str) -> str:
    """The statement without its parenthesised parts: the table it names is its own, not a
    subquery's (``SELECT nodes.*, EXISTS (SELECT ... FROM used_nonces ...) FROM nodes``)."""
    while True:
        stripped = _INNERMOST_PARENS.sub(" _ ", sql)
        if stripped == sql:
            return sql
        sql = stripped


_CTE_LIST = re.compile(r"^\s*WITH\s+(?:RECURSIVE\s+)?(?:\w+\s+AS\s+_\s*,?\s*)+", re.IGNORECASE)
_CTE_WRITE = re.compile(r"\bAS\s*\(\s*(UPDATE|INSERT\s+INTO|DELETE\s+FROM)\s+\"?(\w+)",
                        re.IGNORECASE)


def without_ctes(sql: str) -> tuple[str, list[str]]:
    """A ``WITH ...`` statement's main statement, and its CTEs' writes as 'VERB table'.

    ``WITH taken AS (UPDATE allocations ...) INSERT INTO leases ...`` gives the INSERT and
    ["UPDATE allocations"]: one statement that writes two tables (a claim on PostgreSQL).
    """
    writes = [f"{verb.split()[0].upper()} {table}" for verb, table in _CTE_WRITE.findall(sql)]
    return _CTE_LIST.sub("", outer_statement(sql), count=1), writes


def describe_statement(sql: str) -> str:
    """Summarise one statement as 'VERB table' (or the bare verb for BEGIN/PRAGMA/...).

    A statement with data-modifying CTEs names them too: 'INSERT leases (WITH UPDATE
    allocations)'.
    """
    if sql.endswith("-- pool_pre_ping"):
        return "PING (pool_pre_ping)"
    verb = sql.strip().split(None, 1)[0].upper() if sql.strip() else "?"
    if verb == "WITH":
        main, writes = without_ctes(sql)
        described = describe_statement(main)
        return f"{described} (WITH {', '.join(writes)})" if writes else described
    pattern = _TABLE_PATTERNS.get(verb)
    match = pattern.search(outer_statement(sql)) if pattern else None
    if verb == "BEGIN":
        return " ".join(sql.split()[:2]).upper()
    return f"{verb} {match.group(1)}" if match else verb


class StatementRecorder:
    """Record every statement the engine executes between start() and stop()."""

    def __init__(self, engine):
        self.engine = engine
        self.statements: list[str] = []
        self.recording = False
        # pool_pre_ping runs its "SELECT 1" on the raw DBAPI cursor, out of sight of the
        # execute events: count checkouts instead.
        self.pre_ping = bool(getattr(engine.pool, "_pre_ping", False))
        event.listen(engine, "before_cursor_execute", self._on_execute)
        event.listen(engine.pool, "checkout", self._on_checkout)

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany):
        if self.recording:
            self.statements.append(statement)

    def _on_checkout(self, dbapi_connection, record, proxy):
        if self.recording and self.pre_ping:
            self.statements.append("SELECT 1 -- pool_pre_ping")

    def capture(self, call):
        self.statements = []
        self.recording = True
        try:
            started = time.perf_counter()
            response = call()
            elapsed = time.perf_counter() - started
        finally:
            self.recording = False
        return response, list(self.statements), elapsed

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._on_execute)
        event.remove(self.engine.pool, "checkout", self._on_checkout)


def _summarise(name: str, response, statements: list[str], elapsed: float) -> dict:
    described = [describe_statement(sql) for sql in statements]
    data_statements = [d for d in described if d.split()[0] in _TABLE_PATTERNS]
    return {
        "request": name,
        "status": response.status_code,
        "statements": described,
        "reads": sum(d.startswith("SELECT") for d in data_statements),
        "writes": sum(not d.startswith("SELECT") for d in data_statements),
        "reads_feed_rows": any(d == "SELECT feeds" for d in described),
        "in_process_ms": round(elapsed * 1000, 2),
    }


def probe_hot_paths(database_url: str, secret_key: str, creds) -> list[dict]:
    """Run one of each hot request through the real app and list its SQL."""
    from parent import create_app
    from parent.extensions import db

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    client = app.test_client()
    heartbeat_path = CASCADE_PREFIX + HEARTBEAT
    feeds_path = CASCADE_PREFIX + FEEDS

    def signed(method: str, path: str, body: bytes = b"") -> dict:
        return {"Authorization": signing.signed_authorization(
            creds.api_key, creds.api_secret, method, path, "", body)}

    plain = {"Authorization": signing.plain_authorization(creds.api_key, creds.api_secret)}
    json_type = {"Content-Type": "application/json"}
    results = []
    with app.app_context():
        recorder = StatementRecorder(db.engine)
    try:
        # The first heartbeat records the offline -> online edge; measure a steady one.
        client.post(heartbeat_path, data=HEARTBEAT_BODY,
                    headers={**signed("POST", heartbeat_path, HEARTBEAT_BODY), **json_type})
        etag = client.get(feeds_path, headers=signed("GET", feeds_path)).headers.get("ETag")
        # Steady state: the first unchanged pull of a window is logged, later ones are not.
        client.get(feeds_path, headers={**signed("GET", feeds_path), "If-None-Match": etag or ""})
        cases = [
            ("heartbeat (signed)", lambda: client.post(
                heartbeat_path, data=HEARTBEAT_BODY,
                headers={**signed("POST", heartbeat_path, HEARTBEAT_BODY), **json_type})),
            ("heartbeat (plain)", lambda: client.post(
                heartbeat_path, data=HEARTBEAT_BODY, headers={**plain, **json_type})),
            ("feeds pull 304 (signed)", lambda: client.get(
                feeds_path, headers={**signed("GET", feeds_path), "If-None-Match": etag or ""})),
            ("feeds pull 200 (signed)", lambda: client.get(
                feeds_path, headers=signed("GET", feeds_path))),
        ]
        for name, call in cases:
            results.append(_summarise(name, *recorder.capture(call)))
    finally:
        recorder.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return results


def probe_work_paths(database_url: str, secret_key: str, creds) -> list[dict]:
    """Run one claim (1 lease) and its complete through the real app, as a child sends them."""
    import uuid

    from parent import create_app
    from parent.extensions import db
    from shared.envelope import IDEMPOTENCY_HEADER

    app = create_app({"db": database_url, "secret_key": secret_key}, environ={})
    client = app.test_client()
    claim_path = CASCADE_PREFIX + CLAIM
    claim_body = json.dumps({"max": 1, "wait": 0}).encode()

    def post(path: str, body: bytes):
        headers = {"Authorization": signing.signed_authorization(
            creds.api_key, creds.api_secret, "POST", path, "", body),
            "Content-Type": "application/json", IDEMPOTENCY_HEADER: str(uuid.uuid4())}
        return lambda: client.post(path, data=body, headers=headers)

    results = []
    with app.app_context():
        recorder = StatementRecorder(db.engine)
    try:
        response, statements, elapsed = recorder.capture(post(claim_path, claim_body))
        results.append(_summarise("claim (1 lease)", response, statements, elapsed))
        leases = (response.get_json(silent=True) or {}).get("data", {}).get("leases") or []
        if leases:
            lease = leases[0]
            path = CASCADE_PREFIX + LEASE_COMPLETE.format(lease_id=lease["lease_id"])
            body = json.dumps({"results": [{"mp_id": lease["feeds"][0]["id"],
                                            "success": True}]}).encode()
            results.append(_summarise("complete", *recorder.capture(post(path, body))))
    finally:
        recorder.close()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return results
