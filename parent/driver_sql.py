"""A fixed statement run on the driver's cursor: the node lane's read and nonce write.

SQLAlchemy Core's work per statement (cache key, execution context, result metadata) cost
more than the statements the node fast lane runs for a steady heartbeat or an unchanged
pull. In a loop here a Core read of the node took 82 us of CPU on a held connection where
the driver's cursor took 11 (SQLite), and 263 where it took 111 (PostgreSQL)
(bench/README.md, "One connection and the driver's cursor").

A ``DriverStatement`` is Core's own compilation of the statement for the engine's dialect,
made once; each run binds the parameters with the types' own bind processors (and the
values Core binds itself, a literal in a subquery), and converts the row with the
columns' own result processors, so the values and their types are Core's. It is
announced to the engine's ``before_cursor_execute`` and ``after_cursor_execute``
listeners as Core announces a statement, with no execution context: what counts the SQL
(the write-budget tests, the bench) sees it, and parent/write_queue.py gives a write its
turn, as a statement that commits itself (``ALONE``). If the driver raises, Core runs the
statement again on the same connection and handles what failed as it does for every
statement (a dropped connection renews the pool; the error is raised as SQLAlchemy's).
"""

from __future__ import annotations

from collections import namedtuple

from sqlalchemy import Connection
from sqlalchemy.exc import ResourceClosedError


class DriverStatement:
    """One statement with typed result columns (a ``select()``, or ``text().columns()``)."""

    def __init__(self, statement, dialect, name: str = "Row",
                 execution_options: dict | None = None):
        """``execution_options``: Core's, for when Core runs it again (a write's ``ALONE``)."""
        self.statement = statement
        self.execution_options = execution_options or {}
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        if "POSTCOMPILE" in self.sql:  # an expanding parameter would need Core's rendering
            raise ValueError("a driver statement must compile to fixed SQL")
        binds = {key: bind.type.dialect_impl(dialect).bind_processor(dialect)
                 for key, bind in compiled.binds.items()}
        self.binds = {key: process for key, process in binds.items() if process}
        # The values Core binds itself (a literal in a subquery), processed once.
        self.fixed = {key: binds[key](bind.effective_value) if binds[key]
                      else bind.effective_value
                      for key, bind in compiled.binds.items() if not bind.required}
        self.order = compiled.positiontup if compiled.positional else None
        columns = list(statement.selected_columns)
        self.processors = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                           for column in columns]
        self.row = namedtuple(name, [column.key for column in columns])  # type: ignore[misc]

    def first(self, connection: Connection, params: dict):
        """The first row (attributes named as the columns), or None."""
        rows = self._run(connection, params, all_rows=False)
        return rows[0] if rows else None

    def all(self, connection: Connection, params: dict) -> list:
        return self._run(connection, params, all_rows=True)

    def _run(self, connection: Connection, params: dict, all_rows: bool) -> list:
        values = {**params, **self.fixed}
        for key, process in self.binds.items():
            if key in params:
                values[key] = process(params[key])
        parameters = tuple(values[key] for key in self.order) if self.order else values
        dbapi_connection = connection.connection.dbapi_connection
        if dbapi_connection is None:
            raise ResourceClosedError("the connection was invalidated")
        dispatch = connection.dispatch
        cursor = dbapi_connection.cursor()
        try:
            dispatch.before_cursor_execute(connection, cursor, self.sql, parameters, None,
                                           False)
            cursor.execute(self.sql, parameters)
            dispatch.after_cursor_execute(connection, cursor, self.sql, parameters, None,
                                          False)
            rows = cursor.fetchall() if all_rows else [cursor.fetchone()]
        except connection.dialect.loaded_dbapi.Error:
            result = connection.execute(self.statement, params,
                                        execution_options=self.execution_options)
            return list(result.all()) if all_rows else [result.first()]
        finally:
            cursor.close()
        processors, row = self.processors, self.row
        return [row(*(process(value) if process else value
                      for process, value in zip(processors, found)))
                for found in rows if found is not None]
