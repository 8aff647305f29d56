"""One request, one unit of work: committed once after a successful view, else rolled back.

Services only flush. The hook below commits after the view returned a response below 400
and before the client sees it, so a client never reads a success the database has not kept;
an error response (and any exception, through the error handlers) rolls everything back,
including the nonce a signed request would have consumed.

A few places must make part of their work durable before the request's outcome is known
(a login attempt is recorded even when the password then turns out wrong; a bulk import
commits chunk by chunk; a request that then waits on something slow ends its transaction
first, so SQLite's write lock is not held while it waits). They say so with ``commit_now()``
or ``separately()``, each with a comment on why. A row that belongs with the work but need not
be written first (a signed request's nonce) is written by whichever commit comes, through
``insert_at_commit()``; alone, it is one statement that commits itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, Response, current_app
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from shared.errors import ErrorCode

from . import write_queue
from .errors import ApiError
from .extensions import db

_AT_COMMIT = "werss.insert_at_commit"


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


def insert_at_commit(statement: Any, parameters: dict, conflict: ErrorCode,
                     alone: Callable[..., bool] | None = None) -> None:
    """Run this INSERT as the last write of whatever commits this request's work.

    For a row that must be written with the work and only if the work is kept, but whose
    write need not come first: on SQLite a write takes the database-wide write lock until
    COMMIT, so an INSERT made at the start would hold it for the whole request. A
    collision on a unique key (the row is already there) answers ``conflict`` instead.
    ``alone``: writes the row (``alone(**parameters)``, False on a collision) when it is
    the request's only write, in place of the INSERT (a signed request's nonce:
    parent/nonce_writer.py).
    """
    db.session.info.setdefault(_AT_COMMIT, []).append((statement, parameters, conflict, alone))


def _insert_pending(session) -> None:
    pending = session.info.pop(_AT_COMMIT, None)
    if not pending:
        return
    if len(pending) == 1 and _nothing_else(session):
        _insert_alone(session, *pending[0])
        return
    for statement, parameters, conflict, _ in pending:
        _insert(session, statement, parameters, conflict, {})


def _nothing_else(session) -> bool:
    """Whether the request wrote nothing else: no other work, no transaction open.

    Then its one pending INSERT (a signed heartbeat's or unchanged pull's nonce) runs as
    one autocommitted statement: no BEGIN, no COMMIT. (session.info: other work left for
    the commit, such as a work-generation bump.)
    """
    return not (session.info or session.new or session.dirty or session.deleted) \
        and not write_queue.ends_a_transaction(session.connection())


def _insert(session, statement: Any, parameters: dict, conflict: ErrorCode,
            options: dict) -> None:
    try:
        session.execute(statement, parameters, execution_options=options)
    except IntegrityError:
        raise ApiError(conflict) from None


def _write_alone(session) -> bool:
    """Run the request's only write, a lone pending INSERT, without the ORM's commit.

    Returns False (and does nothing) when there is more to commit.
    """
    pending = session.info.get(_AT_COMMIT)
    if pending is None or len(pending) != 1:
        return False
    del session.info[_AT_COMMIT]
    if not _nothing_else(session):
        session.info[_AT_COMMIT] = pending  # left for the commit, as it came
        return False
    _insert_alone(session, *pending[0])
    return True


def _insert_alone(session, statement: Any, parameters: dict, conflict: ErrorCode,
                  alone: Callable[..., bool] | None) -> None:
    """The request's only write: one statement that commits itself (no BEGIN, no COMMIT)."""
    if alone is None:
        _insert(session, statement, parameters, conflict, {write_queue.ALONE: True})
    elif not alone(**parameters):
        raise ApiError(conflict)


def _read_only(session) -> bool:
    """Whether the request only read: nothing written, flushed or left for the commit."""
    if not session.in_transaction():
        return True
    if session.info or session.new or session.dirty or session.deleted:
        return False  # session.info: work left for the commit (insert_at_commit, work_signal)
    return not write_queue.ends_a_transaction(session.connection())


def _finish(response: Response) -> Response:
    if response.status_code >= 400:
        db.session.rollback()
        return response
    session = db.session()
    if _read_only(session):
        return response  # nothing to commit; the session is closed at the end of the request
    try:
        # A signed heartbeat's or unchanged pull's only write is its nonce: one statement
        # that commits itself, with none of the ORM commit's flush and bookkeeping.
        if not _write_alone(session):
            session.commit()
    except Exception as exc:  # noqa: BLE001 - answered like the same error raised by the view
        session.rollback()
        return current_app.make_response(current_app.handle_user_exception(exc))
    return response


def init_app(app: Flask) -> None:
    # Every commit of a request's session (commit_now, separately, the one below, or a
    # service's own) writes what insert_at_commit() left first. Sessions of every app share
    # the class the scoped session makes, so the listener is added once.
    if not event.contains(db.session, "before_commit", _insert_pending):
        event.listen(db.session, "before_commit", _insert_pending)
    # Registered after every other after_request hook, so it runs first (Flask runs them
    # in reverse) and the metrics and request-id hooks see the answer the client gets.
    app.after_request(_finish)
