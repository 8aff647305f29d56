"""Known-answer vectors for AK-SK-HMAC-SHA256 (also in docs/PROTOCOL.md).

The expected signatures were computed independently with `openssl dgst -sha256 -hmac`,
not with this code, so a bug here cannot agree with itself.
"""

import pytest

from shared import signing

SECRET = "CS0123456789abcdefghijklmnopqrstuv"
KEY = "CN0123456789abcdefghijklmnopqrstuv"
TIMESTAMP = 1767225600
NONCE = "n0nce-0123456789AB"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

VECTORS = [
    pytest.param(
        "GET", "/api/v1/cascade/feeds", "", b"", "", EMPTY,
        "b9c93146892b9bf8523900321952acb64555f686780212ecd5aeb4fa4e4664be", id="get-no-query",
    ),
    pytest.param(
        "POST", "/api/v1/cascade/heartbeat", "", b'{"version":"0.1.0","running":0}', "",
        "c2d166417bc17e5a1ef21e2547d6dbe4391e8fe6da592c975e2054662cf11193",
        "d291551b81c5cdee8ef3165ec301a59c7813251f287bc72c856ff36e8c4edd9f", id="post-json",
    ),
    pytest.param(
        "GET", "/api/v1/cascade/feeds/changes", "since=42&limit=100&q=a+b&x=%E4%B8%AD&empty=",
        b"", "empty=&limit=100&q=a%20b&since=42&x=%E4%B8%AD", EMPTY,
        "4405f73f9a42df4c23ef8f716be46d063b47e38bd1e6c81b5c46eb51f0dc0a40", id="query-canonical",
    ),
    pytest.param(
        "POST", "/api/v1/wx/cascade/report-result", "",
        '{"task_id":"任务-1","results":[]}'.encode("utf-8"), "",
        "63e4ded061959097c903be8d51cdbe8abff1dba2691d023fa42a7cb62ed52716",
        "7e3e618e3ea3cd6fcee8f195e0bb35f92ba2856112f5d9a967da4d662b66a40a", id="utf8-body-wx",
    ),
]


@pytest.mark.parametrize("method,path,query,body,canonical,digest,signature", VECTORS)
def test_known_answer_vectors(method, path, query, body, canonical, digest, signature):
    expected_text = "\n".join(
        ["AK-SK-HMAC-SHA256", method, path, canonical, str(TIMESTAMP), NONCE, digest])
    assert signing.string_to_sign(method, path, query, TIMESTAMP, NONCE, body) == expected_text
    assert signing.compute_signature(SECRET, method, path, query, TIMESTAMP, NONCE, body) == signature


@pytest.mark.parametrize("query,canonical", [
    ("", ""),
    ("b=2&a=1", "a=1&b=2"),
    ("a=2&a=1", "a=1&a=2"),
    ("a", "a="),
    ("a=%7e&b=~", "a=~&b=~"),
    ("k=%2F%3F%26", "k=%2F%3F%26"),
    ("sp=a%20b&plus=a+b", "plus=a%20b&sp=a%20b"),
])
def test_canonical_query(query, canonical):
    assert signing.canonical_query(query) == canonical


def test_header_round_trip_verifies():
    header = signing.signed_authorization(KEY, SECRET, "POST", "/p", "a=1", b"{}",
                                          timestamp=TIMESTAMP, nonce=NONCE)
    parsed = signing.parse_authorization(header)
    assert parsed == signing.SignedCredentials(KEY, TIMESTAMP, NONCE, parsed.signature)
    assert signing.verify_signature(SECRET, parsed, "POST", "/p", "a=1", b"{}")
    assert not signing.verify_signature(SECRET, parsed, "POST", "/p", "a=2", b"{}")
    assert not signing.verify_signature(SECRET + "x", parsed, "POST", "/p", "a=1", b"{}")
    assert not signing.verify_signature(SECRET, parsed, "POST", "/p", "a=1", b"{ }")


@pytest.mark.parametrize("header", [
    "AK-SK onlykey",
    "AK-SK :secret",
    "AK-SK key:",
    "AK-SK-HMAC-SHA256 Credential=k, Timestamp=1, Nonce=short, Signature=" + "0" * 64,
    "AK-SK-HMAC-SHA256 Credential=k, Timestamp=x, Nonce=" + "a" * 16 + ", Signature=" + "0" * 64,
    "AK-SK-HMAC-SHA256 Credential=k, Timestamp=1, Nonce=" + "a" * 16 + ", Signature=ABC",
    "AK-SK-HMAC-SHA256 Credential=k, Timestamp=1, Nonce=" + "a" * 16,
    "AK-SK-HMAC-SHA256 Credential=k, Credential=k, Timestamp=1, Nonce=" + "a" * 16
    + ", Signature=" + "0" * 64,
    "AK-SK-HMAC-SHA256 garbage",
])
def test_malformed_headers_are_rejected(header):
    with pytest.raises(signing.AuthorizationFormatError):
        signing.parse_authorization(header)


def test_other_schemes_are_not_ak_sk():
    assert signing.parse_authorization("Bearer abc") is None


def test_generated_credentials_have_the_contract_shape():
    seen = set()
    for _ in range(50):
        api_key, api_secret = signing.generate_credentials()
        assert api_key.startswith("CN") and len(api_key) == 34 and api_key[2:].isalnum()
        assert api_secret.startswith("CS") and len(api_secret) == 34 and api_secret[2:].isalnum()
        seen.add(api_key)
    assert len(seen) == 50
