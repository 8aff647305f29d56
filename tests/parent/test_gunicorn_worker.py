"""When the buffering worker hands a request to a thread (issue 8 item 5)."""

import pytest

from parent.gunicorn_worker import MAX_BUFFERED_BODY, MAX_HEAD, request_is_buffered

HEAD = b"POST /x HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("data, ready", [
    (b"GET /healthz HTTP/1.1\r\nHost: h\r\n", False),  # head not finished: keep reading
    (b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n", True),
    (HEAD + b"Content-Length: 5\r\n\r\nabc", False),  # body not in yet
    (HEAD + b"content-length: 5\r\n\r\nabcde", True),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n", True),  # chunked: a thread reads it
    (HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n", True),  # client waits
    (HEAD + f"Content-Length: {10 * MAX_BUFFERED_BODY}\r\n\r\n".encode()
     + b"a" * MAX_BUFFERED_BODY, True),  # a big body: buffered up to the cap only
    (b"GET /" + b"a" * MAX_HEAD, True),  # an over-long head: gunicorn refuses it
])
def test_a_request_is_handed_on_once_it_is_in(data, ready):
    assert request_is_buffered(data) is ready


def test_a_body_whose_length_is_not_the_last_header_is_waited_for():
    """Content-Length before another header was missed, and the body read by a thread."""
    assert request_is_buffered(HEAD + b"Content-Length: 5\r\nX-A: b\r\n\r\nabc") is False
    assert request_is_buffered(HEAD + b"Content-Length: 5\r\nX-A: b\r\n\r\nabcde") is True
