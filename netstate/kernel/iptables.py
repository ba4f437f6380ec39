"""netstate's chains and rules in the legacy iptables tables, through python-iptables.

`sync` makes the kernel hold exactly the desired netstate rules. In one pass, with the xtables
lock held (the lock file iptables-legacy itself takes, so the two never interleave):

1. observe: run `iptables-legacy-save` once and parse it. This takes about 6 ms for 1,000
   rules, where decoding each rule through python-iptables takes about 0.1 ms.
2. plan the edits with `netstate.firewall.sync.plan_changes`, comparing rules by their save
   text. A rule already present is never inserted again; a marked rule that is not desired is
   deleted; a rule without the mark is never touched.
3. apply them through python-iptables (libiptc) with autocommit off: one commit per table,
   because libiptc rewrites the whole table on every commit.

If anything fails before a table's commit, that table is left exactly as it was.
"""

from __future__ import annotations

import logging
import os
import subprocess

from netstate.crash import crashpoint
from netstate.errors import KernelError
from netstate.kernel.locking import exclusive_lock
from netstate.firewall.rules import Rule, Ruleset
from netstate.firewall.sync import FirewallChanges, ObservedTables, parse_save, plan_changes

log = logging.getLogger(__name__)

SAVE_COMMAND = "iptables-legacy-save"
SAVE_TIMEOUT_S = 30
# The lock file iptables-legacy takes; XTABLES_LOCKFILE overrides it for iptables too.
DEFAULT_XTABLES_LOCK = "/run/xtables.lock"


class IptablesFirewall:
    """Firewall adapter on the legacy tables of the namespace this process runs in."""

    def __init__(self, save_command: str = SAVE_COMMAND, lock_path: str | None = None) -> None:
        self.save_command = save_command
        self.lock_path = lock_path or os.environ.get("XTABLES_LOCKFILE") or DEFAULT_XTABLES_LOCK

    def observe(self) -> ObservedTables:
        """Return every rule of the nat and filter tables as `iptables-legacy-save` prints it."""
        try:
            done = subprocess.run(
                [self.save_command], capture_output=True, text=True, timeout=SAVE_TIMEOUT_S, check=False
            )
        except FileNotFoundError as err:
            raise KernelError(f"{self.save_command} not found; install the iptables package") from err
        except subprocess.TimeoutExpired as err:
            raise KernelError(f"{self.save_command} timed out after {SAVE_TIMEOUT_S} s") from err
        if done.returncode != 0:
            raise KernelError(f"{self.save_command} failed ({done.returncode}): {done.stderr.strip()}")
        return parse_save(done.stdout)

    def sync(self, ruleset: Ruleset) -> FirewallChanges:
        """Make netstate's chains and rules exactly `ruleset`; return what changed."""
        with exclusive_lock(self.lock_path, "xtables lock"):
            changes = plan_changes(ruleset, self.observe())
            if changes.changed:
                self._apply(changes)
        if changes.changed:
            log.info(
                "firewall synced: %d rule(s) added, %d removed, chains created %s, deleted %s",
                len(changes.added), len(changes.removed),
                _names(changes.create_chains), _names(changes.delete_chains),
            )
        for table, chain in changes.kept_chains:
            log.warning("chain %s in table %s is no longer needed but contains rules netstate did not create; left in place", chain, table)
        return changes

    def _apply(self, changes: FirewallChanges) -> None:
        import iptc

        for name in changes.tables():
            table = iptc.Table(name, autocommit=False)
            try:
                table.refresh()
                _apply_table(table, name, changes)
                table.commit()
                crashpoint(f"firewall:{name}-committed")
            except iptc.IPTCError as err:
                raise KernelError(f"cannot update iptables table {name}: {err}") from err
            finally:
                # Drops the handle, and with it any edit left uncommitted by a failure.
                _refresh_quietly(table)


def _apply_table(table, name: str, changes: FirewallChanges) -> None:
    builder = EntryBuilder()
    for table_name, chain in changes.create_chains:
        if table_name == name:
            table.create_chain(chain)
    for edit in changes.edits:
        if edit.table != name:
            continue
        _check_length(table, edit)
        for position in edit.deletions:
            if table._iptc.iptc_delete_num_entry(edit.chain.encode(), position, table._handle) != 1:
                raise KernelError(f"cannot delete rule {position + 1} of chain {edit.chain}: {table.strerror()}")
        for position, rule in edit.insertions:
            table.insert_entry(edit.chain, builder.entry(rule), position)
    for table_name, chain in changes.delete_chains:
        if table_name == name:
            table.delete_chain(chain)


def _check_length(table, edit) -> None:
    """Raise unless the chain contains as many rules as observed, so the positions are valid.

    Only a program that writes the tables without taking the xtables lock can get in between.
    """
    count = 0
    if table.is_chain(edit.chain):
        entry = table.first_rule(edit.chain)
        while entry:
            count += 1
            entry = table.next_rule(entry)
    if count != edit.observed_count:
        msg = (
            f"chain {edit.chain} of table {edit.table} changed during the sync "
            f"({edit.observed_count} rules seen, {count} now); run the command again"
        )
        raise KernelError(msg)


class EntryBuilder:
    """Builds libiptc entries of rules through python-iptables, reusing one template per shape.

    Rules that differ only in option values, such as the DNAT rules of 1,000 ports, share a
    template whose matches are reset and parsed again for each rule. A target with options gets
    a new target object for each rule instead: the NAT targets realloc their buffer when parsed
    a second time, and python-iptables 1.2.0 then frees the old one again. The kernel tests
    compare every rule written with `iptables-legacy-save`, over many rules of shared shapes.
    """

    def __init__(self) -> None:
        self._templates: dict[tuple, tuple] = {}

    def entry(self, rule: Rule):
        """Return the entry for `rule`, valid until the next call."""
        key = (
            rule.protocol, rule.src, rule.dst, rule.in_interface, rule.out_interface, rule.comment,
            tuple((m.name, tuple(option for option, _ in m.options)) for m in rule.matches),
            rule.target, tuple(option for option, _ in rule.target_options),
        )
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = _template(rule)
        built, matches, comment, target = template
        for module, match in zip(matches, rule.matches):
            # Without a reset some modules keep the first value (udp in iptables 1.8.9).
            module.reset()
            for option, value in match.options:
                module.parse(option, value)
        if rule.target_options:
            target = built.create_target(rule.target)
            for option, value in rule.target_options:
                target.parse(option, value)
        # NOTE: python-iptables 1.2.0's public final_check() re-parses every option by capturing
        # C stdout through a pipe, about 0.4 ms per rule. The modules' own checks are enough.
        for module in (*matches, comment, target):
            module._final_check()
        return built.rule


def _template(rule: Rule) -> tuple:
    """Build a python-iptables rule of the same shape as `rule`, with its matches and target."""
    import iptc

    built = iptc.Rule()
    if rule.src is not None:
        built.src = rule.src
    if rule.dst is not None:
        built.dst = rule.dst
    if rule.in_interface is not None:
        built.in_interface = rule.in_interface
    if rule.out_interface is not None:
        built.out_interface = rule.out_interface
    if rule.protocol is not None:
        built.protocol = rule.protocol
    matches = [built.create_match(match.name) for match in rule.matches]
    comment = built.create_match("comment")
    comment.parse("comment", rule.comment)
    # A target with options is created for each rule; see EntryBuilder.
    target = None if rule.target_options else built.create_target(rule.target)
    return built, matches, comment, target


def _refresh_quietly(table) -> None:
    try:
        table.refresh()
    except Exception as err:  # noqa: BLE001 - the original error, if any, matters more
        log.warning("cannot refresh iptables table %s: %s", table.name, err)


def _names(chains) -> str:
    return ", ".join(f"{table}/{chain}" for table, chain in chains) or "none"
