"""Paging, the same for every admin list.

Every list takes ``limit`` + ``offset`` (as the seed's sync-log example does) and
``page`` + ``page_size``; ``limit`` and ``page_size`` are the same thing. Every list
answers ``{items, total, page, page_size, limit, offset}``.
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, ValidationError, post_load
from sqlalchemy import func

from shared.schemas import QueryInt

from .extensions import db

MAX_PAGE_SIZE = 200


class PagedQuerySchema(Schema):
    """Query fields of a list; subclasses set ``default_page_size`` and add filters."""

    class Meta:
        unknown = RAISE

    default_page_size = 20

    page = QueryInt(minimum=1, maximum=1_000_000, load_default=None)
    page_size = QueryInt(minimum=1, maximum=MAX_PAGE_SIZE, load_default=None)
    limit = QueryInt(minimum=1, maximum=MAX_PAGE_SIZE, load_default=None)
    offset = QueryInt(minimum=0, maximum=100_000_000, load_default=None)

    @post_load
    def _resolve_window(self, data, **kwargs):
        size, limit = data.get("page_size"), data.get("limit")
        if size is not None and limit is not None and size != limit:
            raise ValidationError("limit and page_size are the same setting: give one.",
                                  "limit")
        size = size or limit or self.default_page_size
        page, offset = data.get("page"), data.get("offset")
        if page is not None and offset is not None and offset != (page - 1) * size:
            raise ValidationError("Give page or offset, not both.", "offset")
        if offset is None:
            offset = ((page or 1) - 1) * size
        data.update(page=offset // size + 1, page_size=size, limit=size, offset=offset)
        return data


def page_body(items: list, total: int, query: dict) -> dict:
    """The one page shape every list answers with."""
    return {"items": items, "total": total, "page": query["page"],
            "page_size": query["page_size"], "limit": query["limit"], "offset": query["offset"]}


def fetch_page(model, conditions, order_by, window: dict) -> tuple[list, int]:
    """The rows of ``model`` matching ``conditions`` in ``window`` (limit, offset), and how
    many match in all."""
    total = db.session.execute(
        db.select(func.count()).select_from(model).where(*conditions)).scalar_one()
    rows = db.session.execute(
        db.select(model).where(*conditions).order_by(*order_by)
        .limit(window["limit"]).offset(window["offset"])).scalars().all()
    return list(rows), total
