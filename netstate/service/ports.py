"""Published ports: map, unmap and list bindings, and the host settings that shape them."""

from __future__ import annotations

from collections.abc import Sequence

from netstate.domain import ports
from netstate.domain.names import check_endpoint, check_network_name
from netstate.domain.portspec import PortSpec
from netstate.domain.state import Binding, BindingKey, State


class PortCommands:
    """Port publishing commands, mixed into Netstate."""

    def map_ports(
        self, endpoint: str, specs: Sequence[str | PortSpec], *, network: str | None = None
    ) -> list[Binding]:
        """Publish host ports for an endpoint, all of them or none, in one transaction.

        Each spec uses Docker's `-p` syntax, such as "8080:80", "127.0.0.1::53/udp" or
        "9000-9005:9000-9005". The firewall rules and the userland proxy follow the record. If
        either fails, as when another program holds a host port, compensating events withdraw the
        bindings again and the rules and listeners are removed.

        Args:
            endpoint: the endpoint whose address the ports lead to.
            specs: one or more port specs; all are parsed before anything is written.
            network: the network of the endpoint's address, needed when it holds several.

        Returns:
            The bindings the specs now hold, in spec order, including any the endpoint already
            held exactly as requested.

        Raises:
            InvalidPortSpec: a spec does not parse.
            UnknownEndpoint, AmbiguousNetwork: the endpoint's address cannot be resolved.
            PortInUse: a host port is held by another endpoint or another program.
            PortExhausted: no free port is left in the dynamic or the requested range.
            KernelError: the rules or the proxy could not be set up.
        """
        request = self._map_request(endpoint, specs, network)
        outcome: list[ports.MapOutcome] = []

        def decision(state: State):
            result = ports.map_ports(state, request)
            outcome.append(result)
            return result.events

        self._execute(decision)
        return list(outcome[-1].bindings)

    def unmap_ports(
        self, endpoint: str, specs: Sequence[str | PortSpec], *, network: str | None = None
    ) -> list[Binding]:
        """Withdraw the endpoint's bindings that the specs name, all of them or none.

        A spec without a host address matches every host address, and one without a host port
        matches every host port of its container port. Conntrack entries of withdrawn UDP host
        ports are deleted.

        Returns:
            The bindings withdrawn.

        Raises:
            InvalidPortSpec: a spec does not parse.
            NotFound: a spec matches no binding of the endpoint.
        """
        request = self._map_request(endpoint, specs, network)
        removed: list[Binding] = []

        def decision(state: State):
            events = ports.unmap_ports(state, endpoint, request.specs, network)
            removed[:] = [state.bindings[BindingKey(e.protocol, e.host_ip, e.host_port)] for e in events]
            return events

        self._execute(decision)
        return removed

    def bindings(self, endpoint: str | None = None) -> list[Binding]:
        """Return the current bindings, of one endpoint or of all, ordered by host port."""
        state = self.state()
        if endpoint is not None:
            check_endpoint(endpoint)
            return state.bindings_of(endpoint)
        return sorted(state.bindings.values(), key=lambda b: b.key)

    def settings(self) -> dict[str, str]:
        """Return the effective value of every host setting."""
        state = self.state()
        return {key: ports.setting_value(state, key) for key in sorted(ports.SETTINGS)}

    def set_setting(self, key: str, value: str) -> str:
        """Change a host setting and apply it; return the value now in effect.

        Settings: "port-range" (dynamic host ports, FIRST-LAST) and "userland-proxy" (true or
        false; false serves localhost through NAT as Docker's --userland-proxy=false does).
        """
        self._execute(lambda state: ports.change_setting(state, key, value))
        return ports.setting_value(self.state(), key)

    def _map_request(self, endpoint: str, specs, network: str | None) -> ports.MapPorts:
        check_endpoint(endpoint)
        if network is not None:
            check_network_name(network)
        parsed = tuple(spec if isinstance(spec, PortSpec) else PortSpec.parse(spec) for spec in specs)
        return ports.MapPorts(endpoint, parsed, network)
