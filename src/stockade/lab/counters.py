"""Packet counters from `iptables-save -c`, and what moved between two snapshots.

A rule is named by (table, chain, n), n counting from 1 in the order
iptables-save prints the chain's rules, which is the kernel's order. A built-in
chain's header counter counts the packets its policy decided.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_HEADER = re.compile(r"^:(\S+)\s+(\S+)\s+\[(\d+):(\d+)\]\s*$")
_RULE = re.compile(r"^\[(\d+):(\d+)\]\s+-A\s+(\S+)(?:\s|$)")

RuleKey = tuple[str, str, int]
ChainKey = tuple[str, str]


@dataclass(frozen=True)
class Snapshot:
    rules: dict[RuleKey, int] = field(default_factory=dict)  # packets per rule
    policies: dict[ChainKey, int] = field(default_factory=dict)  # packets per built-in chain policy
    rule_counts: dict[ChainKey, int] = field(default_factory=dict)  # rules per chain


@dataclass(frozen=True)
class Moved:
    """Counters that moved between two snapshots (packets, only those that changed)."""

    rules: Counter
    policies: Counter

    def table(self, name: str) -> Moved:
        return Moved(Counter({k: v for k, v in self.rules.items() if k[0] == name}),
                     Counter({k: v for k, v in self.policies.items() if k[0] == name}))


def read_counters(text: str) -> Snapshot:
    """Parse `iptables-save -c` output (every table in it)."""
    snap = Snapshot()
    table = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
        elif table is None or line.startswith("#") or line.strip() in ("", "COMMIT"):
            continue
        elif m := _HEADER.match(line):
            if m.group(2) != "-":
                snap.policies[(table, m.group(1))] = int(m.group(3))
            snap.rule_counts.setdefault((table, m.group(1)), 0)
        elif m := _RULE.match(line):
            chain = m.group(3)
            n = snap.rule_counts.get((table, chain), 0) + 1
            snap.rule_counts[(table, chain)] = n
            snap.rules[(table, chain, n)] = int(m.group(1))
        else:
            raise ValueError(f"unexpected line in iptables-save -c output: {line!r}")
    return snap


def moved(before: Snapshot, after: Snapshot) -> Moved:
    """What changed; a rule or chain that appeared or vanished in between is an error."""
    if before.rule_counts != after.rule_counts:
        raise ValueError("the ruleset changed between the two snapshots")
    rules = Counter({k: v - before.rules[k] for k, v in after.rules.items() if v != before.rules[k]})
    policies = Counter({k: v - before.policies[k] for k, v in after.policies.items() if v != before.policies[k]})
    return Moved(rules, policies)
