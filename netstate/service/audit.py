"""Audit queries over the event log: history, who held what when, state at a past time."""

from __future__ import annotations


class AuditQueries:
    """Read-only queries over the log, mixed into Netstate."""
