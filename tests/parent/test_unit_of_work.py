"""One request, one unit of work (parent/unit_of_work.py): kept only when it is answered
as a success, and never answered as a success when the database did not keep it."""

from __future__ import annotations

import pytest
from flask import jsonify
from sqlalchemy import text

from parent.errors import ApiError
from parent.extensions import db
from shared import errors as codes
from tests.helpers import assert_error

# A deferred foreign key fails at COMMIT, not at the INSERT: the one way a real database
# refuses a unit of work after the view has already returned its answer.
PROBE_TABLE = """CREATE TABLE uow_probe (
    id INTEGER PRIMARY KEY,
    admin_id INTEGER REFERENCES admins (id) DEFERRABLE INITIALLY DEFERRED)"""


@pytest.fixture
def probe(app):
    with app.app_context():
        db.session.execute(text(PROBE_TABLE))
        db.session.commit()

    def insert(row_id: int, admin_id: int | None = None) -> None:
        db.session.execute(text("INSERT INTO uow_probe (id, admin_id) VALUES (:id, :admin)"),
                           {"id": row_id, "admin": admin_id})

    def ok(row_id):
        insert(int(row_id))
        return jsonify({"code": 0, "message": "success", "data": None})

    def refused(row_id):
        insert(int(row_id))
        raise ApiError(codes.CONFLICT)

    def dangling(row_id):
        insert(int(row_id), admin_id=999_999)
        return jsonify({"code": 0, "message": "success", "data": None})

    for name, view in (("ok", ok), ("refused", refused), ("dangling", dangling)):
        app.add_url_rule(f"/_probe/{name}/<row_id>", name, view, methods=["POST"])

    def stored() -> list[int]:
        with app.app_context():
            rows = db.session.execute(text("SELECT id FROM uow_probe ORDER BY id")).scalars()
            return list(rows)

    yield stored
    with app.app_context():
        db.session.execute(text("DROP TABLE uow_probe"))
        db.session.commit()


def test_a_successful_request_is_kept(client, probe):
    assert client.post("/_probe/ok/1").status_code == 200
    assert probe() == [1]


def test_an_error_answer_keeps_nothing_the_view_wrote(client, probe):
    assert_error(client.post("/_probe/refused/2"), 409, "conflict")
    assert probe() == []


def test_a_commit_the_database_refuses_is_answered_as_an_error(client, probe):
    response = client.post("/_probe/dangling/3")
    assert_error(response, 409, "already_exists")
    assert probe() == []
    # The session is usable again: the next request is kept as usual.
    assert client.post("/_probe/ok/4").status_code == 200
    assert probe() == [4]


def test_a_wrong_password_still_counts_towards_the_login_throttle(app, client):
    from tests.conftest import make_admin_user

    make_admin_user(app)
    for _ in range(5):
        response = client.post("/api/v1/auth/login", json={"username": "admin",
                                                           "password": "wrong-password"})
        assert_error(response, 401, "invalid_login")
    assert_error(client.post("/api/v1/auth/login",
                             json={"username": "admin", "password": "wrong-password"}),
                 429, "too_many_attempts")
