"""One request, one unit of work: committed once after a successful view, else rolled back.

Services only flush. The hook below commits after the view returned a response below 400
and before the client sees it, so a client never reads a success the database has not kept;
an error response (and any exception, through the error handlers) rolls everything back,
including the nonce a signed request would have consumed.

A few places must make part of their work durable before the request's outcome is known
(a login attempt is recorded even when the password then turns out wrong; a bulk import
commits chunk by chunk; a request that then waits on something slow ends its transaction
first, so SQLite's write lock is not held while it waits). They say so with ``commit_now()``
or ``separately()``, each with a comment on why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, Response, current_app

from .extensions import db


def commit_now() -> None:
    """Commit what this request has done so far, on purpose (say why at the call)."""
    db.session.commit()


@contextmanager
def separately() -> Iterator[None]:
    """Commit the work done inside the block, whatever the request does after it."""
    try:
        yield
    except BaseException:
        db.session.rollback()
        raise
    db.session.commit()


def _finish(response: Response) -> Response:
    if response.status_code >= 400:
        db.session.rollback()
        return response
    try:
        db.session.commit()
    except Exception as exc:  # noqa: BLE001 - answered like the same error raised by the view
        db.session.rollback()
        return current_app.make_response(current_app.handle_user_exception(exc))
    return response


def init_app(app: Flask) -> None:
    # Registered after every other after_request hook, so it runs first (Flask runs them
    # in reverse) and the metrics and request-id hooks see the answer the client gets.
    app.after_request(_finish)
