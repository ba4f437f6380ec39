"""Persistence: the append-only event log and its projections, on SQLAlchemy Core.

Nothing above this package sees an SQLAlchemy or sqlite3 exception; they are translated into
StoreError here. SQLite specifics (pragmas, BEGIN IMMEDIATE, triggers) stay in `engine.py` and
the migrations.
"""
