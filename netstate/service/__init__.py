"""The netstate API: every command a user or a runtime can run, as a method of `Netstate`.

`netstate.bootstrap.open_service` builds one. Each area lives in its own module as a mixin over
`Core`, which holds the store, the kernel adapters and the command sequence.
"""

from __future__ import annotations

from netstate.service.audit import AuditQueries
from netstate.service.core import Attachment, Core, Kernel
from netstate.service.ports import PortCommands
from netstate.service.recovery import Recovery

__all__ = ["Attachment", "Kernel", "Netstate"]


class Netstate(PortCommands, AuditQueries, Recovery, Core):
    """The API over one event store and one managed namespace."""
