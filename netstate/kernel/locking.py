"""Exclusive advisory locks on files, shared between processes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from netstate.errors import KernelError


@contextmanager
def exclusive_lock(path: str | os.PathLike, description: str) -> Iterator[None]:
    """Hold an flock(2) on the file at `path`, created if missing, for the block.

    The lock goes with the process: if it dies, the kernel releases the lock.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise KernelError(f"cannot open the {description} {path}: {err.strerror}") from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
