"""The forwarding kinds: sysctls, the userland proxy and netstate's firewall rules.

Each kind's desired side comes from the same builders the commands use (`netstate.plan` and
`netstate.firewall.rules`). Each repair is the action a command applies after it commits, so a
repair leaves a kind exactly as the next command would have.

Firewall rules and chains without netstate's mark never appear in a drift: `plan_changes`
leaves them where they are. A netstate chain that still holds such a rule is a notice.
"""

from __future__ import annotations

from dataclasses import dataclass

from netstate.actions import EnsureSysctl, SyncFirewall, SyncProxy
from netstate.domain.state import Binding, State
from netstate.errors import NetstateError
from netstate.firewall.rules import Ruleset, desired_ruleset
from netstate.firewall.sync import ObservedTables, plan_changes
from netstate.plan import plan_sysctls, proxy_bindings
from netstate.reconcile import Drift, Findings, Notice


class SysctlsKind:
    """ip_forward, and route_localnet of each bridge."""

    name = "sysctls"

    def desired(self, state: State) -> tuple[EnsureSysctl, ...]:
        return tuple(plan_sysctls(state))

    def observe(self, kernel, desired: tuple[EnsureSysctl, ...]) -> dict[str, str | None]:
        sysctl = kernel.forwarding.sysctl
        return {action.key: sysctl.read(action.key) for action in desired}

    def diff(self, desired: tuple[EnsureSysctl, ...], observed: dict[str, str | None]) -> Findings:
        findings = Findings(checked={"sysctl": len(desired)})
        for action in desired:
            found = observed.get(action.key)
            if found == action.value:
                continue
            value = "missing" if found is None else found
            findings.drifts.append(
                Drift(
                    kind="sysctl",
                    object=action.key,
                    problem="missing" if found is None else "value",
                    expected=action.value,
                    found=value,
                    message=f"sysctl {action.key} is {value}, expected {action.value}",
                    repair=(action,),
                )
            )
        return findings


@dataclass(frozen=True, slots=True)
class ObservedProxy:
    """The running proxy's pid and the mapping keys it serves; pid None when none responds."""

    pid: int | None
    serving: frozenset = frozenset()
    # The error of the status request, when the proxy's socket exists but the request failed.
    error: str | None = None


class ProxyKind:
    """The userland proxy: running exactly when some mapping needs it, serving every one."""

    name = "proxy"

    def desired(self, state: State) -> tuple[Binding, ...]:
        return proxy_bindings(state)

    def observe(self, kernel, desired: tuple[Binding, ...]) -> ObservedProxy:
        try:
            status = kernel.forwarding.proxy.status()
        except NetstateError as err:
            return ObservedProxy(pid=None, error=str(err))
        if status is None:
            return ObservedProxy(pid=None)
        return ObservedProxy(pid=status.pid, serving=frozenset(status.serving))

    def diff(self, desired: tuple[Binding, ...], observed: ObservedProxy) -> Findings:
        from netstate.kernel.proxy import to_mapping

        findings = Findings(checked={"mapping": len(desired)})
        repair = (SyncProxy(desired, None),)
        if observed.error is not None:
            findings.drifts.append(
                Drift("proxy", "netstate-proxy", "unresponsive", "answering", "no answer",
                      f"the userland proxy does not answer: {observed.error}; see its log next to the database")
            )
            return findings
        if not desired:
            if observed.pid is not None:
                findings.drifts.append(
                    Drift("proxy", "netstate-proxy", "stale", "not running", f"pid {observed.pid}",
                          f"the userland proxy (pid {observed.pid}) runs but no mapping needs it", repair)
                )
            return findings
        if observed.pid is None:
            findings.drifts.append(
                Drift("proxy", "netstate-proxy", "missing", f"running, serving {len(desired)} mapping(s)",
                      "not running", "the userland proxy is not running", repair)
            )
            return findings
        wanted = {to_mapping(b): b for b in desired}
        for mapping in sorted(set(wanted) - observed.serving, key=lambda m: m.key):
            where = _where(mapping)
            findings.drifts.append(
                Drift("proxy", where, "missing", f"served to {mapping.container_ip}:{mapping.container_port}",
                      "not served", f"the userland proxy does not serve {where}", repair)
            )
        for mapping in sorted(observed.serving - set(wanted), key=lambda m: m.key):
            where = _where(mapping)
            findings.drifts.append(
                Drift("proxy", where, "stale", "not served", f"served to {mapping.container_ip}:{mapping.container_port}",
                      f"the userland proxy serves {where}, which no mapping records", repair)
            )
        return findings


def _where(mapping) -> str:
    return f"{mapping.host_ip}:{mapping.host_port}/{mapping.protocol}"


class FirewallKind:
    """netstate's chains and rules in the nat and filter tables."""

    name = "firewall"

    def desired(self, state: State) -> Ruleset:
        return desired_ruleset(state)

    def observe(self, kernel, desired: Ruleset) -> ObservedTables:
        return kernel.forwarding.firewall.observe()

    def diff(self, desired: Ruleset, observed: ObservedTables) -> Findings:
        findings = Findings(checked={"rule": len(desired.rules)})
        changes = plan_changes(desired, observed)
        repair = (SyncFirewall(desired),)
        for table, chain in changes.create_chains:
            findings.drifts.append(
                Drift("chain", f"{table}/{chain}", "missing", "present", "absent",
                      f"netstate chain {chain} of table {table} is missing", repair)
            )
        for table, chain in changes.delete_chains:
            findings.drifts.append(
                Drift("chain", f"{table}/{chain}", "stale", "absent", "present",
                      f"netstate chain {chain} of table {table} is not in the record", repair)
            )
        added, removed = set(changes.added), set(changes.removed)
        for text in changes.added:
            problem = "order" if text in removed else "missing"
            state = "out of place" if problem == "order" else "missing"
            findings.drifts.append(Drift("rule", text, problem, "present", state, f"netstate rule {state}: {text}", repair))
        for text in changes.removed:
            if text in added:
                continue
            findings.drifts.append(
                Drift("rule", text, "stale", "absent", "present", f"netstate rule not in the record: {text}", repair)
            )
        for table, chain in changes.kept_chains:
            findings.notices.append(
                Notice("chain", f"{table}/{chain}",
                       f"netstate chain {chain} of table {table} is no longer needed but holds rules "
                       "netstate did not create; left in place")
            )
        return findings
