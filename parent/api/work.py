"""Work distribution: node claim/lease/article routes and the admin dispatch."""

from flask import Blueprint, g, make_response, request

from shared import paths
from shared.lease_schemas import (
    ArticleBatchSchema, ArticleSchema, ClaimSchema, CompleteSchema, FailSchema,
)
from shared import errors as codes

from ..auth import admin_required, node_required
from ..clock import now
from ..services import (
    articles, claim_pacing, leasing, node_sources, scheduling, wechat, work_signal,
)
from ..services.work_signal import WORK_TOKEN
from ..work_view_schemas import DispatchSchema
from . import werss_shapes
from .request_response import idempotent, load_body, respond
from ..openapi import OBJECT, describe

bp = Blueprint("work", __name__)


@bp.post(paths.CLAIM)
@describe("Claim leases of due work", body=ClaimSchema,
          body_required=False, data=OBJECT,
          empty={204: "No work and no commands now: come back after Retry-After seconds, "
                      "or at once with its X-Work-Token"},
          description="Answered by the app at once. Served by `werss-parent serve`, answers "
                      "carry `X-Work-Token`; a claim that sends it back with `Prefer: wait=N` "
                      "is held by the worker until work appears (then answered as usual) or "
                      "N (at most 50) seconds pass (then 204, the same token, `Retry-After: 0`"
                      ", `Preference-Applied`). A worker whose app is backed up with claims "
                      "that find nothing answers a claim it would have to serve now itself: "
                      "204, `Retry-After` of 5-25 s "
                      "and a token due then (park the next claim on it). "
                      "docs/PROTOCOL.md, POST /claim.")
@node_required
@idempotent
def claim():
    # ``wait`` in the body is still accepted but the app never waits: an empty claim is
    # answered at once with the moment to come back (parent/services/claim_pacing.py), and
    # the worker parks the next one off the app (parent/gunicorn_worker.py).
    values = load_body(ClaimSchema(), required=False)
    # Known before the candidate query: work that appears after this moves the generation.
    generation = _generation_before_claim()
    leases = leasing.claim(g.node, values["max"])
    commands = wechat.deliver_commands(g.node)  # e.g. an admin asked for a WeChat login
    if not leases and not commands:
        response = make_response("", 204)
        retry_after, wait = claim_pacing.retry_after_and_due(g.node, generation)
        response.headers["Retry-After"] = str(retry_after)
    else:
        wait = 0
        response = respond({"leases": werss_shapes.leases(leases),
                            **({"commands": commands} if commands else {})})
    if generation is not None:
        response.headers[WORK_TOKEN] = work_signal.token(generation, int(now().timestamp()) + wait)
        # The worker answers parked claims of nodes like this one with this answer.
        request.environ["werss.claim_class"] = _claim_class(g.node)
    return response


def _claim_class(node) -> str:
    """What decides which pending work a node may take (labels, sources, WeChat now)."""
    return "|".join((",".join(sorted(set(node.labels or []))),
                     "rss" if node_sources.runs_rss(node) else "",
                     "wechat" if node_sources.wechat_ready(node, now()) else ""))


def _generation_before_claim() -> int | None:
    """The work generation for this claim's token, None where claims are not parked.

    The parking worker passes the newest generation it has seen (its watcher reads it after
    the commit that moved it), which costs no query; a lagging one is only conservative:
    the work it misses is committed, so the candidate query finds it, and the token's older
    generation sends the next claim to the app rather than parking it.
    """
    if not _parks():
        return None
    known = request.environ.get("werss.generation")
    return known if isinstance(known, int) else work_signal.current()


def _parks() -> bool:
    """Whether this claim came through a worker that parks claims, on the native prefix."""
    return bool(request.environ.get("werss.parking")) and request.path.startswith(
        paths.CASCADE_PREFIX + "/")


@bp.post(paths.CLAIM_CANCEL)
@describe("End this node's waiting claim now (a stopping child calls it)", data=OBJECT)
@node_required
def cancel_claim_wait():
    """Kept for children that end a long-poll when they stop (claims no longer wait)."""
    return respond(leasing.cancel_claim_wait(g.node), "等待中的认领已结束")


@bp.post(paths.as_rule(paths.LEASE_RENEW))
@describe("Extend a lease", data=OBJECT, errors=(codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
def renew(lease_id):
    return respond(leasing.renew(g.node, lease_id))


@bp.post(paths.as_rule(paths.LEASE_COMPLETE))
@describe("Complete a lease with its per-feed results", body=CompleteSchema, body_required=False,
          data=OBJECT, errors=(codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def complete(lease_id):
    values = load_body(CompleteSchema(), required=False)
    outcome = leasing.complete(g.node, lease_id, values["results"])
    wechat.mark_feeds_invalid(g.node, values["results"])
    return respond(outcome)


@bp.post(paths.as_rule(paths.LEASE_FAIL))
@describe("Fail a lease (retryable or not, or hand it back)", body=FailSchema, body_required=False,
          data=OBJECT, errors=(codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def fail(lease_id):
    values = load_body(FailSchema(), required=False)
    return respond(leasing.fail(g.node, lease_id, values["error"], values["retryable"],
                                values["rate_limited_until"], values["release"]))


@bp.post(paths.ARTICLES)
@describe("Upload collected articles", body=ArticleBatchSchema, data=OBJECT,
          errors=(codes.NOT_FOUND, codes.FORBIDDEN, codes.LEASE_LOST))
@node_required
@idempotent
def upload_articles():
    values = load_body(ArticleBatchSchema())
    return respond(articles.ingest_batch(g.node, values["articles"], ArticleSchema(),
                                         values["lease_id"]))


@bp.post("/dispatch")
@describe("Run a message task now", body=DispatchSchema, data=OBJECT, status=201,
          errors=(codes.NOT_FOUND, codes.CONFLICT,))
@admin_required
def dispatch():
    values = load_body(DispatchSchema())
    return respond(scheduling.dispatch_task(values["task_id"]), "任务已下发", status=201)
