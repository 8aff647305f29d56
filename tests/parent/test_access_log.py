"""The access line `werss-parent serve` writes: the same as gunicorn's own logger writes."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from gunicorn.config import Config
from gunicorn.glogging import Logger

from parent.gunicorn_app import ACCESS_LOG_FORMAT, AccessLogger, gunicorn_options


def _config(**overrides) -> Config:
    cfg = Config()
    for key, value in {**gunicorn_options("127.0.0.1:0", 1, 1), **overrides}.items():
        if key in cfg.settings:
            cfg.set(key, value)
    return cfg


def _line(logger: Logger, cfg: Config, resp, req, environ, took) -> str:
    return cfg.access_log_format % logger.atoms_wrapper_class(
        logger.atoms(resp, req, environ, took))


ENVIRON = {"REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "POST", "SERVER_PROTOCOL": "HTTP/1.1",
           "RAW_URI": "/api/v1/cascade/heartbeat?x=1", "PATH_INFO": "/api/v1/cascade/heartbeat",
           "QUERY_STRING": "x=1", "HTTP_AUTHORIZATION": "AK-SK-HMAC-SHA256 k:s",
           "HTTP_USER_AGENT": "werss-child"}
REQUEST = SimpleNamespace(headers=[("AUTHORIZATION", "AK-SK-HMAC-SHA256 k:s"),
                                   ("USER-AGENT", "werss-child")])


@pytest.mark.parametrize("status, headers, sent", [
    ("200 OK", [("Content-Type", "application/json"), ("X-Request-ID", "rid-1")], 61),
    ("304 NOT MODIFIED", [("x-request-id", "rid-2"), ("ETag", '"7"')], 0),
    ("204 NO CONTENT", [("Retry-After", "30")], None),  # no request id: "-"
])
def test_the_access_line_is_the_one_gunicorn_writes(status, headers, sent):
    cfg = _config()
    assert cfg.logger_class is AccessLogger and cfg.access_log_format == ACCESS_LOG_FORMAT
    resp = SimpleNamespace(status=status, headers=headers, sent=sent)
    took = timedelta(seconds=1, microseconds=234_567)
    ours = _line(AccessLogger(cfg), cfg, resp, REQUEST, ENVIRON, took)
    assert ours == _line(Logger(cfg), cfg, resp, REQUEST, ENVIRON, took)
    assert ours.startswith('10.0.0.7 pid=<') and '"POST /api/v1/cascade/heartbeat?x=1 HTTP/1.1"' in ours
    assert ours.endswith(f" {status.split()[0]} {sent} 1234ms rid="
                         + next((v for k, v in headers if k.lower() == "x-request-id"), "-"))


def test_another_format_gets_every_atom_gunicorn_knows():
    cfg = _config(access_log_format='%(a)s %({etag}o)s %(q)s')
    resp = SimpleNamespace(status="304 NOT MODIFIED", headers=[("ETag", '"7"')], sent=0)
    line = _line(AccessLogger(cfg), cfg, resp, REQUEST, ENVIRON, timedelta(0))
    assert line == 'werss-child \\"7\\" x=1'  # gunicorn escapes quotes in atoms
