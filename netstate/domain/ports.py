"""Published ports: the host port allocator, map and unmap decisions, and host settings.

A host port is held per protocol, host address and port. The wildcard address 0.0.0.0 covers
every address of the host, so it conflicts with each specific address on the same protocol and
port, and the other way round. TCP, UDP and SCTP ports are independent.

Dynamic ports come from a configurable range (49153-65535 by default, both ends included). The
search starts after the last dynamic port handed out for the protocol and wraps around, so a
port just unmapped is not handed out again at once. When every port of the range is held, the
request fails at once, naming the range and the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from netstate.domain.decide import require_network, unmap_event
from netstate.domain.events import Event, PortMapped, PortUnmapped, Protocol, SettingChanged
from netstate.domain.names import check_endpoint
from netstate.domain.portspec import WILDCARD, PortRange, PortSpec
from netstate.domain.state import Binding, BindingKey, Lease, State
from netstate.errors import (
    AmbiguousNetwork,
    InvalidInput,
    InvalidPortSpec,
    NotFound,
    PortExhausted,
    PortInUse,
    UnknownEndpoint,
)

# Host settings

SETTING_PORT_RANGE = "port-range"
SETTING_USERLAND_PROXY = "userland-proxy"
DEFAULT_DYNAMIC_RANGE = PortRange(49153, 65535)

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _normalize_bool(key: str, value: str) -> str:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return "true"
    if lowered in _FALSE:
        return "false"
    raise InvalidInput(f"invalid value {value!r} for setting {key!r}: use true or false")


def _normalize_range(key: str, value: str) -> str:
    try:
        return str(PortRange.parse(value.strip()))
    except InvalidPortSpec:
        msg = f"invalid value {value!r} for setting {key!r}: use FIRST-LAST, from 1 to 65535, FIRST not above LAST"
        raise InvalidInput(msg) from None


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """A host setting: its default value as text, what it controls, and how values parse."""

    key: str
    default: str
    description: str
    normalize: Callable[[str, str], str]


SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec(
            SETTING_PORT_RANGE,
            str(DEFAULT_DYNAMIC_RANGE),
            "range of host ports handed out dynamically, FIRST-LAST, both included",
            _normalize_range,
        ),
        SettingSpec(
            SETTING_USERLAND_PROXY,
            "true",
            "serve published ports with the userland proxy; false routes localhost through NAT",
            _normalize_bool,
        ),
    )
}


def setting_value(state: State, key: str) -> str:
    """Return the effective value of a host setting: recorded, else its default."""
    return state.settings.get(key, SETTINGS[key].default)


def dynamic_range(state: State) -> PortRange:
    """Return the range dynamic host ports come from."""
    return PortRange.parse(setting_value(state, SETTING_PORT_RANGE))


def userland_proxy_enabled(state: State) -> bool:
    """Return whether the userland proxy serves published ports (Docker's --userland-proxy)."""
    return setting_value(state, SETTING_USERLAND_PROXY) == "true"


def change_setting(state: State, key: str, value: str) -> list[Event]:
    """Decide a change of a host setting; no event when the value is already in effect.

    Raises:
        InvalidInput: an unknown key, or a value the setting does not accept.
    """
    spec = SETTINGS.get(key)
    if spec is None:
        known = ", ".join(sorted(SETTINGS))
        raise InvalidInput(f"unknown setting {key!r}; known settings: {known}")
    normalized = spec.normalize(key, value)
    if setting_value(state, key) == normalized:
        return []
    return [SettingChanged(network="", key=key, value=normalized)]


# Holding host ports


def describe_key(key: BindingKey) -> str:
    """Return "HOST_IP:PORT/PROTO", the form messages use for a held host port."""
    return f"{key.host_ip}:{key.host_port}/{key.protocol.value}"


class HostPorts:
    """The held host ports, indexed by protocol and port so the wildcard rule is one lookup."""

    def __init__(self, bindings: Iterable[Binding]) -> None:
        self._by_port: dict[tuple[Protocol, int], dict[IPv4Address, Binding]] = {}
        for binding in bindings:
            self.add(binding)

    def add(self, binding: Binding) -> None:
        key = binding.key
        self._by_port.setdefault((key.protocol, key.host_port), {})[key.host_ip] = binding

    def conflict(self, key: BindingKey) -> Binding | None:
        """Return the binding that keeps `key` from being held, if any."""
        holders = self._by_port.get((key.protocol, key.host_port))
        if not holders:
            return None
        exact = holders.get(key.host_ip)
        if exact is not None:
            return exact
        if key.host_ip == WILDCARD:
            return holders[min(holders)]
        return holders.get(WILDCARD)

    def is_free(self, protocol: Protocol, host_ip: IPv4Address, port: int) -> bool:
        return self.conflict(BindingKey(protocol, host_ip, port)) is None


def next_dynamic_port(
    held: HostPorts,
    protocol: Protocol,
    host_ip: IPv4Address,
    port_range: PortRange,
    last: int | None,
) -> int:
    """Return the first free port of `port_range` after `last`, wrapping around once.

    Raises:
        PortExhausted: every port of the range is held for this protocol and address.
    """
    span = len(port_range)
    if last is None or last not in port_range:
        start = port_range.first
    else:
        start = last + 1
    for step in range(span):
        port = port_range.first + (start - port_range.first + step) % span
        if held.is_free(protocol, host_ip, port):
            return port
    msg = (
        f"no free host port in the dynamic range {port_range} for {protocol.value} on "
        f"{host_ip}: all {span} ports are held; unmap some, or widen the range with "
        f"`netstate config set {SETTING_PORT_RANGE} FIRST-LAST`"
    )
    raise PortExhausted(msg)


# Mapping


@dataclass(frozen=True, slots=True)
class MapPorts:
    """Request to publish host ports for an endpoint; `network` picks one of its leases."""

    endpoint: str
    specs: tuple[PortSpec, ...]
    network: str | None = None


@dataclass(frozen=True, slots=True)
class MapOutcome:
    """The events of a map decision and the bindings the request now holds, in spec order.

    A binding the endpoint already held exactly as requested is listed but gets no event.
    """

    events: list[Event]
    bindings: tuple[Binding, ...]


def resolve_lease(state: State, endpoint: str, network: str | None) -> Lease:
    """Return the lease whose address published ports of `endpoint` lead to.

    Raises:
        UnknownNetwork: `network` is not recorded.
        UnknownEndpoint: the endpoint holds no address (on `network`).
        AmbiguousNetwork: the endpoint holds addresses on several networks and none was named.
    """
    if network is not None:
        require_network(state, network)
        lease = state.leases.get((network, endpoint))
        if lease is None:
            raise UnknownEndpoint(f"endpoint {endpoint!r} holds no address on network {network!r}")
        return lease
    leases = state.leases_of(endpoint)
    if not leases:
        raise UnknownEndpoint(f"endpoint {endpoint!r} holds no address; allocate one first")
    if len(leases) > 1:
        names = ", ".join(lease.network for lease in leases)
        msg = f"endpoint {endpoint!r} holds addresses on networks {names}; pass --network to pick one"
        raise AmbiguousNetwork(msg)
    return leases[0]


def map_ports(state: State, request: MapPorts) -> MapOutcome:
    """Decide the bindings for every spec of the request, all of them or none.

    Raises:
        InvalidInput: no spec was given, or the endpoint name is invalid.
        UnknownEndpoint, AmbiguousNetwork, UnknownNetwork: the lease cannot be resolved.
        PortInUse: an explicit host port is held; the error names the holding endpoint.
        PortExhausted: no free port is left in the dynamic range or in a requested host range.
    """
    check_endpoint(request.endpoint)
    if not request.specs:
        raise InvalidInput("give at least one port spec, such as 8080:80 or 53/udp")
    lease = resolve_lease(state, request.endpoint, request.network)
    planner = _MapPlanner(state, lease)
    for spec in request.specs:
        planner.add_spec(spec)
    return MapOutcome(planner.events, tuple(planner.bindings))


class _MapPlanner:
    """Accumulates the bindings of one map request against the state and each other."""

    def __init__(self, state: State, lease: Lease) -> None:
        self.lease = lease
        self.held = HostPorts(state.bindings.values())
        self.cursors = dict(state.port_cursors)
        self.port_range = dynamic_range(state)
        self.requested: set[BindingKey] = set()
        self.events: list[Event] = []
        self.bindings: list[Binding] = []
        self.own = [b for b in state.bindings.values() if _same_lease(b, lease)]

    def add_spec(self, spec: PortSpec) -> None:
        if spec.host_ports is None:
            for container_port in spec.container_ports:
                existing = self._existing_for(spec, container_port)
                if existing is not None:
                    # A retried dynamic request gets the port it got before, not a new one.
                    self.bindings.append(existing)
                    continue
                last = self.cursors.get(spec.protocol)
                port = next_dynamic_port(self.held, spec.protocol, spec.host_ip, self.port_range, last)
                self.cursors[spec.protocol] = port
                self._hold(spec, port, container_port, dynamic=True)
        elif spec.picks_from_range:
            port = self._first_free_in(spec)
            self._hold(spec, port, spec.container_ports.first, dynamic=False)
        else:
            pairs = list(zip(spec.host_ports, spec.container_ports))
            for host_port, container_port in pairs:
                self._hold(spec, host_port, container_port, dynamic=False)

    def _existing_for(self, spec: PortSpec, container_port: int) -> Binding | None:
        """Return the lease's binding of this protocol, host address and container port, if any."""
        for binding in sorted(self.own, key=lambda b: b.key):
            if (
                binding.key.protocol == spec.protocol
                and binding.key.host_ip == spec.host_ip
                and binding.container_port == container_port
                and binding not in self.bindings
            ):
                return binding
        return None

    def _first_free_in(self, spec: PortSpec) -> int:
        container_port = spec.container_ports.first
        for port in spec.host_ports:
            if self._already_held_as_requested(BindingKey(spec.protocol, spec.host_ip, port), container_port):
                return port
        for port in spec.host_ports:
            if self.held.is_free(spec.protocol, spec.host_ip, port):
                return port
        msg = (
            f"no free host port in {spec.host_ports}/{spec.protocol.value} on {spec.host_ip}: "
            f"all {len(spec.host_ports)} are held (spec {spec})"
        )
        raise PortExhausted(msg)

    def _already_held_as_requested(self, key: BindingKey, container_port: int) -> bool:
        holder = self.held.conflict(key)
        return (
            holder is not None
            and holder.key == key
            and holder.endpoint == self.lease.endpoint
            and holder.network == self.lease.network
            and holder.container_ip == self.lease.address
            and holder.container_port == container_port
        )

    def _hold(self, spec: PortSpec, host_port: int, container_port: int, *, dynamic: bool) -> None:
        key = BindingKey(spec.protocol, spec.host_ip, host_port)
        holder = self.held.conflict(key)
        if holder is not None:
            if self._already_held_as_requested(key, container_port):
                # Mapping again what is already mapped changes nothing, as allocate does.
                if holder not in self.bindings:
                    self.bindings.append(holder)
                return
            raise _conflict(key, holder, self.requested, spec)

        binding = Binding(
            key=key,
            network=self.lease.network,
            endpoint=self.lease.endpoint,
            container_ip=self.lease.address,
            container_port=container_port,
        )
        self.held.add(binding)
        self.requested.add(key)
        self.bindings.append(binding)
        self.events.append(
            PortMapped(
                network=binding.network,
                endpoint=binding.endpoint,
                protocol=key.protocol,
                host_ip=key.host_ip,
                host_port=key.host_port,
                container_ip=binding.container_ip,
                container_port=container_port,
                dynamic=dynamic,
            )
        )


def _same_lease(binding: Binding, lease: Lease) -> bool:
    return (
        binding.endpoint == lease.endpoint
        and binding.network == lease.network
        and binding.container_ip == lease.address
    )


def _conflict(key: BindingKey, holder: Binding, requested: set[BindingKey], spec: PortSpec) -> PortInUse:
    wanted = describe_key(key)
    target = f"{holder.container_ip}:{holder.container_port}"
    if holder.key in requested:
        msg = f"host port {wanted} is requested twice in this command, the second time by {spec}"
    elif holder.key == key:
        msg = (
            f"host port {wanted} is held by endpoint {holder.endpoint!r} (to {target}); "
            "unmap it first or pick another port"
        )
    else:
        msg = (
            f"host port {wanted} conflicts with {describe_key(holder.key)} held by endpoint "
            f"{holder.endpoint!r} (to {target}), because 0.0.0.0 covers every host address"
        )
    return PortInUse(msg, holder=holder.endpoint)


# Unmapping


def spec_matches(spec: PortSpec, binding: Binding) -> bool:
    """Return whether an unmap spec names `binding`.

    A spec without a host address matches every host address, and a spec without a host port
    matches every host port of the container port.
    """
    key = binding.key
    if key.protocol != spec.protocol or binding.container_port not in spec.container_ports:
        return False
    if spec.host_ip != WILDCARD and key.host_ip != spec.host_ip:
        return False
    if spec.host_ports is None:
        return True
    if key.host_port not in spec.host_ports:
        return False
    if spec.picks_from_range:
        return True
    return key.host_port - spec.host_ports.first == binding.container_port - spec.container_ports.first


def unmap_ports(
    state: State, endpoint: str, specs: Sequence[PortSpec], network: str | None = None
) -> list[Event]:
    """Decide the withdrawal of the endpoint's bindings named by `specs`, all or none.

    Raises:
        InvalidInput: no spec was given.
        NotFound: a spec names no binding of the endpoint, or an explicit host port of a range
            is not mapped.
    """
    check_endpoint(endpoint)
    if not specs:
        raise InvalidInput("give at least one port spec to unmap, such as 8080:80")
    if network is not None:
        require_network(state, network)
    own = [b for b in state.bindings_of(endpoint) if network is None or b.network == network]

    chosen: dict[BindingKey, Binding] = {}
    for spec in specs:
        matched = [b for b in own if spec_matches(spec, b)]
        if not matched:
            raise NotFound(
                f"endpoint {endpoint!r} has no published port matching {spec}; "
                "`netstate ports` lists them"
            )
        if spec.host_ports is not None and not spec.picks_from_range:
            _check_whole_range(spec, matched, endpoint)
        for binding in matched:
            chosen[binding.key] = binding
    return [unmap_event(binding, reason="unmapped") for binding in chosen.values()]


def _check_whole_range(spec: PortSpec, matched: list[Binding], endpoint: str) -> None:
    mapped = {b.key.host_port for b in matched}
    for port in spec.host_ports:
        if port not in mapped:
            msg = (
                f"endpoint {endpoint!r} has no published host port {port}/{spec.protocol.value} "
                f"of {spec}; nothing was unmapped"
            )
            raise NotFound(msg)



def withdrawal(event: PortMapped, reason: str) -> PortUnmapped:
    """Return the event that withdraws the binding `event` recorded, as compensation does."""
    return PortUnmapped(
        network=event.network,
        endpoint=event.endpoint,
        protocol=event.protocol,
        host_ip=event.host_ip,
        host_port=event.host_port,
        container_ip=event.container_ip,
        container_port=event.container_port,
        reason=reason,
    )
