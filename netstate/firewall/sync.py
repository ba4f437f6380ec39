"""Desired rules against observed rules: parsing `iptables-save` output and planning the edits.

The plan keeps every rule without the netstate mark where it is. For each chain it:

1. deletes marked rules that are not desired, and every copy after the first of a desired rule;
2. keeps the longest run of the remaining marked rules that is already in desired order, and
   deletes the others so they are inserted again in place;
3. inserts each missing rule right after the desired rule that precedes it, or at the top of
   the chain when none does.

Applying the plan to the observed tables yields exactly the desired rules in desired order, and
planning again yields nothing: this is what makes `sync` idempotent and `check` precise.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from netstate.firewall.rules import MARK, TABLES, Rule, Ruleset, owned_chain

_COMMENT = re.compile(r' -m comment --comment ("(?:[^"\\]|\\.)*"|\S+)')
_JUMP = re.compile(r" -[jg] (\S+)")


@dataclass(frozen=True, slots=True)
class ObservedTables:
    """Every rule of the observed tables by (table, chain), in kernel order, as save text."""

    chains: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def marked(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """Return only the rules carrying the netstate mark, by chain."""
        found = {}
        for chain, texts in self.chains.items():
            mine = tuple(text for text in texts if is_marked(text))
            if mine:
                found[chain] = mine
        return found


def comment_of(text: str) -> str | None:
    """Return the comment of a rule line as iptables-save prints it, unquoted, or None."""
    found = _COMMENT.search(text)
    if found is None:
        return None
    value = found.group(1)
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def is_marked(text: str) -> bool:
    """Return whether a rule line carries netstate's ownership mark."""
    comment = comment_of(text)
    return comment is not None and (comment == MARK or comment.startswith(MARK + " "))


def parse_save(text: str, tables: tuple[str, ...] = TABLES) -> ObservedTables:
    """Parse `iptables-save` output into the rules of `tables`; other tables are skipped."""
    chains: dict[tuple[str, str], list[str]] = {}
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            if table not in tables:
                table = None
        elif table is None or not line or line.startswith("#"):
            continue
        elif line.startswith(":"):
            chains.setdefault((table, line[1:].split(" ", 1)[0]), [])
        elif line.startswith("-A "):
            name = line.split(" ", 2)[1]
            chains.setdefault((table, name), []).append(line)
    return ObservedTables({chain: tuple(texts) for chain, texts in chains.items()})


@dataclass(frozen=True, slots=True)
class ChainEdit:
    """Edits of one chain: deletions by observed position, then insertions in order."""

    table: str
    chain: str
    # How many rules the chain held when observed; the adapter checks it before editing.
    observed_count: int
    # Positions (0-based) in the observed chain, highest first, so each stays valid.
    deletions: tuple[int, ...]
    # (position, rule) applied one after another, after the deletions.
    insertions: tuple[tuple[int, Rule], ...]


@dataclass(frozen=True, slots=True)
class FirewallChanges:
    """What a sync changes, or what `check` reports as drift."""

    create_chains: tuple[tuple[str, str], ...] = ()
    edits: tuple[ChainEdit, ...] = ()
    delete_chains: tuple[tuple[str, str], ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    # Owned chains that are no longer desired but still hold rules without the mark, or are
    # the target of such rules; they are left in place.
    kept_chains: tuple[tuple[str, str], ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.create_chains or self.edits or self.delete_chains)

    def tables(self) -> list[str]:
        """Return the tables these changes touch, in TABLES order."""
        touched = {t for t, _ in self.create_chains} | {t for t, _ in self.delete_chains}
        touched |= {edit.table for edit in self.edits}
        return [table for table in TABLES if table in touched]


def plan_changes(desired: Ruleset, observed: ObservedTables) -> FirewallChanges:
    """Return the edits that turn the observed tables into the desired ones."""
    desired_rules = desired.by_chain()
    desired_chains = set(desired.chains)
    create = tuple(chain for chain in desired.chains if chain not in observed.chains)

    edits: list[ChainEdit] = []
    added: list[str] = []
    removed: list[str] = []
    remaining: dict[tuple[str, str], list[str]] = {}
    for chain in sorted(set(desired_rules) | set(observed.chains)):
        present = list(observed.chains.get(chain, ()))
        edit, after = _plan_chain(chain, desired_rules.get(chain, []), present)
        remaining[chain] = after
        if edit.deletions or edit.insertions:
            edits.append(edit)
            removed += [present[p] for p in sorted(edit.deletions)]
            added += [rule.text for _, rule in edit.insertions]

    delete, kept = [], []
    for chain in sorted(observed.chains):
        if chain in desired_chains or not owned_chain(chain[1]):
            continue
        if remaining[chain] or _referenced(chain, remaining):
            kept.append(chain)
        else:
            delete.append(chain)
    return FirewallChanges(
        create_chains=create,
        edits=tuple(edits),
        delete_chains=tuple(delete),
        added=tuple(added),
        removed=tuple(removed),
        kept_chains=tuple(kept),
    )


def _plan_chain(chain: tuple[str, str], desired: list[Rule], present: list[str]) -> tuple[ChainEdit, list[str]]:
    """Plan one chain; return the edit and the chain's rule texts after it."""
    index = {}
    for i, rule in enumerate(desired):
        if rule.text in index:
            raise ValueError(f"desired rule listed twice in {chain}: {rule.text}")
        index[rule.text] = i

    # 1. Marked rules that are not desired, or repeat a desired one, go.
    deletions = set()
    kept: list[tuple[int, int]] = []  # (observed position, desired index)
    seen = set()
    for position, text in enumerate(present):
        if not is_marked(text):
            continue
        i = index.get(text)
        if i is None or i in seen:
            deletions.add(position)
        else:
            seen.add(i)
            kept.append((position, i))

    # 2. Out-of-order rules go too and are inserted again where they belong.
    in_order = _longest_increasing([i for _, i in kept])
    for k, (position, _) in enumerate(kept):
        if k not in in_order:
            deletions.add(position)

    # 3. Merge: walk the desired rules, inserting each missing one after its predecessor.
    current = [(text, index.get(text) if is_marked(text) else None) for p, text in enumerate(present) if p not in deletions]
    available = {i for _, i in current if i is not None}
    result: list[str] = []
    insertions: list[tuple[int, Rule]] = []
    cursor = 0
    for i, rule in enumerate(desired):
        if i in available:
            while current[cursor][1] != i:
                result.append(current[cursor][0])
                cursor += 1
            result.append(current[cursor][0])
            cursor += 1
        else:
            insertions.append((len(result), rule))
            result.append(rule.text)
    result += [text for text, _ in current[cursor:]]

    edit = ChainEdit(chain[0], chain[1], len(present), tuple(sorted(deletions, reverse=True)), tuple(insertions))
    return edit, result


def _longest_increasing(values: list[int]) -> set[int]:
    """Return the positions in `values` of one longest strictly increasing subsequence."""
    tails: list[int] = []  # tails[k]: smallest tail value of an increasing run of length k+1
    tail_positions: list[int] = []
    previous = [-1] * len(values)
    for position, value in enumerate(values):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_positions.append(position)
        else:
            tails[k] = value
            tail_positions[k] = position
        previous[position] = tail_positions[k - 1] if k > 0 else -1
    chosen = set()
    position = tail_positions[-1] if tail_positions else -1
    while position != -1:
        chosen.add(position)
        position = previous[position]
    return chosen


def _referenced(chain: tuple[str, str], remaining: dict[tuple[str, str], list[str]]) -> bool:
    table, name = chain
    for (other_table, _), texts in remaining.items():
        if other_table != table:
            continue
        for text in texts:
            jump = _JUMP.search(text)
            if jump is not None and jump.group(1) == name:
                return True
    return False


def apply_to_texts(observed: ObservedTables, changes: FirewallChanges) -> ObservedTables:
    """Return the tables that applying `changes` to `observed` yields (for fakes and tests)."""
    chains = {chain: list(texts) for chain, texts in observed.chains.items()}
    for chain in changes.create_chains:
        chains.setdefault(chain, [])
    for edit in changes.edits:
        texts = chains.setdefault((edit.table, edit.chain), [])
        for position in edit.deletions:
            del texts[position]
        for position, rule in edit.insertions:
            texts.insert(position, rule.text)
    for chain in changes.delete_chains:
        del chains[chain]
    return ObservedTables({chain: tuple(texts) for chain, texts in chains.items()})
