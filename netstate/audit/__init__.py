"""Audit over the event log: time parsing, lookups of who held what when, read-only SQL.

The queries read the views that the migration of revision 0002 creates; docs/audit.md
documents them.
"""
