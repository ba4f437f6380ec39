"""Networks and addresses, and the command sequence every mutating command follows.

Each mutating method follows one sequence:

1. Validate the input and read what the decision needs from the kernel, changing nothing.
2. In one write transaction: load the state, decide, append the events, update projections.
3. After the commit, plan the kernel actions from the events and apply them.
4. If an action fails, append compensating events, undo what was applied, and raise. A
   teardown (release, network rm) instead attempts every action and raises the failures
   together, since its events already record the objects as removed.

A crash between 2 and 3 leaves the record ahead of the kernel; `restore` or `check --repair`
converges it, and so does repeating an `allocate` with a namespace.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from ipaddress import IPv4Address

from netstate.crash import crashpoint
from netstate.domain import decide
from netstate.domain.events import AddressReleased, Event
from netstate.domain.state import Lease, Network, State, fold
from netstate.domain.subnets import HostFacts, parse_address, parse_subnet
from netstate.domain.names import check_endpoint, check_ifname, check_network_name
from netstate.actions import Action
from netstate.errors import Conflict, InvalidInput, InvalidSubnet, NetstateError, TeardownFailed, UnknownEndpoint
from netstate.plan import (
    ensure_bridge,
    ensure_veth,
    mapped_keys,
    plan_conntrack,
    plan_events,
    plan_forwarding,
    touches_forwarding,
)
from netstate.store import projections
from netstate.store.current import CurrentState, copy_of
from netstate.store.eventlog import Actor, EventStore, Recorded, append

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attachment:
    """An endpoint's lease together with the network it is on."""

    lease: Lease
    network: Network

    def to_dict(self) -> dict:
        """Return the JSON form that `netstate allocate --json` prints."""
        return {
            "endpoint": self.lease.endpoint,
            "network": self.network.name,
            "address": str(self.lease.address),
            "prefix_length": self.network.subnet.prefixlen,
            "gateway": str(self.network.gateway),
            "bridge": self.network.bridge,
            "subnet": str(self.network.subnet),
            "netns": self.lease.netns,
            "ifname": self.lease.ifname,
            "host_ifname": self.lease.host_ifname,
        }


# The namespace of the calling thread, which is the managed one (setns moves only that thread).
OWN_NETNS = "/proc/thread-self/ns/net"


class Kernel:
    """The kernel adapters, built on first use so that pure commands never import them."""

    def __init__(
        self,
        links,
        host_netns: str | None,
        forwarding_factory: Callable[[], object] | None = None,
        *,
        own_netns: str | None = None,
    ) -> None:
        self.links = links
        self.host_netns = host_netns
        self._forwarding_factory = forwarding_factory
        # The managed namespace's file, OWN_NETNS for real links. None skips the check, as for
        # the fake's links, which live in memory.
        self.own_netns = own_netns

    def manages_netns(self, path: str) -> bool:
        """Return whether `path` is the namespace whose bridges these adapters manage."""
        if self.own_netns is None:
            return False
        from netstate.kernel.netns import same_namespace

        return same_namespace(path, self.own_netns)

    @cached_property
    def forwarding(self):
        """Firewall, proxy, sysctls and conntrack (`netstate.kernel.forwarding.Forwarding`)."""
        if self._forwarding_factory is None:
            raise TypeError("this kernel was built without forwarding adapters")
        return self._forwarding_factory()

    def host_facts(self) -> HostFacts:
        """Read routes and nameservers of the managed namespace."""
        from netstate.kernel.host import read_host_facts

        return read_host_facts(self.links, self.host_netns)

    def close(self) -> None:
        self.links.close()


class Core:
    """The base of Netstate: the store, the lazily built kernel, and the command sequence."""

    def __init__(
        self,
        store: EventStore,
        kernel_factory: Callable[[], Kernel],
        actor: Actor,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self._kernel_factory = kernel_factory
        self.actor = actor
        self.clock = clock
        self._current = CurrentState()

    @cached_property
    def kernel(self) -> Kernel:
        """The kernel adapters, created when a command first needs them."""
        return self._kernel_factory()

    @cached_property
    def executor(self):
        from netstate.executor import Executor

        return Executor(self.kernel.links, lambda: self.kernel.forwarding)

    def close(self) -> None:
        """Release the kernel adapters and the database connections."""
        if "kernel" in self.__dict__:
            self.kernel.close()
        self.store.close()

    # Networks

    def create_network(
        self,
        name: str,
        *,
        subnet: str | None = None,
        gateway: str | None = None,
        bridge: str | None = None,
        icc: bool = True,
    ) -> Network:
        """Record a network and create (or adopt) its bridge.

        Raises:
            InvalidInput: a malformed name, subnet or gateway.
            NetworkExists, SubnetOverlap, NoFreeSubnet, BridgeConflict: the request clashes.
            KernelError: the bridge could not be set up; the network is then removed again.
        """
        check_network_name(name)
        bridge = check_ifname(bridge if bridge is not None else _default_bridge(name))
        if subnet is not None:
            parsed_subnet, parsed_gateway = parse_subnet(subnet, gateway)
        elif gateway is not None:
            raise InvalidSubnet(f"--gateway {gateway} needs --subnet; pass the subnet it belongs to")
        else:
            parsed_subnet = parsed_gateway = None
        request = decide.CreateNetwork(name, bridge, parsed_subnet, parsed_gateway, icc)

        facts = self.kernel.host_facts() if subnet is None else HostFacts()
        observed = self.kernel.links.observe_link(bridge)
        self._execute(lambda state: decide.create_network(state, request, facts, observed))
        return self.network(name)

    def remove_network(self, name: str) -> None:
        """Remove a network that holds no address, and its bridge if netstate created it."""
        check_network_name(name)
        self._execute(lambda state: decide.remove_network(state, name), teardown=True)

    def set_icc(self, name: str, icc: bool) -> Network:
        """Switch inter-container traffic on a network on or off."""
        check_network_name(name)
        self._execute(lambda state: decide.set_icc(state, name, icc))
        return self.network(name)

    def network(self, name: str) -> Network:
        """Return one recorded network."""
        return decide.require_network(self.state(), name)

    def networks(self) -> list[Network]:
        """Return every recorded network, by name."""
        return sorted(self.state().networks.values(), key=lambda n: n.name)

    # Addresses

    def allocate(
        self,
        endpoint: str,
        *,
        network: str | None = None,
        address: str | IPv4Address | None = None,
        netns: str | None = None,
        ifname: str | None = None,
    ) -> Attachment:
        """Give an endpoint an address, and a veth into `netns` when it is given.

        Without `network`, the default network is used and created on first use. Allocating
        again for an endpoint that holds an address on the network returns that address.
        """
        check_endpoint(endpoint)
        network_name = check_network_name(network) if network is not None else decide.DEFAULT_NETWORK
        requested = parse_address(str(address)) if address is not None else None
        if ifname is not None:
            check_ifname(ifname)
            if netns is None:
                raise InvalidInput(f"--ifname {ifname} needs --netns; pass the namespace the interface goes into")
        netns_path = None
        if netns is not None:
            netns_path = self.kernel.links.resolve_netns(netns)
            if self.kernel.manages_netns(netns_path):
                # The veth's far end would land beside the bridge, and its default route via the
                # gateway would outlive the release.
                msg = f"--netns {netns} is the namespace netstate manages, not a container's; pass the container's namespace"
                raise Conflict(msg)
        request = decide.Allocate(endpoint, network_name, requested, netns_path, ifname)

        default_request = self._default_network_request(network_name)

        def decision(state: State) -> list[Event]:
            events: list[Event] = []
            if network_name not in state.networks and default_request is not None:
                events += decide.create_network(state, *default_request)
                state = fold(events, copy.deepcopy(state))
            return events + decide.allocate(state, request)

        def touched(state: State) -> list[Action]:
            lease = state.leases.get((network_name, endpoint))
            if lease is None or not lease.netns:
                return []
            network = state.networks[network_name]
            return [ensure_bridge(network), ensure_veth(network, lease)]

        # A repeated request records nothing, but a crash or a failed removal may have left
        # its veth half-made, so the touched links are ensured again either way.
        self._execute(decision, converge=touched if netns is not None else None)
        # The state the decision saw, with its events folded in: no second read is needed.
        return _attachment_in(self._current.latest(), endpoint, network_name)

    def _default_network_request(self, network_name: str):
        """Return the arguments to create the default network if it is needed and missing."""
        if network_name != decide.DEFAULT_NETWORK:
            return None
        with self.store.read() as connection:
            if network_name in self._current.read(connection).networks:
                return None
        facts = self.kernel.host_facts()
        observed = self.kernel.links.observe_link(decide.DEFAULT_BRIDGE)
        request = decide.CreateNetwork(network_name, decide.DEFAULT_BRIDGE)
        return request, facts, observed

    def release(self, endpoint: str, *, network: str | None = None) -> list[AddressReleased]:
        """Unmap every port of the endpoint, then return its address(es) and remove its veths."""
        check_endpoint(endpoint)
        if network is not None:
            check_network_name(network)
        recorded = self._execute(lambda state: decide.release(state, endpoint, network), teardown=True)
        return [r.event for r in recorded if isinstance(r.event, AddressReleased)]

    def attachment(self, endpoint: str, network: str) -> Attachment:
        """Return the endpoint's lease on a network with the network."""
        return _attachment_in(self.state(), endpoint, network)

    def attachments(self) -> list[Attachment]:
        """Return every current lease with its network, ordered by network and address."""
        state = self.state()
        found = [Attachment(lease, state.networks[lease.network]) for lease in state.leases.values()]
        return sorted(found, key=lambda a: (a.network.name, a.lease.address))

    # State and the log

    def state(self) -> State:
        """Return the current state: the projections, folded forward in memory where possible."""
        with self.store.read() as connection:
            return copy_of(self._current.read(connection))

    def rebuild(self, progress=None) -> int:
        """Recreate the projections from a fold of the whole log; return the events folded.

        `progress`, if given, is called as progress(seq reached, last seq) while folding.
        """
        from netstate.store.rebuild import rebuild

        with self.store.write() as connection:
            return rebuild(connection, progress)

    # The command sequence

    def _execute(
        self,
        decision: Callable[[State], list[Event]],
        *,
        converge: Callable[[State], list[Action]] | None = None,
        teardown: bool = False,
    ) -> list[Recorded]:
        """Decide and commit, then apply the kernel effects.

        `converge` returns the actions that ensure the objects the command touches, given the
        state after its events. They run even when the command records nothing new, so that a
        retry after a crash between commit and effects finishes the job. With `teardown`, every
        action is attempted and the failures are raised together. Nothing is compensated,
        because the record already lists the objects as removed.
        """
        with self.store.write() as connection:
            state = self._current.read(connection)
            events = decision(state)
            crashpoint("before-commit")
            recorded = append(connection, events, self.actor, self.clock())
        crashpoint("after-commit")
        if recorded:
            try:
                # Planning folds the events into the cached state, which then matches the log.
                actions = plan_events(events, state)
            except BaseException:
                self._current.forget()
                raise
            self._current.advance(recorded[-1].seq)
        else:
            actions = []
        if converge is not None:
            actions = list(dict.fromkeys([*converge(state), *actions]))
        forwarding = touches_forwarding(events)
        if not actions and not forwarding:
            return recorded
        if teardown:
            _changed, errors = self.executor.apply_all(actions)
            if forwarding:
                try:
                    self._sync_forwarding(events)
                except NetstateError as error:
                    errors.append(error)
            if errors:
                msg = (
                    f"{len(errors)} of {len(actions)} kernel steps failed; the record is updated "
                    "and `netstate check --repair` removes what is left"
                )
                raise TeardownFailed(msg, errors)
            return recorded
        try:
            if actions:
                self.executor.apply(actions)
            if forwarding:
                self._sync_forwarding(events)
        except NetstateError as err:
            self._compensate(events, err)
            raise
        return recorded

    def _sync_forwarding(self, events: list[Event]) -> None:
        """Bring firewall, proxy and sysctls to the current record, then clear stale conntrack.

        IMPORTANT: the state is read again under the sync lock instead of reusing the one the
        command decided on. When two commands commit one after the other, whichever syncs last
        then works from a state that holds both, so it never removes the other's rules.

        Only the ports these events map must open in the proxy: a recorded port that another
        program took since is drift for `check` to report, and must not fail every command.
        """
        forwarding = self.kernel.forwarding
        with forwarding.locked():
            self.executor.apply(plan_forwarding(self.state(), required=mapped_keys(events)))
        self.executor.apply(plan_conntrack(events))

    def _compensate(self, events: list[Event], err: Exception) -> None:
        """Record the taking back of `events` after their effects failed, and undo the effects."""
        reason = f"effect failed: {err}"
        with self.store.write() as connection:
            state = projections.read_state(connection)
            undo = decide.undo(state, events, reason)
            crashpoint("compensate:before-commit")
            append(connection, undo, self.actor, self.clock())
        crashpoint("compensate:after-commit")
        if not undo:
            return
        _changed, errors = self.executor.apply_all(plan_events(undo, state))
        if touches_forwarding(undo):
            try:
                self._sync_forwarding(undo)
            except NetstateError as error:
                errors.append(error)
        for error in errors:
            log.error("undoing a failed command left an error: %s", error)


def _attachment_in(state: State, endpoint: str, network: str) -> Attachment:
    lease = state.leases.get((network, endpoint))
    if lease is None:
        raise UnknownEndpoint(f"endpoint {endpoint!r} holds no address on network {network!r}")
    return Attachment(lease, state.networks[network])


def _default_bridge(network: str) -> str:
    """Return the bridge name for a network created without --bridge."""
    if network == decide.DEFAULT_NETWORK:
        return decide.DEFAULT_BRIDGE
    return f"ns-{network}"[:15]
