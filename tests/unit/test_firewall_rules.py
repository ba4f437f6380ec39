"""The desired rule set of a State (golden) and the plan that syncs observed tables to it."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from netstate.domain.events import (
    AddressAllocated,
    IccChanged,
    NetworkCreated,
    PortMapped,
    Protocol,
    SettingChanged,
)
from netstate.domain.state import State, fold
from netstate.firewall.rules import Rule, desired_ruleset, ruleset_texts, save_string
from netstate.firewall.sync import (
    ObservedTables,
    apply_to_texts,
    comment_of,
    is_marked,
    parse_save,
    plan_changes,
)
from netstate.kernel.fake import FakeFirewall

WEB = NetworkCreated(network="web", subnet=IPv4Network("10.44.0.0/24"), gateway=IPv4Address("10.44.0.1"), bridge="nsweb0")
DB = NetworkCreated(network="db", subnet=IPv4Network("10.45.0.0/24"), gateway=IPv4Address("10.45.0.1"), bridge="nsdb0", icc=False)
C1 = AddressAllocated(network="web", endpoint="c1", address=IPv4Address("10.44.0.2"))
C2 = AddressAllocated(network="db", endpoint="c2", address=IPv4Address("10.45.0.2"))


def mapped(endpoint, network, container_ip, protocol, host_ip, host_port, container_port) -> PortMapped:
    return PortMapped(
        network=network, endpoint=endpoint, protocol=Protocol(protocol), host_ip=IPv4Address(host_ip),
        host_port=host_port, container_ip=IPv4Address(container_ip), container_port=container_port,
    )


def scenario(*extra) -> State:
    return fold([
        WEB, DB, C1, C2,
        mapped("c1", "web", "10.44.0.2", "tcp", "0.0.0.0", 8080, 80),
        mapped("c1", "web", "10.44.0.2", "udp", "127.0.0.1", 5353, 53),
        mapped("c2", "db", "10.45.0.2", "sctp", "192.0.2.10", 9000, 9000),
        *extra,
    ])


GOLDEN_PROXY_ON = {
    ("nat", "PREROUTING"): [
        "-A PREROUTING -m addrtype --dst-type LOCAL -m comment --comment netstate -j NETSTATE",
    ],
    ("nat", "OUTPUT"): [
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -m comment --comment netstate -j NETSTATE",
    ],
    ("nat", "POSTROUTING"): [
        "-A POSTROUTING -m comment --comment netstate -j NETSTATE-POSTROUTING",
    ],
    ("nat", "NETSTATE"): [
        '-A NETSTATE -i nsdb0 -m comment --comment "netstate db" -j RETURN',
        '-A NETSTATE -i nsweb0 -m comment --comment "netstate web" -j RETURN',
        '-A NETSTATE -d 192.0.2.10/32 -p sctp -m sctp --dport 9000 -m comment --comment "netstate db c2" -j DNAT --to-destination 10.45.0.2:9000',
        '-A NETSTATE -p tcp -m tcp --dport 8080 -m comment --comment "netstate web c1" -j DNAT --to-destination 10.44.0.2:80',
        '-A NETSTATE -d 127.0.0.1/32 -p udp -m udp --dport 5353 -m comment --comment "netstate web c1" -j DNAT --to-destination 10.44.0.2:53',
    ],
    ("nat", "NETSTATE-POSTROUTING"): [
        '-A NETSTATE-POSTROUTING -s 10.45.0.0/24 ! -o nsdb0 -m comment --comment "netstate db" -j MASQUERADE',
        '-A NETSTATE-POSTROUTING -s 10.44.0.0/24 ! -o nsweb0 -m comment --comment "netstate web" -j MASQUERADE',
    ],
    ("filter", "FORWARD"): [
        "-A FORWARD -m comment --comment netstate -j NETSTATE-USER",
        "-A FORWARD -m comment --comment netstate -j NETSTATE-FORWARD",
    ],
    ("filter", "NETSTATE-FORWARD"): [
        '-A NETSTATE-FORWARD -o nsdb0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "netstate db" -j ACCEPT',
        '-A NETSTATE-FORWARD -i nsdb0 ! -o nsdb0 -m comment --comment "netstate db" -j ACCEPT',
        '-A NETSTATE-FORWARD -o nsweb0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "netstate web" -j ACCEPT',
        '-A NETSTATE-FORWARD -i nsweb0 ! -o nsweb0 -m comment --comment "netstate web" -j ACCEPT',
        '-A NETSTATE-FORWARD -d 10.45.0.2/32 -o nsdb0 -p sctp -m sctp --dport 9000 -m conntrack --ctstate DNAT -m comment --comment "netstate db c2" -j ACCEPT',
        '-A NETSTATE-FORWARD -d 10.44.0.2/32 -o nsweb0 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -m comment --comment "netstate web c1" -j ACCEPT',
        '-A NETSTATE-FORWARD -d 10.44.0.2/32 -o nsweb0 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT -m comment --comment "netstate web c1" -j ACCEPT',
        '-A NETSTATE-FORWARD -i nsdb0 -o nsdb0 -m comment --comment "netstate db" -j DROP',
        '-A NETSTATE-FORWARD -i nsweb0 -o nsweb0 -m comment --comment "netstate web" -j ACCEPT',
    ],
}


class TestDesiredRuleset:
    def test_proxy_on_matches_golden(self):
        assert ruleset_texts(desired_ruleset(scenario())) == GOLDEN_PROXY_ON

    def test_proxy_off_routes_localhost_through_nat(self):
        texts = ruleset_texts(desired_ruleset(scenario(SettingChanged(network="", key="userland-proxy", value="false"))))

        assert texts[("nat", "OUTPUT")] == [
            "-A OUTPUT -m addrtype --dst-type LOCAL -m comment --comment netstate -j NETSTATE",
        ]
        assert not any("RETURN" in t for t in texts[("nat", "NETSTATE")])
        assert texts[("nat", "NETSTATE-POSTROUTING")] == [
            '-A NETSTATE-POSTROUTING -s 10.45.0.0/24 ! -o nsdb0 -m comment --comment "netstate db" -j MASQUERADE',
            '-A NETSTATE-POSTROUTING -s 10.45.0.0/24 -o nsdb0 -m conntrack --ctstate DNAT -m comment --comment "netstate db" -j MASQUERADE',
            '-A NETSTATE-POSTROUTING -s 127.0.0.0/8 -o nsdb0 -m comment --comment "netstate db" -j MASQUERADE',
            '-A NETSTATE-POSTROUTING -s 10.44.0.0/24 ! -o nsweb0 -m comment --comment "netstate web" -j MASQUERADE',
            '-A NETSTATE-POSTROUTING -s 10.44.0.0/24 -o nsweb0 -m conntrack --ctstate DNAT -m comment --comment "netstate web" -j MASQUERADE',
            '-A NETSTATE-POSTROUTING -s 127.0.0.0/8 -o nsweb0 -m comment --comment "netstate web" -j MASQUERADE',
        ]
        assert texts[("filter", "NETSTATE-FORWARD")] == GOLDEN_PROXY_ON[("filter", "NETSTATE-FORWARD")]

    def test_no_network_needs_no_rule(self):
        ruleset = desired_ruleset(State())

        assert ruleset.rules == ()
        assert ruleset.chains == ()

    def test_icc_rule_is_last_whatever_the_bindings(self):
        state = scenario(mapped("c1", "web", "10.44.0.2", "tcp", "0.0.0.0", 8081, 81))
        forward = ruleset_texts(desired_ruleset(state))[("filter", "NETSTATE-FORWARD")]

        verdicts = [t for t in forward if t.endswith(("-j DROP", '"netstate web" -j ACCEPT')) and "-i ns" in t and " -o ns" in t and "!" not in t]
        assert forward[-len(verdicts):] == verdicts

    def test_two_host_ports_to_one_container_port_share_forward_rule(self):
        state = scenario(mapped("c1", "web", "10.44.0.2", "tcp", "0.0.0.0", 8081, 80))
        forward = ruleset_texts(desired_ruleset(state))[("filter", "NETSTATE-FORWARD")]

        assert sum("--dport 80 " in t for t in forward) == 1

    def test_every_rule_carries_the_mark(self):
        for rule in desired_ruleset(scenario()).rules:
            assert is_marked(rule.text), rule.text


class TestSaveText:
    @pytest.mark.parametrize(
        ("value", "saved"),
        [("netstate", "netstate"), ("netstate web", '"netstate web"'), ("a.b", '"a.b"'), ('x"y', '"x\\"y"'), ("", '""')],
    )
    def test_save_string_quotes_as_iptables_save(self, value, saved):
        assert save_string(value) == saved

    def test_comment_round_trips(self):
        for comment in ("netstate", "netstate web c1", 'netstate we"ird \\ name'):
            text = Rule("filter", "X", "ACCEPT", comment=comment).text
            assert comment_of(text) == comment

    @pytest.mark.parametrize(
        ("text", "marked"),
        [
            ("-A X -m comment --comment netstate -j ACCEPT", True),
            ('-A X -m comment --comment "netstate web" -j ACCEPT', True),
            ('-A X -m comment --comment "netstatex" -j ACCEPT', False),
            ("-A X -m comment --comment docker -j ACCEPT", False),
            ("-A X -j ACCEPT", False),
        ],
    )
    def test_mark_is_recognised_exactly(self, text, marked):
        assert is_marked(text) is marked

    def test_parse_save_keeps_order_and_empty_chains(self):
        saved = "\n".join([
            "# Generated by iptables-save",
            "*mangle", ":PREROUTING ACCEPT [0:0]", "-A PREROUTING -j ACCEPT", "COMMIT",
            "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":MINE - [0:0]",
            "-A FORWARD -j MINE", "-A FORWARD -m comment --comment netstate -j ACCEPT", "COMMIT",
        ])

        observed = parse_save(saved)

        assert observed.chains == {
            ("filter", "INPUT"): (),
            ("filter", "FORWARD"): ("-A FORWARD -j MINE", "-A FORWARD -m comment --comment netstate -j ACCEPT"),
            ("filter", "MINE"): (),
        }


def empty_tables() -> ObservedTables:
    return FakeFirewall().observe()


class TestPlanChanges:
    def test_sync_from_empty_then_nothing(self):
        desired = desired_ruleset(scenario())

        first = plan_changes(desired, empty_tables())
        after = apply_to_texts(empty_tables(), first)
        second = plan_changes(desired, after)

        assert first.changed
        assert len(first.added) == len(desired.rules)
        assert not second.changed
        assert {c: list(t) for c, t in after.marked().items()} == GOLDEN_PROXY_ON

    def test_foreign_rules_are_never_touched(self):
        foreign = {
            ("filter", "FORWARD"): ("-A FORWARD -s 10.9.9.9/32 -j ACCEPT", "-A FORWARD -j DROP"),
            ("nat", "PREROUTING"): ("-A PREROUTING -p tcp -m tcp --dport 22 -j DNAT --to-destination 10.9.9.9:22",),
        }
        tables = ObservedTables({**empty_tables().chains, **foreign})

        after = apply_to_texts(tables, plan_changes(desired_ruleset(scenario()), tables))

        for chain, texts in foreign.items():
            assert [t for t in after.chains[chain] if not is_marked(t)] == list(texts)
        # Jumps go to the top of the built-in chain, above the foreign DROP.
        assert after.chains[("filter", "FORWARD")][:2] == tuple(GOLDEN_PROXY_ON[("filter", "FORWARD")])

    def test_stale_and_duplicate_marked_rules_are_removed(self):
        stale = '-A NETSTATE -p tcp -m tcp --dport 1 -m comment --comment "netstate web old" -j DNAT --to-destination 10.44.0.9:1'
        synced = apply_to_texts(empty_tables(), plan_changes(desired_ruleset(scenario()), empty_tables()))
        chains = dict(synced.chains)
        dnat = list(chains[("nat", "NETSTATE")])
        chains[("nat", "NETSTATE")] = (*dnat, stale, dnat[2])
        tables = ObservedTables(chains)

        changes = plan_changes(desired_ruleset(scenario()), tables)

        assert set(changes.removed) == {stale, dnat[2]}
        assert changes.added == ()
        assert apply_to_texts(tables, changes).chains[("nat", "NETSTATE")] == tuple(dnat)

    def test_out_of_order_rule_is_moved_not_duplicated(self):
        synced = apply_to_texts(empty_tables(), plan_changes(desired_ruleset(scenario()), empty_tables()))
        chains = dict(synced.chains)
        forward = list(chains[("filter", "NETSTATE-FORWARD")])
        drop = forward.pop(-2)
        chains[("filter", "NETSTATE-FORWARD")] = (drop, *forward)  # DROP above every ACCEPT
        tables = ObservedTables(chains)

        changes = plan_changes(desired_ruleset(scenario()), tables)
        after = apply_to_texts(tables, changes)

        assert changes.removed == (drop,)
        assert changes.added == (drop,)
        assert list(after.chains[("filter", "NETSTATE-FORWARD")]) == GOLDEN_PROXY_ON[("filter", "NETSTATE-FORWARD")]

    def test_new_binding_is_inserted_above_icc_rules(self):
        before = scenario()
        tables = apply_to_texts(empty_tables(), plan_changes(desired_ruleset(before), empty_tables()))
        after_state = scenario(mapped("c1", "web", "10.44.0.2", "tcp", "0.0.0.0", 9999, 99))

        changes = plan_changes(desired_ruleset(after_state), tables)
        forward = apply_to_texts(tables, changes).chains[("filter", "NETSTATE-FORWARD")]

        new = next(i for i, t in enumerate(forward) if "--dport 99 " in t)
        first_icc = next(i for i, t in enumerate(forward) if "-i nsdb0 -o nsdb0" in t)
        assert changes.removed == ()
        assert len(changes.added) == 2
        assert new < first_icc

    def test_unwanted_chains_are_deleted_when_empty(self):
        tables = apply_to_texts(empty_tables(), plan_changes(desired_ruleset(scenario()), empty_tables()))

        changes = plan_changes(desired_ruleset(State()), tables)
        after = apply_to_texts(tables, changes)

        assert not any(is_marked(t) for texts in after.chains.values() for t in texts)
        assert {c for c in after.chains if c[1].startswith("NETSTATE")} == set()

    def test_chain_with_foreign_rules_is_kept(self):
        tables = apply_to_texts(empty_tables(), plan_changes(desired_ruleset(scenario()), empty_tables()))
        chains = dict(tables.chains)
        chains[("filter", "NETSTATE-USER")] = ("-A NETSTATE-USER -s 10.44.0.2/32 -d 10.44.0.3/32 -j ACCEPT",)
        tables = ObservedTables(chains)

        changes = plan_changes(desired_ruleset(State()), tables)

        assert ("filter", "NETSTATE-USER") in changes.kept_chains
        assert ("filter", "NETSTATE-USER") not in changes.delete_chains
        assert apply_to_texts(tables, changes).chains[("filter", "NETSTATE-USER")] == chains[("filter", "NETSTATE-USER")]


class TestIccSwitching:
    def test_switching_many_times_never_grows_and_drop_stays_last(self):
        firewall = FakeFirewall()
        state = scenario()
        firewall.sync(desired_ruleset(state))
        size = sum(len(t) for t in firewall.tables.chains.values())

        for icc in [False, True] * 10 + [False]:
            fold([IccChanged(network="web", icc=icc)], state)
            firewall.sync(desired_ruleset(state))

        forward = firewall.rules("filter", "NETSTATE-FORWARD")
        assert sum(len(t) for t in firewall.tables.chains.values()) == size
        assert sum('"netstate web" -j DROP' in t for t in forward) == 1
        assert not any('-i nsweb0 -o nsweb0 -m comment --comment "netstate web" -j ACCEPT' in t for t in forward)
        assert forward[-1] == '-A NETSTATE-FORWARD -i nsweb0 -o nsweb0 -m comment --comment "netstate web" -j DROP'
        first_drop = next(i for i, t in enumerate(forward) if t.endswith("-j DROP"))
        assert all(not t.endswith("-j ACCEPT") for t in forward[first_drop:])

    def test_allow_rule_in_user_chain_is_evaluated_before_drop(self):
        firewall = FakeFirewall()
        state = scenario(IccChanged(network="web", icc=False))
        firewall.sync(desired_ruleset(state))
        allow = "-A NETSTATE-USER -s 10.44.0.2/32 -d 10.44.0.3/32 -j ACCEPT"
        firewall.insert_foreign("filter", "NETSTATE-USER", allow)

        for icc in (True, False, True, False):
            fold([IccChanged(network="web", icc=icc)], state)
            firewall.sync(desired_ruleset(state))

        assert firewall.rules("filter", "NETSTATE-USER") == [allow]
        assert firewall.rules("filter", "FORWARD")[0].endswith("-j NETSTATE-USER")
