"""Alembic environment: runs on the connection netstate passes in, or on `-x db=PATH`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    path = context.get_x_argument(as_dictionary=True).get("db")
    if not path:
        raise SystemExit("pass the database with -x db=PATH")
    with create_engine(f"sqlite:///{path}").connect() as own:
        _run(own)
        own.commit()


def _run(connection) -> None:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("netstate migrations run online only")
run_migrations_online()
