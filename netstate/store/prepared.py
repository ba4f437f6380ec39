"""Statements that every command runs, compiled by SQLAlchemy once and run on the driver.

Executing a Core statement costs about 15 to 20 microseconds of SQLAlchemy bookkeeping (cache
key, execution context, result wrapper) on top of the driver's few microseconds, and a command
runs five or six of them. For those few statements netstate compiles the SQL once per dialect
and hands it to the DB-API cursor of the connection that holds the transaction, which halves
the CPU time of an allocate. Every other query goes through `Connection.execute` as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable


class Prepared:
    """A Core statement compiled on first use for each set of parameter names."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...] | None]] = {}

    def run(self, connection: Connection, params: Mapping[str, Any]) -> Any:
        """Execute inside `connection`'s transaction; return the DB-API cursor.

        Raises:
            TypeError: a parameter's type needs a bind processor on this dialect, which this
                shortcut would skip.
        """
        dialect = connection.dialect
        key = (dialect.name, tuple(params))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(connection, list(params))
        sql, order = compiled

        cursor = connection.connection.driver_connection.cursor()
        if order is None:
            cursor.execute(sql, dict(params))
        else:
            cursor.execute(sql, [params[name] for name in order])
        return cursor

    def _compile(self, connection: Connection, names: list[str]) -> tuple[str, tuple[str, ...] | None]:
        dialect = connection.dialect
        compiled = self.statement.compile(dialect=dialect, column_keys=names)
        for name, bind in compiled.binds.items():
            if bind.type.bind_processor(dialect) is not None:
                msg = f"parameter {name!r} of type {bind.type} needs conversion on {dialect.name}; use Connection.execute"
                raise TypeError(msg)
        order = tuple(compiled.positiontup) if compiled.positional else None
        return str(compiled), order


def scalar(cursor) -> Any:
    """Return the first column of the first row of a cursor, or None when it has no row."""
    row = cursor.fetchone()
    cursor.close()
    return None if row is None else row[0]
