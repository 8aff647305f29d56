"""Which route bench.fleet counts a claim answer under: the app's, or the worker's own."""

from bench.fleet import DEFERRED, PARKED_APP, PARKED_WORKER, _claim_route
from parent.gunicorn_worker import come_back_answer, no_change_answer


def _headers(raw: bytes) -> dict:
    lines = raw.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines if line)}


def test_the_workers_own_answers_are_not_counted_as_the_apps():
    """A "come back later" answer once counted as a claim the app answered: an overloaded
    run then seemed to spend the app on claims it never saw."""
    deferred = _headers(come_back_answer(12, token=b"7.1765000000"))
    no_change = _headers(no_change_answer(b"7.1765000000", 50))
    for sent in ("claim", PARKED_APP):
        assert _claim_route(sent)(deferred) == DEFERRED
        assert _claim_route(sent)(no_change) == PARKED_WORKER
        assert _claim_route(sent)({"x-request-id": "abc", "retry-after": "25"}) == sent
