"""Error answers echo a bounded amount of what the client sent (issue 8 item 9)."""

from __future__ import annotations

from parent.api.request_response import MAX_FORM_BYTES


def test_an_unknown_field_name_is_echoed_shortened(client):
    key = "k" * 500_000
    response = client.post("/api/v1/auth/login",
                           json={"username": "admin", "password": "x", key: 1})

    assert response.status_code == 422
    assert len(response.data) < 2048
    (echoed,) = [name for name in response.get_json()["details"] if name.startswith("kkk")]
    assert echoed.endswith("(500000 characters)")


def test_many_unknown_fields_are_cut_to_a_bounded_list(client):
    body = {"username": "admin", "password": "x", **{f"f{i}": i for i in range(5000)}}
    response = client.post("/api/v1/auth/login", json=body)

    assert response.status_code == 422
    details = response.get_json()["details"]
    assert len(details) <= 51 and "more not shown" in details["_truncated"][0]


def test_a_form_login_larger_than_the_form_cap_is_413(client):
    body = b"username=admin&password=x&pad=" + b"a" * MAX_FORM_BYTES
    response = client.post("/api/v1/auth/login", data=body,
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert str(MAX_FORM_BYTES) in response.get_json()["message"]

