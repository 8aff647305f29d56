"""The OpenAPI description: served, complete, and true to what the routes answer."""

from __future__ import annotations

import pytest

from shared import errors as codes
from shared.paths import API_PREFIX, CASCADE_PREFIX, WX_CASCADE_PREFIX

from parent.openapi import undescribed_routes

OPENAPI = API_PREFIX + "/openapi.json"

# Endpoints left out of the description on purpose, each with the reason.
NOT_DESCRIBED = {
    "console.index": "the admin console's HTML page, not an API",
    "console.asset": "the console's static files",
    "docs.swagger_init": "Swagger UI's start-up script, a static asset",
    "docs.swagger_asset": "Swagger UI's own static files",
}


@pytest.fixture
def document(client):
    response = client.get(OPENAPI)
    assert response.status_code == 200
    return response.get_json()


def test_every_route_is_in_the_description(app, document):
    assert undescribed_routes(app, NOT_DESCRIBED) == []
    expected = {f"{rule.endpoint}_{method.lower()}".replace(".", "_")
                for rule in app.url_map.iter_rules() if rule.endpoint not in NOT_DESCRIBED
                for method in rule.methods - {"HEAD", "OPTIONS"}}
    described = {operation["operationId"] for operations in document["paths"].values()
                 for operation in operations.values()}
    assert described == expected
    assert len(expected) > 100  # both cascade prefixes are there


def test_a_route_without_a_description_is_reported(app):
    @app.get("/api/v1/undocumented")
    def undocumented():
        return "", 204

    assert undescribed_routes(app, NOT_DESCRIBED) == ["['GET'] /api/v1/undocumented"]


def test_description_is_openapi_3_1_and_served_without_credentials(document):
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "WeRSS Cascade"


def test_node_routes_are_described_under_both_prefixes_with_both_node_schemes(document):
    for prefix in (CASCADE_PREFIX, WX_CASCADE_PREFIX):
        heartbeat = document["paths"][prefix + "/heartbeat"]["post"]
        assert heartbeat["security"] == [{"nodeSigned": []}, {"nodePlain": []}]
        assert {"401", "403", "422"} <= set(heartbeat["responses"])
        assert any(p["name"] == "Idempotency-Key" for p in heartbeat["parameters"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["nodeSigned"]["description"].startswith("`AK-SK-HMAC-SHA256 ")
    assert schemes["nodePlain"]["description"].startswith("`AK-SK ")
    assert schemes["adminBearer"] == {**schemes["adminBearer"], "type": "http",
                                      "scheme": "bearer"}


def test_admin_routes_take_the_bearer_token_and_public_ones_nothing(document):
    assert document["paths"][API_PREFIX + "/feeds"]["get"]["security"] == [{"adminBearer": []}]
    assert document["paths"][API_PREFIX + "/auth/login"]["post"]["security"] == []
    assert document["paths"]["/healthz"]["get"]["security"] == []


def test_every_error_code_is_documented_with_its_status(document):
    responses = document["components"]["responses"]
    for error in codes.ALL.values():
        schema = responses[f"Error{error.status}"]["content"]["application/json"]["schema"]
        assert error.code in schema["allOf"][1]["properties"]["error"]["enum"]
        assert f"`{error.code}`" in responses[f"Error{error.status}"]["description"]


def test_success_answers_are_the_envelope_around_the_dump_schema(document):
    answer = document["paths"][API_PREFIX + "/feeds/{feed_id}"]["get"]["responses"]["200"]
    envelope = answer["content"]["application/json"]["schema"]
    assert envelope["required"] == ["code", "message", "data"]
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/FeedAdmin"}
    feed = document["components"]["schemas"]["FeedAdmin"]["properties"]
    assert {"last_run_status", "invalid_reason", "labels"} <= set(feed)


def test_swagger_ui_is_served_by_the_parent_with_no_third_party_origin(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "https://" not in html and "http://" not in html
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                  "swagger-ui.css", "init.js"):
        assert f"/api/docs/{asset}" in html
        response = client.get(f"/api/docs/{asset}")
        assert response.status_code == 200, asset
        assert response.get_data()
    assert OPENAPI in client.get("/api/docs/init.js").get_data(as_text=True)


def test_a_missing_swagger_asset_is_the_error_envelope(client):
    response = client.get("/api/docs/../../parent/auth.py")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"
