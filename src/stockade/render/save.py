"""The model as iptables-save prints it (iptables 1.8), the canonical text stockade compares."""
from __future__ import annotations

from typing import Any

from ..extensions import REGISTRY, Opaque, Unread
from ..extensions.opaque import loadable
from ..model import BUILTIN_CHAINS, AddrMatch, Chain, Counters, Family, Match, Rule, Ruleset, Table, Target
from ..model.netfilter import proto_name


def rule_words(rule: Rule, family: Family) -> list[str]:
    """The words after `-A CHAIN`, in iptables-save order: -s -d -i -o -p -f, matches, target. A stand-in
    for what stockade could not read (extensions.opaque.Unread) shows the words as they were written."""
    out: list[str] = []
    _add_words(out, rule, family, None)
    return out


def _add_words(out: list[str], rule: Rule, family: Family, memo: dict[int, Any] | None) -> None:
    """rule_words, onto `out`. `memo`: the text of each address and the words of each match and target by
    identity, for rendering a whole ruleset (which keeps them alive); the dump reader shares equal ones
    between rules (parse/plain.py), the same AddrMatch for -s and -d of the same text too."""
    if (am := rule.src) is not None:
        text = _address(am, memo)
        out += ("!", "-s", text) if am.invert else ("-s", text)
    if (am := rule.dst) is not None:
        text = _address(am, memo)
        out += ("!", "-d", text) if am.invert else ("-d", text)
    if (iface := rule.iif) is not None:
        out += ("!", "-i", iface.name) if iface.invert else ("-i", iface.name)
    if (iface := rule.oif) is not None:
        out += ("!", "-o", iface.name) if iface.invert else ("-o", iface.name)
    if (proto := rule.proto) is not None:
        out += ("!", "-p", proto_name(proto.number)) if proto.invert else ("-p", proto_name(proto.number))
    if rule.fragment is not None:
        out += ("-f",) if rule.fragment else ("!", "-f")
    if memo is None:
        for m in rule.matches:
            out += _match_words(m, family)
        if rule.target is not None:
            out += _target_words(rule.target, family)
        return
    for m in rule.matches:
        if (words := memo.get(id(m))) is None:
            words = memo[id(m)] = _match_words(m, family)
        out += words
    if (t := rule.target) is not None:
        if (words := memo.get(id(t))) is None:
            words = memo[id(t)] = _target_words(t, family)
        out += words


def _address(am: AddrMatch, memo: dict[int, Any] | None) -> str:
    if memo is None:
        return str(am.addr)
    if (text := memo.get(id(am))) is None:
        text = memo[id(am)] = str(am.addr)
    return text


def _match_words(m: Match, family: Family) -> list[str]:
    if isinstance(m.data, Unread):
        return m.data.save()
    if isinstance(m.data, Opaque):
        return ["-m", m.name, *m.data.save()]
    return ["-m", m.name, *REGISTRY.find("match", m.name, family).save(m.data)]


def _target_words(t: Target, family: Family) -> list[str]:
    if isinstance(t.data, Unread):
        return t.data.save()
    out = ["-g" if t.goto else "-j", t.name]
    if isinstance(t.data, Opaque):
        out += t.data.save()
    elif t.data is not None:
        out += REGISTRY.find("target", t.name, family).save(t.data)
    return out


def rule_line(chain: str, rule: Rule, family: Family, counters: bool = False,
              memo: dict[int, Any] | None = None) -> str:
    out = ["-A", chain]
    _add_words(out, rule, family, memo)
    if counters and rule.counters is not None:
        return f"[{rule.counters.packets}:{rule.counters.bytes}] {' '.join(out)}"
    return " ".join(out)


# iptables-save 1.8 (nft) prints tables in this order, whatever order they were created in.
TABLE_ORDER = ("mangle", "security", "raw", "filter", "nat")


def save_chains(table: Table) -> list[Chain]:
    """The chains as iptables-save 1.8 (nft) lists them: every built-in chain of the table in hook
    order (an undeclared one with policy ACCEPT), then user chains sorted by name (strcmp order)."""
    builtins = [table.chains.get(n) or Chain(n, "ACCEPT", Counters()) for n in BUILTIN_CHAINS[table.name]]
    return builtins + [table.chains[n] for n in sorted(table.chains) if n not in BUILTIN_CHAINS[table.name]]


def kernel_rules(chain: Chain) -> list[Rule]:
    """The chain's rules a kernel can hold: a rule with a stand-in for what stockade could not read
    (extensions.opaque.Unread) is there for the analyses only; iptables-restore refuses it as written,
    or its words are not known. (A rule added under a condition read as true is loaded as read.)"""
    return [r for r in chain.rules if loadable(r)]


def render_save(rs: Ruleset, counters: bool = False) -> str:
    """iptables-restore input for the whole ruleset, in the order the kernel's iptables-save prints it
    (without the rules stockade could not read: kernel_rules)."""
    lines: list[str] = []
    memo: dict[int, Any] = {}
    for name in sorted(rs.tables, key=TABLE_ORDER.index):
        chains = save_chains(rs.tables[name])
        lines.append(f"*{name}")
        for chain in chains:
            c = chain.counters if (counters and chain.counters) else None
            lines.append(f":{chain.name} {chain.policy or '-'} [{c.packets if c else 0}:{c.bytes if c else 0}]")
        for chain in chains:
            lines += (rule_line(chain.name, r, rs.family, counters, memo) for r in kernel_rules(chain))
        lines.append("COMMIT")
    return "\n".join(lines) + "\n"
