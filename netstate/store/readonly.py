"""One read-only SQL query over the database, for `netstate sql`.

Three layers keep the query from changing anything: the file is opened with SQLite's
`mode=ro`, the connection sets `PRAGMA query_only`, and an authorizer allows only reading
(SELECT, reads of tables and views, functions, recursive CTEs and a few schema pragmas). The
authorizer is what turns a write attempt into a clear error before SQLite runs anything.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from netstate.errors import InvalidQuery, QueryRejected, StoreError

# Pragmas that only describe the schema, for discovering the columns of a view.
_SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo", "foreign_key_list"}
)
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# The authorizer's action codes by name, for messages; their numbers overlap result codes, so
# they are listed by name rather than found by value.
_ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name.replace("_", " ")
    for name in (
        "ALTER_TABLE", "ANALYZE", "ATTACH", "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX",
        "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER", "CREATE_TEMP_VIEW", "CREATE_TRIGGER",
        "CREATE_VIEW", "CREATE_VTABLE", "DELETE", "DETACH", "DROP_INDEX", "DROP_TABLE",
        "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW",
        "DROP_TRIGGER", "DROP_VIEW", "DROP_VTABLE", "INSERT", "PRAGMA", "REINDEX", "SAVEPOINT",
        "TRANSACTION", "UPDATE",
    )
}
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"})
# Functions that reach outside the database file.
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit"})


@dataclass(frozen=True, slots=True)
class QueryResult:
    """The column names and rows of a query, in the order SQLite returned them."""

    columns: list[str]
    rows: list[tuple]


def run_readonly_query(db: Path, query: str) -> QueryResult:
    """Run one read-only SQL statement on the database at `db` and return all its rows.

    NOTE: every row is held in memory; add a LIMIT to a query over the whole log.

    Raises:
        StoreError: the database file is missing or cannot be opened.
        QueryRejected: the statement would write, attach, or run a pragma other than the
            schema ones.
        InvalidQuery: the text is empty, contains more than one statement, or SQLite rejects it
            (syntax error, unknown table or column).
    """
    if not query.strip():
        raise InvalidQuery("empty query; pass one SELECT statement")
    path = Path(db)
    if not path.is_file():
        raise StoreError(f"database {str(path)!r} not found; pass --db or set NETSTATE_DB")

    from netstate.store.engine import create_sqlite_engine

    engine = create_sqlite_engine(path, read_only=True)
    try:
        with engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            raw.execute("PRAGMA query_only = ON")
            return _run(raw, path, query)
    except (sqlite3.OperationalError, SQLAlchemyError) as err:
        raise StoreError(f"cannot open database {str(path)!r}: {err}") from err
    finally:
        engine.dispose()


def _run(raw: sqlite3.Connection, path: Path, query: str) -> QueryResult:
    denied: list[str] = []

    def authorize(action: int, arg1, arg2, _database, _trigger) -> int:
        if action in _ALLOWED_ACTIONS:
            if action == sqlite3.SQLITE_FUNCTION and arg2 in _DENIED_FUNCTIONS:
                denied.append(f"function {arg2}()")
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 in _SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        denial = _ACTION_NAMES.get(action, f"action {action}")
        if arg1 in _SCHEMA_TABLES:
            # CREATE, DROP and ALTER are checked first as a write to the schema table.
            denial = "a schema change"
        elif action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
            denial = f"{denial} on {arg1!r}"
        elif arg1:
            denial = f"{denial} {arg1}"
        denied.append(denial)
        return sqlite3.SQLITE_DENY

    raw.set_authorizer(authorize)
    try:
        cursor = raw.execute(query)
        columns = [column[0] for column in cursor.description or ()]
        rows = cursor.fetchall()
    except sqlite3.ProgrammingError as err:
        if "one statement at a time" in str(err):
            raise InvalidQuery("invalid query: netstate sql runs a single statement") from None
        raise InvalidQuery(f"invalid query: {err}") from None
    except sqlite3.DatabaseError as err:
        if denied or "readonly" in str(err):
            first_denial = denied[0] if denied else "a write"
            msg = (
                f"query rejected: {first_denial} is not allowed; netstate sql runs read-only queries, "
                "and the record changes only through netstate commands"
            )
            raise QueryRejected(msg) from None
        raise InvalidQuery(f"invalid query: {err}{_schema_hint(raw, path, err)}") from None
    finally:
        raw.set_authorizer(None)
    return QueryResult(columns=columns, rows=rows)


def _schema_hint(raw: sqlite3.Connection, path: Path, err: Exception) -> str:
    """Return a hint when an unknown table is a view that an older schema lacks."""
    if "no such table" not in str(err):
        return ""
    from netstate.store.schema import SCHEMA_HEAD

    try:
        revision = raw.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return f"; {str(path)!r} is not a netstate database"
    if revision is None or revision[0] != SCHEMA_HEAD:
        found = revision[0] if revision else "none"
        return (
            f"; the database is at schema revision {found}, not {SCHEMA_HEAD}: "
            "run `netstate db upgrade` to create the audit views"
        )
    return "; the views are listed in docs/audit.md"
