"""The one place where planned actions meet the kernel."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import cached_property, singledispatchmethod

from netstate.actions import (
    Action,
    EnsureBridge,
    EnsureSysctl,
    EnsureVeth,
    FlushConntrack,
    RemoveBridge,
    RemoveStaleLink,
    RemoveVeth,
    SyncFirewall,
    SyncProxy,
)
from netstate.crash import crashpoint

log = logging.getLogger(__name__)


class Executor:
    """Applies actions through the kernel adapters and reports which ones changed something."""

    def __init__(self, links, forwarding: Callable[[], object] | None = None) -> None:
        self.links = links
        self._forwarding_factory = forwarding

    @cached_property
    def forwarding(self):
        """The firewall, proxy, sysctl and conntrack adapters, built on first use."""
        if self._forwarding_factory is None:
            raise TypeError("this executor was built without forwarding adapters")
        return self._forwarding_factory()

    def apply(self, actions: Iterable[Action]) -> list[Action]:
        """Apply actions in order, stopping at the first failure; return those that changed."""
        changed = []
        for action in actions:
            if self._step(action):
                changed.append(action)
        return changed

    def apply_all(
        self, actions: Iterable[Action], progress: Callable[[int], None] | None = None
    ) -> tuple[list[Action], list[Exception]]:
        """Apply every action even when some fail, as teardown must; return changes and errors.

        `progress`, if given, is called with the number of actions done after each one.
        """
        changed: list[Action] = []
        errors: list[Exception] = []
        for done, action in enumerate(actions, start=1):
            try:
                if self._step(action):
                    changed.append(action)
            except Exception as err:  # noqa: BLE001 - collected and re-raised by the caller
                log.warning("action %s failed: %s", action, err)
                errors.append(err)
            if progress is not None:
                progress(done)
        return changed, errors

    def _step(self, action: Action) -> bool:
        name = type(action).__name__
        crashpoint(f"before:{name}")
        changed = self.run(action)
        crashpoint(f"after:{name}")
        return changed

    @singledispatchmethod
    def run(self, action) -> bool:
        """Apply one action; return True when it changed the kernel."""
        raise TypeError(f"no interpreter for action {type(action).__name__}")

    @run.register
    def _(self, action: EnsureBridge) -> bool:
        return self.links.ensure_bridge(action)

    @run.register
    def _(self, action: RemoveBridge) -> bool:
        return self.links.remove_bridge(action)

    @run.register
    def _(self, action: EnsureVeth) -> bool:
        return self.links.ensure_veth(action)

    @run.register
    def _(self, action: RemoveVeth) -> bool:
        return self.links.remove_veth(action)

    @run.register
    def _(self, action: RemoveStaleLink) -> bool:
        return self.links.remove_stale_link(action)

    @run.register
    def _(self, action: EnsureSysctl) -> bool:
        return self.forwarding.sysctl.ensure(action.key, action.value)

    @run.register
    def _(self, action: SyncProxy) -> bool:
        return self.forwarding.proxy.sync(action.bindings, required=action.required)

    @run.register
    def _(self, action: SyncFirewall) -> bool:
        return self.forwarding.firewall.sync(action.ruleset).changed

    @run.register
    def _(self, action: FlushConntrack) -> bool:
        # Only UDP entries are ever planned; the adapter logs its own failures.
        return self.forwarding.conntrack.flush_udp(action.ports) > 0
