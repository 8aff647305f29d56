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
