"""Small portable SQL helpers for the two supported backends."""

from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db


def dialect_name() -> str:
    return db.session.get_bind().dialect.name


def insert_ignoring_conflicts(model, index_elements: list[str]):
    """INSERT ... ON CONFLICT (cols) DO NOTHING, on PostgreSQL and SQLite alike."""
    module = postgresql if dialect_name() == "postgresql" else sqlite
    return module.insert(model).on_conflict_do_nothing(index_elements=index_elements)
