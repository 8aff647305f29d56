"""Bulk import of feeds: JSON lists, OPML bodies and OPML uploads."""

from __future__ import annotations

import io

import pytest

from shared.envelope import CURSOR_HEADER
from tests.helpers import assert_error

IMPORT = "/api/v1/feeds/import"
FEEDS = "/api/v1/feeds"

GOOD_ROWS = [
    {"faker_id": "MzA5MjE4NjA2Nw==", "mp_name": "人民日报"},
    {"source_type": "rss", "source_url": "https://blog.example.com/feed.xml", "mp_name": "Blog"},
]

OPML = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Tech">
      <outline type="rss" text="Hacker News" title="Hacker News"
               xmlUrl="https://news.ycombinator.com/rss" htmlUrl="https://news.ycombinator.com/"/>
      <outline type="rss" text="LWN" xmlUrl="https://lwn.net/headlines/rss"
               description="Linux news"/>
    </outline>
    <outline type="rss" text="Same HN again" xmlUrl="https://news.ycombinator.com/rss"/>
    <outline type="rss" text="Not a web feed" xmlUrl="gopher://example.org/feed"/>
    <outline text="A folder without a feed"/>
  </body>
</opml>
"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<opml version="2.0"><body>
  <outline text="&lol4;" xmlUrl="https://laughs.example/rss"/>
</body></opml>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE opml [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<opml version="2.0"><body>
  <outline text="&secret;" xmlUrl="https://xxe.example/rss"/>
</body></opml>
"""


def feed_ids(admin) -> list[str]:
    data = admin.get(FEEDS, query_string={"page_size": 200}).get_json()["data"]
    return sorted(f["id"] for f in data["items"])


def imported(response) -> dict:
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


@pytest.mark.parametrize("wrap", [
    pytest.param(lambda rows: rows, id="bare-list"),
    pytest.param(lambda rows: {"feeds": rows}, id="feeds-object"),
])
def test_json_import_creates_every_good_row(admin, wrap):
    report = imported(admin.post(IMPORT, json=wrap(GOOD_ROWS)))

    assert report["created"] == 2
    assert report["skipped"] == [] and report["rejected"] == []
    assert report["total_rows"] == 2
    assert sorted(report["created_ids"]) == feed_ids(admin)
    assert "MP_WXS_3092186067" in report["created_ids"]


def test_json_import_reports_bad_rows_by_row_number_and_field(admin):
    rows = [
        GOOD_ROWS[0],
        {"source_type": "rss", "mp_name": "no url"},
        "not an object",
        {"faker_id": "Zm9v", "mp_name": "bad status", "status": 9},
        GOOD_ROWS[1],
    ]

    report = imported(admin.post(IMPORT, json=rows))

    assert report["created"] == 2
    rejected = {r["row"]: r for r in report["rejected"]}
    assert set(rejected) == {2, 3, 4}
    assert "source_url" in rejected[2]["errors"]
    assert "status" in rejected[4]["errors"]
    assert rejected[3]["reason"]
    assert len(feed_ids(admin)) == 2


def test_json_import_skips_duplicates_in_the_batch_and_in_the_database(admin):
    assert admin.post(FEEDS, json={"faker_id": "MzA5MjE4NjA2Nw==", "mp_name": "existing"}
                      ).status_code == 201
    rows = [
        {"faker_id": "MzA5MjE4NjA2Nw==", "mp_name": "already in the database"},
        {"source_type": "rss", "source_url": "https://a.example/rss", "mp_name": "first"},
        {"source_type": "rss", "source_url": "https://a.example/rss", "mp_name": "again"},
        {"id": "MP_WXS_9", "faker_id": "OQ==", "mp_name": "nine"},
        {"id": "MP_WXS_9", "faker_id": "OTk=", "mp_name": "same id"},
    ]

    report = imported(admin.post(IMPORT, json=rows))

    assert report["created"] == 2
    skipped = {s["row"]: s for s in report["skipped"]}
    assert set(skipped) == {1, 3, 5}
    assert "MP_WXS_3092186067" in skipped[1]["reason"]
    rss_id = next(i for i in report["created_ids"] if i.startswith("RSS_"))
    assert skipped[3]["id"] == rss_id and rss_id in skipped[3]["reason"]
    assert "MP_WXS_9" in skipped[5]["reason"]
    assert feed_ids(admin) == sorted(["MP_WXS_3092186067", "MP_WXS_9", rss_id])
    # The kept row of a duplicate pair is the first one.
    names = {f["mp_name"] for f in admin.get(FEEDS).get_json()["data"]["items"]}
    assert names == {"existing", "first", "nine"}


def test_import_of_rows_without_identities_does_not_collide(admin):
    rows = [{"id": f"MP_WXS_{i}", "faker_id": "", "source_url": "", "mp_name": f"n{i}"}
            for i in range(3)]

    report = imported(admin.post(IMPORT, json={"feeds": rows}))

    assert report["created"] == 3 and report["skipped"] == [] and report["rejected"] == []


def test_importing_the_same_file_twice_creates_nothing_the_second_time(admin):
    imported(admin.post(IMPORT, json=GOOD_ROWS))

    again = imported(admin.post(IMPORT, json=GOOD_ROWS))

    assert again["created"] == 0
    assert [s["row"] for s in again["skipped"]] == [1, 2]
    assert len(feed_ids(admin)) == 2


def test_imported_feeds_reach_nodes(admin, node_caller):
    cursor = node_caller.get("/feeds").headers[CURSOR_HEADER]

    report = imported(admin.post(IMPORT, json=GOOD_ROWS))

    data = node_caller.get("/feeds/changes", params={"since": cursor}).get_json()["data"]
    assert sorted(f["id"] for f in data["items"]) == sorted(report["created_ids"])


@pytest.mark.parametrize("payload", [
    pytest.param({"rows": []}, id="wrong-key"),
    pytest.param({"feeds": "x"}, id="feeds-not-a-list"),
    pytest.param("just a string", id="string"),
])
def test_json_import_needs_a_list(admin, payload):
    body = assert_error(admin.post(IMPORT, json=payload), 422, "validation_failed")
    assert "feeds" in body["details"]


def test_json_import_with_malformed_json_is_400(admin):
    response = admin.post(IMPORT, data=b"[{", headers={"Content-Type": "application/json"})

    assert_error(response, 400, "malformed_json")


def test_empty_import_creates_nothing(admin):
    report = imported(admin.post(IMPORT, json=[]))

    assert report["created"] == 0 and report["total_rows"] == 0


@pytest.mark.parametrize("content_type", ["text/x-opml", "text/xml; charset=utf-8",
                                          "application/xml"])
def test_opml_body_imports_rss_outlines(admin, content_type):
    report = imported(admin.post(IMPORT, data=OPML, headers={"Content-Type": content_type}))

    assert report["created"] == 2
    assert report["total_rows"] == 4  # outlines that carry an xmlUrl
    assert [s["row"] for s in report["skipped"]] == [3]
    assert [r["row"] for r in report["rejected"]] == [4]
    assert "source_url" in report["rejected"][0]["errors"]
    feeds = {f["source_url"]: f for f in admin.get(FEEDS).get_json()["data"]["items"]}
    assert set(feeds) == {"https://news.ycombinator.com/rss", "https://lwn.net/headlines/rss"}
    assert feeds["https://news.ycombinator.com/rss"]["mp_name"] == "Hacker News"
    assert feeds["https://lwn.net/headlines/rss"]["mp_intro"] == "Linux news"
    assert all(f["source_type"] == "rss" for f in feeds.values())


def test_opml_upload_imports_rss_outlines(admin):
    response = admin.post(IMPORT, data={"file": (io.BytesIO(OPML), "feeds.opml")},
                          content_type="multipart/form-data")

    report = imported(response)
    assert report["created"] == 2
    assert len(feed_ids(admin)) == 2


def test_upload_without_a_file_field_is_422(admin):
    response = admin.post(IMPORT, data={"other": (io.BytesIO(OPML), "feeds.opml")},
                          content_type="multipart/form-data")

    body = assert_error(response, 422, "validation_failed")
    assert "file" in body["details"]
    assert feed_ids(admin) == []


@pytest.mark.parametrize("document", [
    pytest.param(BILLION_LAUGHS, id="billion-laughs"),
    pytest.param(EXTERNAL_ENTITY, id="external-entity"),
])
@pytest.mark.parametrize("as_upload", [False, True], ids=["body", "upload"])
def test_hostile_xml_is_refused_and_nothing_written(admin, document, as_upload):
    if as_upload:
        response = admin.post(IMPORT, data={"file": (io.BytesIO(document), "evil.opml")},
                              content_type="multipart/form-data")
    else:
        response = admin.post(IMPORT, data=document, headers={"Content-Type": "text/x-opml"})

    body = response.get_json()
    assert 400 <= response.status_code < 500, body
    assert body["code"] == response.status_code and body["error"] and body["request_id"]
    assert "root:" not in response.get_data(as_text=True)  # nothing of /etc/passwd
    assert feed_ids(admin) == []


@pytest.mark.parametrize("document", [
    pytest.param(b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', id="rss-not-opml"),
    pytest.param(b"<opml><body><outline", id="truncated"),
    pytest.param(b"\x89PNG\r\n\x1a\n", id="binary"),
    pytest.param(b"", id="empty"),
])
def test_non_opml_document_is_422(admin, document):
    response = admin.post(IMPORT, data=document, headers={"Content-Type": "text/x-opml"})

    body = assert_error(response, 422, "validation_failed")
    assert "file" in body["details"]
    assert feed_ids(admin) == []


def test_opml_import_needs_an_admin(client, admin):
    response = client.post(IMPORT, data=OPML, headers={"Content-Type": "text/x-opml"})

    assert_error(response, 401, "authentication_required")
    assert feed_ids(admin) == []


def test_import_of_too_many_rows_is_refused_whole(admin):
    rows = [{"id": f"MP_WXS_{i}", "mp_name": f"n{i}"} for i in range(5001)]

    assert_error(admin.post(IMPORT, json=rows), 413, "payload_too_large")
    assert feed_ids(admin) == []


def test_opml_with_a_doctype_is_refused(admin):
    document = (b'<?xml version="1.0"?><!DOCTYPE opml SYSTEM "http://127.0.0.1:9/x.dtd">'
                b'<opml version="2.0"><body><outline text="a" xmlUrl="http://a.example/f.xml"/>'
                b'</body></opml>')
    response = admin.post("/api/v1/feeds/import", data=document,
                          headers={"Content-Type": "text/x-opml"})
    assert response.status_code == 422 and response.get_json()["error"] == "validation_failed"
    assert admin.get("/api/v1/feeds").get_json()["data"]["total"] == 0


def test_a_big_import_writes_in_short_transactions(app, admin):
    """Issue 8 item 7: one 5,000-feed transaction held SQLite's write lock long enough that
    heartbeats of 30 nodes got 503 after waiting 30 s. Each transaction now writes at most
    IMPORT_CHUNK feeds, and the lock is free between them."""
    from sqlalchemy import event

    from parent.extensions import db
    from parent.services.feeds import IMPORT_CHUNK

    rows = [{"source_type": "rss", "source_url": f"https://big.example/{i}.xml",
             "mp_name": f"big {i}"} for i in range(2 * IMPORT_CHUNK + 100)]
    rows.append(dict(rows[0]))  # a duplicate of a row two chunks back is still caught
    per_transaction, current = [], [0]

    def count_inserts(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO FEEDS"):
            current[0] += len(parameters) if executemany else 1

    def close_transaction(conn):
        per_transaction.append(current[0])
        current[0] = 0

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count_inserts)
    event.listen(engine, "commit", close_transaction)
    try:
        response = admin.post(IMPORT, json=rows)
    finally:
        event.remove(engine, "before_cursor_execute", count_inserts)
        event.remove(engine, "commit", close_transaction)

    report = response.get_json()["data"]
    assert report["created"] == len(rows) - 1 and len(report["skipped"]) == 1
    assert sum(per_transaction) == len(rows) - 1
    assert max(per_transaction) <= IMPORT_CHUNK, per_transaction
    assert admin.get(FEEDS, query_string={"page_size": 1}).get_json()["data"]["total"] \
        == len(rows) - 1
