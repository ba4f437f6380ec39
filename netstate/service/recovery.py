"""Restore, check and repair: converging the kernel on the record."""

from __future__ import annotations


class Recovery:
    """Restore and drift checks, mixed into Netstate."""
