"""Unauthenticated /healthz and /metrics."""

from tests.helpers import NodeCaller


def test_healthz_reports_database_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["data"]["database"] == "ok"
    assert response.headers["X-Request-ID"]


def test_healthz_is_503_in_the_envelope_when_the_database_is_gone(tmp_path):
    from parent import create_app

    app = create_app({"db": f"sqlite:///{tmp_path}/missing-dir/../nope/x.db",
                      "secret_key": "k" * 32}, environ={})
    # Make the file unopenable: a directory where the database file should be (the app
    # created the file, 0600, when it started).
    (tmp_path / "nope" / "x.db").unlink(missing_ok=True)
    (tmp_path / "nope" / "x.db").mkdir(parents=True)
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 503 and body["error"] == "service_unavailable"


def test_metrics_show_nodes_feeds_and_requests(admin, client, node, clock):
    NodeCaller(client, node, clock=clock).post("/heartbeat", json={})
    admin.post("/api/v1/feeds", json={"mp_name": "m", "source_type": "rss",
                                      "source_url": "http://127.0.0.1:1/m.xml"})
    response = client.get("/metrics")
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    assert 'werss_nodes{status="online"} 1.0' in text
    assert "werss_feeds 1.0" in text
    assert 'werss_http_requests_total{method="POST",route="/api/v1/cascade/heartbeat",status="200"}' in text
    assert node.api_secret not in text and node.api_key not in text


def test_made_up_methods_and_routes_do_not_grow_metrics(client):
    """Issue 8 item 6: each invented method used to become a new series."""
    for i in range(50):
        client.open("/healthz", method=f"BREW{i}")
        client.get(f"/no/such/route/{i}")
    text = client.get("/metrics").get_data(as_text=True)

    assert "BREW" not in text
    assert text.count('werss_http_requests_total{method="OTHER"') == 1
    assert "/no/such/route" not in text
    assert 'route="unmatched"' in text


def test_livez_answers_without_the_database(tmp_path):
    from parent import create_app

    app = create_app({"db": f"sqlite:///{tmp_path}/nope/x.db", "secret_key": "k" * 32},
                     environ={})
    (tmp_path / "nope" / "x.db").unlink(missing_ok=True)
    (tmp_path / "nope" / "x.db").mkdir(parents=True)  # the database cannot be opened
    response = app.test_client().get("/livez")
    assert response.status_code == 200 and response.get_json()["data"]["status"] == "ok"
    assert app.test_client().get("/readyz").status_code == 503


def test_readyz_is_ready_on_a_migrated_database(client):
    from alembic.script import ScriptDirectory

    from parent import MIGRATIONS_DIR

    response = client.get("/readyz")
    data = response.get_json()["data"]
    assert response.status_code == 200
    assert data["migrations"] == "current" and data["database"] == "ok"
    assert data["revision"] == ScriptDirectory(MIGRATIONS_DIR).get_current_head()


def test_readyz_is_503_while_the_schema_is_behind_the_code(app, client):
    from sqlalchemy import text

    from parent.extensions import db

    def set_revision(revision):
        with app.app_context():
            db.session.execute(text("UPDATE alembic_version SET version_num = :r"),
                               {"r": revision})
            db.session.commit()

    with app.app_context():
        current = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    set_revision("0006")
    try:
        response = client.get("/readyz")
        body = response.get_json()
        assert response.status_code == 503 and body["error"] == "service_unavailable"
        assert body["details"]["migrations"] == "not current"
        assert body["details"]["database_revision"] == ["0006"]
        assert client.get("/healthz").status_code == 200, "the database itself still answers"
    finally:
        set_revision(current)  # PostgreSQL's test database is shared by the session


def test_readyz_is_503_on_a_database_never_migrated(tmp_path):
    from parent import create_app

    app = create_app({"db": f"sqlite:///{tmp_path}/empty.db", "secret_key": "k" * 32},
                     environ={})
    body = app.test_client().get("/readyz").get_json()
    assert body["code"] == 503 and body["details"]["database_revision"] == []
