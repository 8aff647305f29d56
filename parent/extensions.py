"""Flask extensions, created unbound and attached in create_app()."""

from typing import TYPE_CHECKING, Any, cast

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import CursorResult, MetaData, Result
from sqlalchemy.orm import DeclarativeBase

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

if TYPE_CHECKING:
    # db.Model is built at run time (Base plus Flask-SQLAlchemy's mixins), which mypy
    # cannot follow; for types it is the declarative base. Models subclass this name.
    class Model(Base):
        __abstract__ = True
else:
    Model = db.Model
migrate = Migrate()


def rowcount(result: Result[Any]) -> int:
    """Rows an executed UPDATE or DELETE matched (the guarded updates' "who won")."""
    # Session.execute is typed as returning Result; for DML it is a CursorResult.
    return cast(CursorResult[Any], result).rowcount
