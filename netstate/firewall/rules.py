"""The iptables rules a State needs, built by pure functions.

Layout (legacy iptables, IPv4):

    nat     PREROUTING   -m addrtype --dst-type LOCAL -j NETSTATE
            OUTPUT       ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j NETSTATE
                         (without "! -d 127.0.0.0/8" when the userland proxy is off)
            POSTROUTING  -j NETSTATE-POSTROUTING
            NETSTATE     per bridge, proxy on: -i BRIDGE -j RETURN (the proxy serves containers)
                         per binding: [-d HOST_IP/32] -p P --dport HOST_PORT -j DNAT
            NETSTATE-POSTROUTING
                         per network: -s SUBNET ! -o BRIDGE -j MASQUERADE
                         proxy off: hairpin (-s SUBNET -o BRIDGE --ctstate DNAT) and loopback
                         sources (-s 127.0.0.0/8 -o BRIDGE) are masqueraded too
    filter  FORWARD      -j NETSTATE-USER, then -j NETSTATE-FORWARD, at the top
            NETSTATE-USER     the administrator's own rules; netstate creates it empty and never
                              edits it, so an allow rule there wins over the DROP below
            NETSTATE-FORWARD  per network: replies to the bridge, traffic leaving the bridge;
                              per binding: DNATed traffic to the container address and port;
                              last, per network: -i BRIDGE -o BRIDGE -j ACCEPT or DROP (icc)

Every rule carries a comment starting with "netstate", the ownership mark: the adapter removes
only rules with the mark and never touches any other.

The text of a rule is exactly the line `iptables-save` prints for it. The adapter compares
desired and observed rules by that text, so a rule is never inserted twice and drift in any
field shows as a missing rule plus an extra one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netstate.domain.ports import userland_proxy_enabled
from netstate.domain.state import Binding, Network, State

NAT = "nat"
FILTER = "filter"
TABLES = (NAT, FILTER)

CHAIN_DNAT = "NETSTATE"
CHAIN_POSTROUTING = "NETSTATE-POSTROUTING"
CHAIN_FORWARD = "NETSTATE-FORWARD"
CHAIN_USER = "NETSTATE-USER"
# IMPORTANT: chains named with this prefix are netstate's; an empty one that is no longer
# desired is deleted. Renaming it orphans the chains of existing installations.
CHAIN_PREFIX = "NETSTATE"

# IMPORTANT: the ownership mark. A rule is netstate's exactly when its comment is MARK or
# starts with MARK and a space; changing it orphans the rules of existing installations.
MARK = "netstate"
# xt_comment stores at most 255 bytes of text.
MAX_COMMENT = 255
LOOPBACK = "127.0.0.0/8"

_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class Match:
    """An iptables match module with its options in the order iptables-save prints them."""

    name: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule. `src`, `dst` and the interfaces negate with a leading "!", as in iptc."""

    table: str
    chain: str
    target: str
    comment: str = MARK
    src: str | None = None
    dst: str | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    protocol: str | None = None
    matches: tuple[Match, ...] = ()
    target_options: tuple[tuple[str, str], ...] = ()
    # The line `iptables-save` prints for this rule, such as "-A NETSTATE -p tcp ...".
    text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", self._save_text())

    def _save_text(self) -> str:
        words = ["-A", self.chain]
        fields = (
            ("-s", self.src),
            ("-d", self.dst),
            ("-i", self.in_interface),
            ("-o", self.out_interface),
            ("-p", self.protocol),
        )
        for flag, value in fields:
            if value is None:
                continue
            if value.startswith("!"):
                words += ["!", flag, value[1:]]
            else:
                words += [flag, value]
        for match in self.matches:
            words += ["-m", match.name]
            for option, value in match.options:
                words += [f"--{option}", value]
        words += ["-m", "comment", "--comment", save_string(self.comment)]
        words += ["-j", self.target]
        for option, value in self.target_options:
            words += [f"--{option}", value]
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The desired netstate chains and rules; rules keep their order within each chain."""

    chains: tuple[tuple[str, str], ...] = ()
    rules: tuple[Rule, ...] = ()

    def by_chain(self) -> dict[tuple[str, str], list[Rule]]:
        """Return the rules grouped by (table, chain), in order."""
        grouped: dict[tuple[str, str], list[Rule]] = {}
        for rule in self.rules:
            grouped.setdefault((rule.table, rule.chain), []).append(rule)
        return grouped


def save_string(value: str) -> str:
    """Quote `value` as iptables-save does (xtables_save_string in iptables 1.8)."""
    if value and all(ch in _NO_QUOTE for ch in value):
        return value
    escaped = "".join("\\" + ch if ch in "\"\\'" else ch for ch in value)
    return f'"{escaped}"'


def mark(*details: str) -> str:
    """Return the ownership comment for a rule, naming the network or endpoint it serves."""
    return " ".join((MARK, *details))[:MAX_COMMENT]


def _ctstate(states: str) -> Match:
    return Match("conntrack", (("ctstate", states),))


def _dport(protocol: str, port: int) -> Match:
    return Match(protocol, (("dport", str(port)),))


_LOCAL_DESTINATION = Match("addrtype", (("dst-type", "LOCAL"),))


def desired_ruleset(state: State) -> Ruleset:
    """Return every netstate chain and rule that `state` needs; empty when it has no network."""
    networks = sorted(state.networks.values(), key=lambda n: n.name)
    if not networks:
        return Ruleset()
    proxy = userland_proxy_enabled(state)
    bindings = sorted(state.bindings.values(), key=lambda b: b.key)
    bridges = {n.name: n.bridge for n in networks}

    rules = [
        *_nat_jumps(proxy),
        *_dnat_chain(networks, bindings, proxy),
        *_postrouting_chain(networks, proxy),
        Rule(FILTER, "FORWARD", CHAIN_USER),
        Rule(FILTER, "FORWARD", CHAIN_FORWARD),
        *_forward_chain(networks, bindings, bridges),
    ]
    chains = ((NAT, CHAIN_DNAT), (NAT, CHAIN_POSTROUTING), (FILTER, CHAIN_USER), (FILTER, CHAIN_FORWARD))
    return Ruleset(chains=chains, rules=tuple(rules))


def _nat_jumps(proxy: bool) -> list[Rule]:
    # With the proxy on, localhost connections stay local and reach the proxy's listeners;
    # without it they are DNATed like any other.
    output_dst = f"!{LOOPBACK}" if proxy else None
    return [
        Rule(NAT, "PREROUTING", CHAIN_DNAT, matches=(_LOCAL_DESTINATION,)),
        Rule(NAT, "OUTPUT", CHAIN_DNAT, dst=output_dst, matches=(_LOCAL_DESTINATION,)),
        Rule(NAT, "POSTROUTING", CHAIN_POSTROUTING),
    ]


def _dnat_chain(networks: list[Network], bindings: list[Binding], proxy: bool) -> list[Rule]:
    rules = []
    if proxy:
        # Containers reaching a published port through a host address get the proxy, which
        # avoids hairpin NAT on the bridge.
        rules += [Rule(NAT, CHAIN_DNAT, "RETURN", comment=mark(n.name), in_interface=n.bridge) for n in networks]
    for binding in bindings:
        rules.append(dnat_rule(binding))
    return rules


def dnat_rule(binding: Binding) -> Rule:
    """Return the DNAT rule of one binding; only a specific host address gets a -d match."""
    key = binding.key
    protocol = key.protocol.value
    dst = None if key.host_ip.is_unspecified else f"{key.host_ip}/32"
    return Rule(
        NAT,
        CHAIN_DNAT,
        "DNAT",
        comment=mark(binding.network, binding.endpoint),
        dst=dst,
        protocol=protocol,
        matches=(_dport(protocol, key.host_port),),
        target_options=(("to-destination", f"{binding.container_ip}:{binding.container_port}"),),
    )


def _postrouting_chain(networks: list[Network], proxy: bool) -> list[Rule]:
    rules = []
    for network in networks:
        subnet, bridge, comment = str(network.subnet), network.bridge, mark(network.name)
        rules.append(Rule(NAT, CHAIN_POSTROUTING, "MASQUERADE", comment=comment, src=subnet, out_interface=f"!{bridge}"))
        if not proxy:
            # A container reaching a published port of its own network through a host address.
            # NOTE: a container reaching its own published port also needs hairpin mode on its
            # bridge port, which netstate does not set.
            rules.append(
                Rule(NAT, CHAIN_POSTROUTING, "MASQUERADE", comment=comment, src=subnet, out_interface=bridge, matches=(_ctstate("DNAT"),))
            )
            # Localhost clients, DNATed in OUTPUT; route_localnet lets them leave the host.
            rules.append(Rule(NAT, CHAIN_POSTROUTING, "MASQUERADE", comment=comment, src=LOOPBACK, out_interface=bridge))
    return rules


def _forward_chain(networks: list[Network], bindings: list[Binding], bridges: dict[str, str]) -> list[Rule]:
    rules = []
    for network in networks:
        bridge, comment = network.bridge, mark(network.name)
        rules.append(Rule(FILTER, CHAIN_FORWARD, "ACCEPT", comment=comment, out_interface=bridge, matches=(_ctstate("RELATED,ESTABLISHED"),)))
        rules.append(Rule(FILTER, CHAIN_FORWARD, "ACCEPT", comment=comment, in_interface=bridge, out_interface=f"!{bridge}"))
    # Two host ports published to the same container port share one rule.
    rules += dict.fromkeys(published_rule(b, bridges[b.network]) for b in bindings)
    # IMPORTANT: the inter-container rules come last, below every ACCEPT above, so switching
    # icc off never hides a published port or a reply.
    for network in networks:
        verdict = "ACCEPT" if network.icc else "DROP"
        rules.append(Rule(FILTER, CHAIN_FORWARD, verdict, comment=mark(network.name), in_interface=network.bridge, out_interface=network.bridge))
    return rules


def published_rule(binding: Binding, bridge: str) -> Rule:
    """Return the FORWARD rule that lets DNATed traffic reach one binding's container port.

    Matching --ctstate DNAT accepts only traffic that came through a published port, not a
    direct connection to the container's address.
    """
    protocol = binding.key.protocol.value
    return Rule(
        FILTER,
        CHAIN_FORWARD,
        "ACCEPT",
        comment=mark(binding.network, binding.endpoint),
        dst=f"{binding.container_ip}/32",
        out_interface=bridge,
        protocol=protocol,
        matches=(_dport(protocol, binding.container_port), _ctstate("DNAT")),
    )


def ruleset_texts(ruleset: Ruleset) -> dict[tuple[str, str], list[str]]:
    """Return the text of every rule grouped by (table, chain), as golden tests compare them."""
    return {chain: [rule.text for rule in rules] for chain, rules in ruleset.by_chain().items()}


def owned_chain(name: str) -> bool:
    """Return whether a chain name carries netstate's prefix."""
    return name == CHAIN_PREFIX or name.startswith(CHAIN_PREFIX + "-")
